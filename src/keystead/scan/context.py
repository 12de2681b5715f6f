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

A provider field in that window counts as naming it (`--provider together --key ...`, a CSV
row's `provider=aws; secret=...`), and the host counts anywhere on the value's line (a long
URL's query: `https://x.openai.azure.com/openai/deployments/...?api-key=...`).

Without a credential word, a value is tied only by: an AWS access key id right before it
(`AKIA...:secret`, `AKIA...,secret`); a positional argument to the provider's client
(`cohere.Client("...")`, `Mistral("...")`); a name that is the provider's and nothing else but
qualifiers (`COHERE = "..."`, `MISTRAL_PROD = "..."`, `cohereStaging: ...`; not
`MISTRAL_REQUEST_ID`); or a prefix that itself says "secret key" (DeepSeek's `sk-`), which
needs the provider named only as above. A generic name alone (`api_key = "<32 characters>"`) is
not enough.
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


# The names a provider goes by, once a name is cut into lowercase words and its qualifiers
# dropped (`_COHERE_TRIAL` -> "cohere", `azureOpenAI` -> "azureopenai").
_PROVIDER_NAMES = {
    "azure-openai": "azure|azureopenai|aoai",
    "deepseek": "deepseek",
    "together-legacy": "together|togetherai",
    "mistral": "mistral|mistralai|codestral",
    "cohere": "cohere",
    "aws-secret-access-key": "aws",
}
# Words that say which copy of a key a name holds, not what the value is.
_QUALIFIERS = frozenset({
    "trial", "prod", "production", "dev", "development", "staging", "stage", "test", "testing",
    "live", "default", "fallback", "primary", "secondary", "backup", "main", "old", "new",
    "legacy", "personal", "local", "ci", "free", "paid", "org", "team", "shared", "my", "the",
    "current", "next", "previous", "prev", "temp", "tmp", "demo", "sandbox", "eu", "us"})
# `NAME = "`, `NAME: `, `"NAME": "`, `NAME := "`, `$NAME = '`, a notebook's `NAME = \"`.
_ASSIGNED = re.compile(r"(?P<name>[\w.$-]{2,80})\\?[\"'`]?\s*(?:[:=]|=>|:=)\s*\\?[\"'`]?$")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _named_after(detector: Detector, before: str) -> bool:
    """The value is assigned to a name that is the provider's plus qualifiers only."""
    assigned = _ASSIGNED.search(before)
    names = _PROVIDER_NAMES.get(detector.id)
    if assigned is None or names is None:
        return False
    segment = assigned.group("name").rsplit(".", 1)[-1]
    words = [w.lower() for w in _WORD.findall(segment)]
    core = "".join(w for w in words if w not in _QUALIFIERS and not w.isdigit())
    return re.fullmatch(names, core) is not None


@lru_cache(maxsize=64)
def _provider_field(detector: Detector) -> re.Pattern[str] | None:
    """`provider: together`, `--provider together`, `"vendor": "aws"`, `platform=aws;`."""
    names = _PROVIDER_NAMES.get(detector.id)
    if names is None:
        return None
    return re.compile(r"(?i)\b(?:provider|vendor|platform|backend|service)[\"']?"
                      rf"(?:\s*(?:[:=]|=>)\s*|\s+)[\"']?(?:{names})(?![\w-])")


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
    if not detector.says_secret and not KEY_WORD.search(here):
        # Only a positional argument to the provider's client (`cohere.Client("...")`), or a
        # name that is the provider's.
        call = _CALL.search(before)
        if call is not None and detector.context.search(call.group()) is not None:
            return True
        return _named_after(detector, before)
    if detector.context.search(here):
        return True
    field = _provider_field(detector)
    if field is not None and field.search(here):
        return True
    rule = _neighbour_rule(detector)
    for i in (index - 1, index + 1):
        if 0 <= i < len(lines) and len(lines[i]) <= _SHORT_LINE and rule.search(lines[i]):
            return True
    if detector.host is not None:
        for i in range(max(0, index - _HOST_LINES), min(len(lines), index + _HOST_LINES + 1)):
            if len(lines[i]) <= 4 * _SHORT_LINE and detector.host.search(lines[i]):
                return True
    return False
