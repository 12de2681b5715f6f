"""Pass a server-sent-event stream through, event by event, and learn its usage on the way (P20).

Upstream bytes arrive split anywhere; only whole events are forwarded, all the whole events of
one upstream read in one write. Events are the provider's bytes. Two are held back:
- the usage-only chunk (`"choices":[]` with `usage`) that keystead asked for on the client's
  behalf, when the client did not ask for it itself;
- `data: [DONE]`, so the relay can put the cost comment in front of it.
Data payloads are kept (bounded) so that if the stream breaks before usage arrives, the tokens
generated so far can still be counted.

`MessagesRelay` reads an Anthropic Messages stream (the passed-through `/v1/messages`): every
event goes on untouched; usage comes from `message_start` (input and cache tokens) and
`message_delta` (output tokens, cumulative); `content_block_delta` payloads are kept for a
count when the stream is cut before its `message_delta`.
"""

from __future__ import annotations

import re

from keystead.sse import event_end
from keystead.usage.extract import MessagesUsage, messages_event, usage_from_event
from keystead.usage.prices import TokenUsage

__all__ = ["MessagesRelay", "SSERelay"]

_CAPTURE_LIMIT = 4 * 1024 * 1024
_DONE = b"data: [DONE]"
# `"choices":[]`, also as serialisers that put spaces after separators write it.
_NO_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


class SSERelay:
    __slots__ = ("_buffer", "_captured_bytes", "captured", "done_event", "drop_usage_chunk",
                 "events", "model", "usage")

    def __init__(self, *, drop_usage_chunk: bool):
        self.drop_usage_chunk = drop_usage_chunk
        self._buffer = b""
        self.usage: TokenUsage | None = None
        self.model: str | None = None
        self.events = 0
        self.done_event: bytes | None = None
        self.captured: list[bytes] = []
        self._captured_bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        """Whole events in `chunk` (plus what was buffered) that go to the client now."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" not in buffer:  # LF framing, as providers send it: one search per event
            end = buffer.find(b"\n\n")
            if end >= 0 and end == len(buffer) - 2:  # one whole event per read: no copy
                self._buffer = b""
                return buffer if self._keep(buffer) else b""
            out: list[bytes] = []
            start = 0
            while end != -1:
                event = buffer[start : end + 2]
                start = end + 2
                if self._keep(event):
                    out.append(event)
                end = buffer.find(b"\n\n", start)
        else:
            out = []
            start = 0
            while True:
                end, sep = event_end(buffer, start)
                if end == -1:
                    break
                event = buffer[start : end + sep]
                start = end + sep
                if self._keep(event):
                    out.append(event)
        self._buffer = buffer[start:]
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)

    def leftover(self) -> bytes:
        """A trailing partial event at the end of the stream, passed on as it is."""
        rest, self._buffer = self._buffer, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        self.events += 1
        # `_data` inlined for the common event, one `data: ` line (this runs once per event)
        if event.startswith(b"data: ") and event.count(b"\n") <= 2 and b"\r" not in event:
            data: bytes | None = event[6:].rstrip(b"\n")
        else:
            data = _data(event)
            if data is None:
                return True
        assert data is not None
        if data == b"[DONE]" or event.startswith(_DONE):
            self.done_event = event
            return False
        # Only an event that carries a usage object is parsed (the last one or two of a
        # stream); every other one is only searched, in C.
        marker = data.find(b'"usage":')
        if marker != -1 and (data[marker + 8 : marker + 9] == b"{"
                             or data[marker + 8 : marker + 16].lstrip()[:1] == b"{"):
            usage, model = usage_from_event(data)
            if usage is not None:
                self.usage = usage
                self.model = model or self.model
                if self.drop_usage_chunk and (b'"choices":[]' in data
                                              or _NO_CHOICES.search(data)):
                    return False
        elif self._captured_bytes < _CAPTURE_LIMIT:
            self.captured.append(data)
            self._captured_bytes += len(data)
        return True


class MessagesRelay(SSERelay):
    __slots__ = ("counts", "finished")

    def __init__(self) -> None:
        super().__init__(drop_usage_chunk=False)
        self.counts: MessagesUsage | None = None  # as reported so far
        self.finished = False  # message_delta seen: `usage` is Anthropic's final count

    def _keep(self, event: bytes) -> bool:
        self.events += 1
        name = _event_name(event)
        if name == b"content_block_delta":
            if self._captured_bytes < _CAPTURE_LIMIT:
                data = _data(event)
                if data is not None:
                    self.captured.append(data)
                    self._captured_bytes += len(data)
        elif name == b"message_start" or name == b"message_delta":
            data = _data(event)
            usage, model = messages_event(data) if data is not None else (None, None)
            if usage is not None:
                self.counts = usage if self.counts is None else self.counts.merged(usage)
                self.usage = self.counts.tokens()
            if model:
                self.model = model
            if name == b"message_delta":
                self.finished = True
        return True


_TYPE = re.compile(rb'^\s*\{\s*"type"\s*:\s*"([a-z_]+)"')


def _event_name(event: bytes) -> bytes | None:
    """An Anthropic event's type: its `event:` line (Anthropic always sends one), else the
    `type` its data starts with."""
    if event.startswith(b"event:"):
        end = event.find(b"\n")
        return event[6:end if end != -1 else None].strip()
    data = _data(event)
    match = _TYPE.match(data) if data is not None else None
    return match.group(1) if match else None


def _data(event: bytes) -> bytes | None:
    """The data of an event (one `data:` line, the common case, or several joined)."""
    if event.startswith(b"data: ") and event.count(b"\n") <= 2 and b"\r" not in event:
        return event[6:].rstrip(b"\n")
    lines = [line[5:].lstrip(b" ") for line in event.replace(b"\r\n", b"\n").split(b"\n")
             if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
