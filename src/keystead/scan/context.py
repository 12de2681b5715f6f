"""When a value without a prefix (a Cohere, Mistral, Azure OpenAI, DeepSeek, legacy Together or
AWS secret key) is that provider's credential: its name must say it is a credential, and the
name or what surrounds it must name the provider.

A value is tied to the provider if it is named as a credential (`key`, `secret`, `token`,
`password`, `credential`, `auth`, `bearer` within 80 characters before it or 40 after, on its
line) and one of these names the provider:

1. the same window (`COHERE_API_KEY=`, `cohereKey:`, `mistral.api.key=`, `--cohere-api-key`,
   `Mistral(api_key=...)`, a URL to the provider's host in a curl line or a log);
2. a neighbouring line that is about the provider, not one that merely mentions it: a comment
   naming it, a name containing it (`AZURE_OPENAI_ENDPOINT=`), a provider-ish field
   (`provider: cohere`, `- name: COHERE_API_KEY`) or the provider's host;
3. the provider's API host within 6 lines (a header, `Authorization: Bearer ...`, below the URL
   of a multi-line curl command or request);
4. (through the structure view, see `keystead.scan.views`) the YAML, JSON or TOML path above
   the value, or the CSV column and row it sits in.

An AWS secret right after its access key id (`AKIA...:secret`, `AKIA...,secret`) and a value
passed positionally to the provider's client (`cohere.Client("...")`, `Mistral("...")`)
needs no credential word. A generic name alone (`api_key = "<32 characters>"`) is not enough.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from keystead.scan.detectors import KEY_WORD, Detector

__all__ = ["tied"]

_NEAR_BEFORE, _NEAR_AFTER, _SHORT_LINE, _HOST_LINES = 80, 40, 400, 6

_COMMENT = r"^\s*(?:#|//|--|;|/\*|\*|<!--|rem\s)[^\n]*?"
_NAME = r"^\s*(?:export\s+|set\s+|-\s+)?[\"']?[\w.-]*?"
_FIELD = (r"(?i:provider|name|type|vendor|service|platform|backend|kind|api_type|client|"
          r"model_provider)[\"']?\s*(?:[:=]|=>)\s*[\"']?[\w.:/-]*?")


@lru_cache(maxsize=64)
def _neighbour_rule(detector: Detector) -> re.Pattern[str]:
    """What a neighbouring line must be to tie a value to the provider."""
    assert detector.context is not None
    word = detector.context.pattern
    if detector.id == "aws-secret-access-key":
        # The access key id on the line above is the tie an AWS credentials file has.
        return detector.context
    forms = [f"{_COMMENT}(?:{word})", f"{_NAME}(?:{word})[\\w.-]*[\"']?\\s*(?:[:=]|=>)",
             f"{_FIELD}(?:{word})"]
    if detector.host is not None:
        forms.append(detector.host.pattern)
    return re.compile("|".join(f"(?:{form})" for form in forms), re.MULTILINE)


_CALL = re.compile(r"[\w.]*\(\s*[\"'`]?$")
# An access key id right before the value (`AKIA...:secret@` in a URL, `AKIA...,secret` in the
# CSV the AWS console downloads): the pair is the credential, whatever the names.
_AWS_PAIR = re.compile(r"(?:AKIA|ASIA)[A-Z2-7]{16}[\"']?[:,;|\s]{1,4}[\"']?$")


def tied(detector: Detector, line: str, start: int, end: int, lines: Sequence[str],
         index: int) -> bool:
    """`line` holds the value at [start, end); `lines` are the file's lines (for neighbours),
    `index` the value's line among them."""
    assert detector.context is not None
    before = line[max(0, start - _NEAR_BEFORE):start]
    here = before + line[start:end + _NEAR_AFTER]
    if detector.id == "aws-secret-access-key" and _AWS_PAIR.search(before):
        return True
    if not KEY_WORD.search(here):
        # Only a positional argument to the provider's client: `cohere.Client("...")`.
        call = _CALL.search(before)
        return call is not None and detector.context.search(call.group()) is not None
    if detector.context.search(here):
        return True
    rule = _neighbour_rule(detector)
    for i in (index - 1, index + 1):
        if 0 <= i < len(lines) and len(lines[i]) <= _SHORT_LINE and rule.search(lines[i]):
            return True
    if detector.host is not None:
        for i in range(max(0, index - _HOST_LINES), min(len(lines), index + _HOST_LINES + 1)):
            if i != index and len(lines[i]) <= 4 * _SHORT_LINE and detector.host.search(lines[i]):
                return True
    return False
