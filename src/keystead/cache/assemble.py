"""A provider's stream -> the whole answer the cache stores, built as the bytes arrive.

A streamed miss is stored as the complete answer its stream amounts to, so that one entry serves
streamed and unstreamed clients (`keystead.cache.replay` turns it back into a stream on a hit).
One stored form, two ways out: a stream stored as a list of events could not answer an
unstreamed request, and it costs more bytes.

- `CompletionAssembler`: the `chat.completion` a `chat.completion.chunk` stream amounts to (every
  chunk's deltas merged, per choice).
- `ResponseAssembler`: the Responses API `response` its final event carries (only the events
  that can be final are parsed).

Both are fed the provider's SSE bytes as they arrive, split anywhere, beside the relay, and give
up (after which feeding costs nothing) on an error event, a malformed event or an answer over
`max_bytes`. `completion_from_stream` and `response_from_stream` do the same for a whole stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from keystead.sse import event_end

__all__ = [
    "CHOICE_CORE",
    "CompletionAssembler",
    "ResponseAssembler",
    "completion_from_stream",
    "response_from_stream",
]

DEFAULT_MAX_BYTES = 1024 * 1024


# --- SSE framing --------------------------------------------------------------------------------


class _SSESplitter:
    """Raw SSE bytes, split anywhere -> (event name, data) per complete event."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, bytes]]:
        if not self._buffer and chunk.startswith(b"data: ") and chunk.find(b"\n") == (
                len(chunk) - 2) and chunk.endswith(b"\n\n"):
            return [(None, chunk[6:-2])]  # the common case: one whole one-line event
        buffer = self._buffer + chunk if self._buffer else chunk
        out: list[tuple[bytes | None, bytes]] = []
        start = 0
        while True:
            end, sep = event_end(buffer, start)
            if end == -1:
                break
            parsed = _parse_event(buffer[start:end])
            start = end + sep
            if parsed is not None:
                out.append(parsed)
        self._buffer = buffer[start:]
        return out

    def flush(self) -> list[tuple[bytes | None, bytes]]:
        """A last event that ended with the stream instead of a blank line."""
        rest, self._buffer = self._buffer, b""
        parsed = _parse_event(rest.rstrip(b"\r\n"))
        return [] if parsed is None else [parsed]


def _parse_event(event: bytes) -> tuple[bytes | None, bytes] | None:
    if event.startswith(b"data: ") and b"\n" not in event:  # the common case: one data line
        return None, event[6:]
    name: bytes | None = None
    data: list[bytes] = []
    for line in event.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return (name, b"\n".join(data)) if data else None


# --- chat: stream -> completion -----------------------------------------------------------------


# Top-level chunk fields that are not the completion's: the choices are merged, not copied.
_TOP_SKIP_FIRST = frozenset({"choices", "object", "obfuscation"})
_TOP_SKIP = _TOP_SKIP_FIRST | {"id", "created"}
# A chat choice's own fields; the rest (content_filter_results...) travels as it came.
CHOICE_CORE = frozenset({"index", "message", "delta", "logprobs", "finish_reason"})


class _Text(list[str]):
    """Pieces of a string being streamed, joined once at the end (no quadratic concatenation)."""


def _merge(acc: dict[str, Any], delta: dict[str, Any]) -> int:
    """Merge a streamed delta into `acc`: strings concatenate, lists extend, objects merge,
    `role`/`type`/`index` are replaced and an `id` keeps its first value (some servers repeat it
    in every fragment). Returns roughly how many bytes `acc` grew by."""
    grown = 0
    for key, value in delta.items():
        current = acc.get(key)
        if value is None:
            if key not in acc:
                acc[key] = None
        elif key in ("role", "type", "index"):
            acc[key] = value
        elif key == "id":
            if not current:
                acc[key] = value
        elif isinstance(value, str):
            if isinstance(current, _Text):
                current.append(value)
            else:
                acc[key] = _Text((value,))
            grown += len(value)
        elif isinstance(value, list):
            if isinstance(current, list):
                current.extend(value)
            else:
                acc[key] = list(value)
            grown += 64 * len(value)
        elif isinstance(value, dict):
            if not isinstance(current, dict):
                current = acc[key] = {}
            grown += _merge(current, value)
        else:
            acc[key] = value
    return grown


