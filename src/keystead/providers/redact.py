"""Provider keys out of upstream error bodies, before anything relays them.

A provider (or a proxy in front of it) may echo the key it was sent in an error: OpenAI masks
it (`sk-proj-****abcd`), others quote it whole (Gemini's `Consumer 'api_key:AIza...'`, many
proxies' "invalid key sk-..."). Every answer of status 400 or more is read whole at the
provider boundary (`Provider.send`) and passed on as an `ErrorResponse` whose body has

- every key of the provider's own pool replaced by `[REDACTED:provider-key]` (exact match, and
  its JSON-escaped spellings), and
- anything the scanner's detectors recognise as a credential (any provider's key format, a
  keystead key) replaced by `[REDACTED:<detector>]`, as the prompt guardrail masks it. The
  detectors cost about 0.8 us a character, so they read at most 4 KiB of a body (the runs of
  key characters and what surrounds them); a body with more than that to read has every long
  run of key characters masked as `[REDACTED:unscanned]` instead.

An error body over 64 KiB (`MAX_ERROR_BODY`) is dropped rather than read: the client gets the
status with keystead's "answered HTTP N without an error body" envelope.

Only error answers pay for this (the router read their bodies whole anyway): about 0.15 ms for
a typical error body, at most about 4 ms for the largest one relayed; a 2xx answer and a stream
are never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping

from keystead.providers.transport import UpstreamResponse

__all__ = ["MAX_ERROR_BODY", "OWN_KEY", "ErrorResponse", "redact"]

OWN_KEY = "[REDACTED:provider-key]"
# An error body larger than this is not relayed at all: no provider's error is that long (a
# proxy's HTML page is, and the data plane replaces those anyway), and reading it costs time.
MAX_ERROR_BODY = 64 * 1024
# Shorter "keys" (a test's "x") would mask ordinary words; no real provider key is this short.
_MIN_KEY_CHARS = 8
# Every credential the detectors know is a whole run of these characters, 20 or more long (the
# shortest: an AWS access key id); their patterns end where such a run ends.
_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{20,}")  # (lookbehind: 1/3 faster)
_NEAR = 160  # characters kept around a run: the detectors' context words are near it
_SCAN_BUDGET = 4096  # characters the detectors read per body (about 3 ms at most)
_UNREAD = "[REDACTED:unscanned]"


def redact(body: bytes, secrets: Iterable[str]) -> bytes:
    """`body` with `secrets` (exact) and anything that looks like a credential masked; the
    same object when there was nothing to mask."""
    if not body:
        return body
    if len(body) > MAX_ERROR_BODY:
        return b""  # relayed as "answered HTTP N without an error body" (see the docstring)
    # surrogateescape: bytes that are not UTF-8 go back out exactly as they came in.
    text = original = body.decode("utf-8", "surrogateescape")
    for secret in secrets:
        if len(secret) < _MIN_KEY_CHARS:
            continue
        escaped = json.dumps(secret)[1:-1]
        for spelling in {secret, escaped, escaped.replace("/", "\\/")}:  # (PHP, Java: \/)
            if spelling in text:
                text = text.replace(spelling, OWN_KEY)
    text = _mask_credentials(text)
    return body if text == original else text.encode("utf-8", "surrogateescape")


def _mask_credentials(text: str) -> str:
    """What the scanner's detectors recognise in `text`, masked. Every credential they know is
    a whole run of `_TOKEN`; a body without one (most error bodies) costs one regex search. The
    detectors read at most `_SCAN_BUDGET` characters: the whole body when it is small, else
    the runs and their surroundings; past that, every run is masked unread."""
    runs = [match.span() for match in _TOKEN.finditer(text)]
    if not runs:
        return text
    if len(text) <= _SCAN_BUDGET:
        windows = [(0, len(text))]
    else:
        windows = []
        for start, end in runs:
            start, end = max(0, start - _NEAR), min(len(text), end + _NEAR)
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
        if sum(end - start for start, end in windows) > _SCAN_BUDGET:
            return _TOKEN.sub(_UNREAD, text)
    from keystead.scan.scanner import scan_text  # the detectors: imported on the first error

    found = {(finding.secret, finding.detector)
             for start, end in windows for finding in scan_text(text[start:end], "<upstream>")}
    for secret, detector in sorted(found, key=lambda item: -len(item[0])):
        text = text.replace(secret, f"[REDACTED:{detector}]")
    return text


class ErrorResponse:
    """An upstream error answer, read whole and redacted: status and headers as they came, the
    body from `read()` (or as one chunk)."""

    __slots__ = ("_inner", "body", "headers", "status")

    def __init__(self, inner: UpstreamResponse, body: bytes):
        self._inner = inner
        self.body = body
        self.status: int = inner.status
        self.headers: Mapping[str, str] = inner.headers

    @classmethod
    async def read_from(cls, response: UpstreamResponse, secrets: Iterable[str]
                        ) -> ErrorResponse:
        if isinstance(response, ErrorResponse):
            return response
        return cls(response, redact(await response.read(), secrets))

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    def abort(self) -> None:
        self._inner.abort()

    def release(self) -> None:
        self._inner.release()
