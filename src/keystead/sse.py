"""Server-sent events at the byte level: where an event ends, and what its first event says.

Shared by the relay (pipeline/sse.py), the cache's stream assembler and the router, which reads
a stream's first event before the client gets anything (docs/routing.md): a stream that starts
with something that is not an event, or with an error, is a failed attempt, retried like a 5xx.
"""

from __future__ import annotations

from enum import Enum

import orjson

__all__ = ["FirstEvent", "event_end", "judge_first"]

_BOM = b"\xef\xbb\xbf"  # a stream may start with one (the SSE spec drops it)


def event_end(buffer: bytes, start: int) -> tuple[int, int]:
    """(index, separator length) of the blank line that ends the event starting at `start`;
    (-1, 0) when the event is not whole yet. Servers end events with LF or CRLF pairs."""
    end = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start)
    if crlf != -1 and (end == -1 or crlf < end):
        return crlf, 4
    return end, 2 if end != -1 else 0


class FirstEvent(Enum):
    OK = "ok"  # a JSON object: the stream has started
    SKIP = "skip"  # no data (comments, a retry hint): read the next event
    MALFORMED = "malformed"  # not an event, not JSON, or [DONE] before anything
    ERROR = "error"  # the provider's error, sent as an event


def judge_first(event: bytes) -> FirstEvent:
    """What one whole event (its separator excluded) at the start of a stream says. Fields
    other than `data` and `event` are ignored, as the SSE spec says; a non-SSE answer (a JSON
    body, an HTML page) carries no data field, so the stream ends or overflows without one and
    is malformed there."""
    name = b""
    data: list[bytes] = []
    for line in event.removeprefix(_BOM).splitlines():
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.strip()
    if not data:  # an event without data is never dispatched (comments, retry, a bare name)
        return FirstEvent.SKIP
    payload = b"\n".join(data)
    if payload.strip() == b"[DONE]":
        return FirstEvent.MALFORMED  # a stream that ends before it says anything
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return FirstEvent.MALFORMED
    if not isinstance(document, dict):
        return FirstEvent.MALFORMED
    # OpenAI's {"error": {...}} (some proxies add it to a chunk that has choices), vLLM's
    # {"object": "error"}, Anthropic's event: error, Responses' type: error / response.failed.
    if name == b"error" or document.get("error") is not None \
            or document.get("object") == "error" \
            or document.get("type") in ("error", "response.failed"):
        return FirstEvent.ERROR
    return FirstEvent.OK