def _finish(value: Any) -> Any:
    if isinstance(value, _Text):
        return "".join(value)
    if isinstance(value, dict):
        return {k: _finish(v) for k, v in value.items()}
    return value


class _Choice:
    __slots__ = ("extra", "finish_reason", "function_call", "logprobs", "message", "tool_calls")

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}

    def build(self, index: int) -> dict[str, Any]:
        message = _finish(self.message)
        out: dict[str, Any] = {"role": message.pop("role", None) or "assistant",
                               "content": message.pop("content", None),
                               "refusal": message.pop("refusal", None)}
        message.pop("tool_calls", None)
        message.pop("function_call", None)
        if self.tool_calls:
            calls = []
            for _, call in sorted(self.tool_calls.items()):
                call = _finish(call)
                call.pop("index", None)
                calls.append({"id": call.pop("id", None), "type": call.pop("type", "function"),
                              **call})
            out["tool_calls"] = calls
        if self.function_call is not None:
            out["function_call"] = _finish(self.function_call)
        out.update(message)
        return {"index": index, "message": out, "logprobs": self.logprobs,
                "finish_reason": self.finish_reason, **self.extra}


class CompletionAssembler:
    """The chat.completion a `chat.completion.chunk` stream amounts to.

    `feed` the raw SSE bytes as they come (split anywhere; comments and keystead's cost comment
    are ignored), then `result()`. Gives up (`failed`) on an error event, a chunk that is not a
    JSON object, or an answer over `max_bytes`, after which feeding costs nothing.
    """

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.failed = False
        self.done = False  # saw `data: [DONE]`
        self._splitter = _SSESplitter()
        self._top: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self._size = 0

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        for _, data in self._splitter.feed(raw):
            self.feed_data(data)

    def end(self) -> None:
        """The stream is over: a last event without its blank line still counts."""
        for _, data in self._splitter.flush():
            self.feed_data(data)

    def feed_data(self, data: bytes) -> None:
        """One event's data (for a caller that already splits the stream into events)."""
        if self.failed:
            return
        if data == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.failed = True
            return
        if type(chunk) is not dict or "error" in chunk:
            self.failed = True
            return
        kind = chunk.get("object")
        if kind is not None and kind != "chat.completion.chunk":
            return  # Azure's prompt-filter and asynchronous-filter events: not part of the answer
        top = self._top
        skip = _TOP_SKIP if top else _TOP_SKIP_FIRST  # id and created: the first ones
        for key, value in chunk.items():
            if value is not None and key not in skip:
                top[key] = value  # usage included: the last one wins
        for position, raw_choice in enumerate(chunk.get("choices") or ()):
            if type(raw_choice) is not dict:
                self.failed = True
                return
            self._size += self._feed_choice(position, raw_choice)
        if self._size > self.max_bytes:
            self.failed = True
            self._choices.clear()

    def _feed_choice(self, position: int, raw: dict[str, Any]) -> int:
        index = raw.get("index", position)
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = _Choice()
        grown = 0
        delta = raw.get("delta")
        if type(delta) is dict and delta:
            content = delta.get("content")
            if len(delta) == 1 and type(content) is str:  # most chunks: a piece of text
                current = choice.message.get("content")
                if type(current) is _Text:
                    current.append(content)
                else:
                    choice.message["content"] = _Text((content,))
                grown = len(content)
            else:
                grown = self._feed_delta(choice, delta)
        finish_reason = raw.get("finish_reason")
        if finish_reason is not None:
            choice.finish_reason = finish_reason
        logprobs = raw.get("logprobs")
        if logprobs is not None:
            if choice.logprobs is None:
                choice.logprobs = {}
            grown += _merge(choice.logprobs, logprobs)
        if len(raw) > 4 or not CHOICE_CORE.issuperset(raw):
            choice.extra.update((k, v) for k, v in raw.items()
                                if k not in CHOICE_CORE and v is not None)
        return grown

    @staticmethod
    def _feed_delta(choice: _Choice, delta: dict[str, Any]) -> int:
        grown = 0
        calls = delta.get("tool_calls")
        if calls:
            for position, call in enumerate(calls):
                if type(call) is dict:
                    slot = choice.tool_calls.setdefault(call.get("index", position), {})
                    grown += _merge(slot, call)
            delta = {k: v for k, v in delta.items() if k != "tool_calls"}
        function_call = delta.get("function_call")
        if function_call:
            if choice.function_call is None:
                choice.function_call = {}
            grown += _merge(choice.function_call, function_call)
            delta = {k: v for k, v in delta.items() if k != "function_call"}
        return grown + _merge(choice.message, delta)

    def result(self, *, require_done: bool = True) -> bytes | None:
        """The completion's JSON, or None if the stream did not deliver a whole answer: it
        failed, had no choice, left a choice without its finish_reason, or (by default) ended
        without `[DONE]` (a cut stream whose usage may be missing)."""
        if self.failed or not self._choices or (require_done and not self.done):
            return None
        if any(choice.finish_reason is None for choice in self._choices.values()):
            return None
        top = dict(self._top)
        completion: dict[str, Any] = {"id": top.pop("id", None), "object": "chat.completion",
                                      "created": top.pop("created", 0),
                                      "model": top.pop("model", None)}
        completion["choices"] = [choice.build(index)
                                 for index, choice in sorted(self._choices.items())]
        usage = top.pop("usage", None)
        if usage is not None:
            completion["usage"] = usage
        completion.update(top)  # service_tier, system_fingerprint, and whatever else came
        body = orjson.dumps(completion)
        return None if len(body) > self.max_bytes else body


