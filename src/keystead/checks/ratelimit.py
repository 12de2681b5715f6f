"""The provider's rate-limit headers of a check's answer, as they may be shown and stored.

OpenAI (and most compatible servers) send `x-ratelimit-{limit,remaining,reset}-{requests,
tokens}`; Anthropic sends `anthropic-ratelimit-*`; a 429 carries `retry-after` (seconds or a
date) or `retry-after-ms`. Values come from a server we do not control: only short printable
ASCII values are kept, and only so many of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MAX_HEADERS", "answer_limits", "rate_limit_headers"]

MAX_HEADERS = 24
_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_SINGLE = ("retry-after", "retry-after-ms")
_NAME = re.compile(r"[a-z0-9-]{1,64}")
_VALUE = re.compile(r"[\x20-\x7e]{1,64}")


def answer_limits(response: object) -> dict[str, str]:
    """The rate-limit headers of a provider's answer. A translating adapter's answer
    (Anthropic's, read as OpenAI's) keeps the provider's own headers as `upstream_headers`."""
    headers: Mapping[str, str] = getattr(response, "upstream_headers", None) \
        or getattr(response, "headers", {})
    return rate_limit_headers(headers)


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of `headers` (names lower-cased, sorted), bounded and printable."""
    found: dict[str, str] = {}
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if not (name in _SINGLE or name.startswith(_PREFIXES)):
            continue
        if not _NAME.fullmatch(name) or not isinstance(value, str):
            continue
        value = value.strip()
        if not _VALUE.fullmatch(value):
            continue
        found[name] = value
        if len(found) >= MAX_HEADERS:
            break
    return dict(sorted(found.items()))
