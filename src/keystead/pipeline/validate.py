"""Hostile input stops here: the checks every request body and header passes before any value
reaches the limiter, a URL, a log line or the ledger.

What the request views declare (pipeline/parse.py) is enforced by msgspec while it decodes:
ranges of the numbers policy reads (an output cap of at least 1, `n` from 1 to 128), and the
model name's length and character set (providers/names.py: the same rule every adapter applies
again before a name goes into a URL). This module adds what a schema cannot say:

- nesting depth: every consumer of a body (msgspec, orjson, the standard library, jsonschema)
  recurses, so a body nested past `MAX_DEPTH` is refused before any of them sees it;
- duplicate policed fields: `{"model": "cheap", "model": "dear"}` would be checked under one
  value and served under the other by an upstream that reads the first;
- the client's own header values that are recorded (`x-keystead-feature`).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from keystead.errors import InvalidField, InvalidHeader, InvalidJSON

__all__ = ["MAX_DEPTH", "MAX_OUTPUT_TOKENS", "check_body", "check_feature", "one_line",
           "printable"]

# Deeper than any real request (a structured-output schema of OpenAI's ten allowed levels is
# about thirty), far below the recursion limits of the decoders behind it.
MAX_DEPTH = 64
# Above any model's output; keeps the limiter's and the ledger's arithmetic in range.
MAX_OUTPUT_TOKENS = 1 << 24
MAX_FEATURE = 128

# Fields whose value decides a policy: a second copy in one body is refused.
_POLICED_NAMES = frozenset(("model", "max_tokens", "max_completion_tokens", "max_output_tokens",
                           "n_predict", "max_new_tokens", "stream", "n", "background"))
_PRINTABLE_ASCII = re.compile(rb"[\x20-\x7e]*")
_ESCAPED_LETTER = re.compile(rb"\\u00[4-7][0-9a-fA-F]")  # \u0040 to \u007f: letters, _
_POLICED = tuple(f'"{name}"'.encode() for name in sorted(_POLICED_NAMES))
_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def check_body(body: bytes) -> None:
    """Depth and duplicate policed fields; the body is JSON that msgspec decoded."""
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise InvalidJSON(f"The request body is nested more than {MAX_DEPTH} levels deep.",
                          hint="Real requests nest a few levels; flatten the structure.")
    # A policed name twice (rare: it also appears as a string value somewhere), or written with
    # an escape of an ASCII letter (no JSON encoder writes one: "max\u005ftokens" is written
    # to be read as a second max_tokens by one parser and missed by another).
    if _ESCAPED_LETTER.search(body) is not None \
            or any(body.count(name) > 1 for name in _POLICED):
        _check_duplicates(body)


def _depth(body: bytes) -> int:
    """The body's greatest nesting depth, brackets inside strings not counted.

    Bytes-level passes in C, no per-character Python: escaped backslashes and quotes are
    removed (in pairs, left to right, as a JSON parser reads them), then everything but quotes
    and brackets; what lies between quote pairs is string content.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(None, _STRUCTURE)
    outside = b"".join(skeleton.split(b'"')[::2])
    return max(accumulate(map(_STEP.__getitem__, outside)), default=0)


def _check_duplicates(body: bytes) -> None:
    # Every object as its list of (name, value) pairs: the top level's names, repeats kept
    # (escapes decoded: "max\u005ftokens" is max_tokens). Numbers stay text: an integer past
    # Python's 4,300 digits must not fail a check that does not need its value.
    items = json.loads(body, object_pairs_hook=_as_pairs, parse_int=str, parse_float=str)
    seen: set[str] = set()
    for name, _ in items if isinstance(items, list) else ():
        if name in seen and name in _POLICED_NAMES:
            raise InvalidField(f"The request body sets '{name}' more than once.",
                               param=name, code="duplicate_field", hint=f"Send '{name}' once.")
        seen.add(name)


def _as_pairs(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return items


def check_feature(raw: bytes) -> str | None:
    """The x-keystead-feature tag: recorded in the ledger and grouped by, so printable ASCII
    of a bounded length. Empty is no tag."""
    if not raw:
        return None
    if len(raw) > MAX_FEATURE or not _printable(raw):
        raise InvalidHeader(
            f"x-keystead-feature must be 1 to {MAX_FEATURE} printable ASCII characters.",
            param="x-keystead-feature", hint="Send a short tag such as support-chat.")
    return raw.decode("ascii")


def printable(raw: bytes, limit: int) -> str:
    """A recorded header value (user agent): kept, with anything unprintable replaced."""
    raw = raw[:limit]
    text = raw.decode("latin-1")
    if _PRINTABLE_ASCII.fullmatch(raw) is not None:  # nearly always: one C pass
        return text
    return one_line(text, limit)


def one_line(text: str, limit: int) -> str:
    """Text from a client or a provider, fit for a column, a table or a log line: cut to
    `limit` characters, anything unprintable (a line break, NUL, an escape) replaced by "?"."""
    text = text[:limit]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _printable(raw: bytes) -> bool:
    return _PRINTABLE_ASCII.fullmatch(raw) is not None and bool(raw)