def completion_from_stream(chunks: Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES,
                           require_done: bool = True) -> bytes | None:
    """The chat.completion JSON a whole chat stream (raw SSE bytes, split anywhere) amounts to."""
    assembler = CompletionAssembler(max_bytes=max_bytes)
    for chunk in chunks:
        assembler.feed(chunk)
    assembler.end()
    return assembler.result(require_done=require_done)


# --- Responses API ------------------------------------------------------------------------------

_FINAL_EVENTS = (b"response.completed", b"response.incomplete")
_LEADING_TYPE = re.compile(rb'\{\s*"type"\s*:\s*"([^"\\]+)"')


class ResponseAssembler:
    """The `response` a Responses API event stream ends with: the one its `response.completed`
    (or `response.incomplete`: a max_output_tokens cut is an answer too) event carries. Only
    events that can be final are parsed; `response.failed` and `error` fail the stream."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.failed = False
        self._splitter = _SSESplitter()
        self._response: bytes | None = None

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        for name, data in self._splitter.feed(raw):
            self.feed_data(data, name)

    def end(self) -> None:
        for name, data in self._splitter.flush():
            self.feed_data(data, name)

    def feed_data(self, data: bytes, name: bytes | None = None) -> None:
        """One event's data and its `event:` name, if it had one."""
        if self.failed or data == b"[DONE]":  # some compatible servers end with it
            return
        if name is None:  # no `event:` line: read the type if it leads the JSON (OpenAI's order)
            match = _LEADING_TYPE.match(data)
            name = match.group(1) if match else None
        if name is not None and name not in _FINAL_EVENTS:
            if name in (b"error", b"response.failed"):
                self.failed = True
            return  # deltas and snapshots: not parsed at all
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.failed = True
            return
        if type(event) is not dict:
            self.failed = True
            return
        kind_text = event.get("type")
        if kind_text in ("error", "response.failed"):
            self.failed = True
        elif kind_text in ("response.completed", "response.incomplete"):
            response = event.get("response")
            if type(response) is dict:
                body = orjson.dumps(response)
                if len(body) > self.max_bytes:
                    self.failed = True
                else:
                    self._response = body

    def result(self) -> bytes | None:
        return None if self.failed else self._response


def response_from_stream(chunks: Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
                         ) -> bytes | None:
    """The `response` JSON a whole Responses stream (raw SSE bytes) ends with, or None."""
    assembler = ResponseAssembler(max_bytes=max_bytes)
    for chunk in chunks:
        assembler.feed(chunk)
    assembler.end()
    return assembler.result()
