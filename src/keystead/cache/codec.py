"""Streams to stored answers and back, so a cache entry serves streamed and unstreamed clients.

A streamed miss is stored as the complete answer its stream amounts to (`CompletionAssembler` for
chat, `ResponseAssembler` for the Responses API), fed the provider's SSE bytes as they arrive,
split anywhere; a hit asked for a stream is that answer replayed as the events OpenAI would have
sent (`stream_from_completion`, `stream_from_response`). One stored form, two ways out: a stream
stored as a list of events could not answer an unstreamed request, and it costs more bytes.

Chat replay, per choice (choices one after the other, each with its index, as the SDKs
accumulate them): a first delta with the role (and `content: ""`, or the first tool call's
header when the content is null), other message fields, content (or refusal) in pieces of
`chunk_chars` characters (one per token, with its logprobs entry, when the stored logprobs spell
the text out), each tool call's header (index, id, type, name) then fragments of its arguments,
an empty delta with the finish_reason; then, if the client asked for it, the usage chunk
(`choices: []`), then `data: [DONE]`. Every chunk carries the completion's id, created, model,
service_tier and system_fingerprint; with include_usage, `"usage": null` until the last.
Not replayed: OpenAI's `obfuscation` padding (random bytes against length side channels; the
SDKs drop it) and audio deltas (audio answers are not cached, see `key`).

The Responses replay covers message items (output_text with annotations and logprobs, refusal),
function and custom tool calls (argument deltas) and reasoning summaries; any other item (web
search call, file search call...) is sent whole in output_item.added/done, as OpenAI does for
items without deltas. The Responses API has no `[DONE]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from keystead.pipeline.sse import event_end

__all__ = [
    "CompletionAssembler",
    "ResponseAssembler",
    "completion_from_stream",
    "response_from_stream",
    "stream_from_completion",
    "stream_from_response",
]

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_CHUNK_CHARS = 32
_DONE = b"data: [DONE]\n\n"


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


def _event(data: bytes, name: bytes | None = None) -> bytes:
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


# --- chat: stream -> completion -----------------------------------------------------------------


# Top-level chunk fields that are not the completion's: the choices are merged, not copied.
_TOP_SKIP_FIRST = frozenset({"choices", "object", "obfuscation"})
_TOP_SKIP = _TOP_SKIP_FIRST | {"id", "created"}
_CHOICE_CORE = frozenset({"index", "message", "delta", "logprobs", "finish_reason"})


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
        if len(raw) > 4 or not _CHOICE_CORE.issuperset(raw):
            choice.extra.update((k, v) for k, v in raw.items()
                                if k not in _CHOICE_CORE and v is not None)
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


# --- chat: completion -> stream -----------------------------------------------------------------


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def _token_pieces(text: str, tokens: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """(token, its logprobs entry) pieces when the entries spell `text` out exactly."""
    if not isinstance(tokens, list) or not tokens:
        return None
    pieces: list[tuple[str, dict[str, Any]]] = []
    for entry in tokens:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        pieces.append((entry["token"], entry))
    return pieces if "".join(piece for piece, _ in pieces) == text else None


_MESSAGE_CORE = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})
_COMPLETION_CORE = frozenset({"id", "object", "created", "model", "choices", "usage",
                              "service_tier", "system_fingerprint"})
_ARGUMENT_FIELD = {"function": "arguments", "custom": "input"}


def stream_from_completion(body: bytes, *, include_usage: bool,
                           chunk_chars: int = DEFAULT_CHUNK_CHARS) -> list[bytes]:
    """A stored chat.completion as the SSE events OpenAI streams for it, `[DONE]` last (a caller
    that adds a comment before it inserts at -1). `include_usage`: the client's
    `stream_options.include_usage`."""
    completion = orjson.loads(body)
    base: dict[str, Any] = {"id": completion.get("id"), "object": "chat.completion.chunk",
                            "created": completion.get("created"),
                            "model": completion.get("model")}
    for optional in ("service_tier", "system_fingerprint"):  # strings: absent, not null
        if completion.get(optional) is not None:
            base[optional] = completion[optional]
    events: list[bytes] = []

    def emit(choice: dict[str, Any], **extra: Any) -> None:
        chunk = {**base, "choices": [choice], **extra}
        if include_usage:
            chunk["usage"] = None
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")

    choices = completion.get("choices") or []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        chunks = _choice_chunks(choice, chunk_chars)
        last = len(chunks) - 1
        for n, (delta, logprobs, finish) in enumerate(chunks):
            out = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            if finish is not None:
                out.update((k, v) for k, v in choice.items() if k not in _CHOICE_CORE)
            extra = {}
            if n == last and position == len(choices) - 1:
                extra = {k: v for k, v in completion.items() if k not in _COMPLETION_CORE}
            emit(out, **extra)
    if include_usage and completion.get("usage") is not None:
        usage_chunk = {**base, "choices": [], "usage": completion["usage"]}
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(_DONE)
    return events


def _choice_chunks(choice: dict[str, Any], size: int
                   ) -> list[tuple[dict[str, Any], Any, str | None]]:
    """(delta, logprobs, finish_reason) of each chunk of one choice."""
    size = max(1, size)
    message = choice.get("message") or {}
    content, refusal = message.get("content"), message.get("refusal")
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    logprobs = choice.get("logprobs")
    out: list[tuple[dict[str, Any], Any, str | None]] = []

    first: dict[str, Any] = {"role": message.get("role", "assistant"),
                             "content": "" if isinstance(content, str) else None}
    first["refusal"] = "" if isinstance(refusal, str) else None
    out.append((first, None, None))
    call_chunks = [chunk for i, call in enumerate(calls) for chunk in _call_deltas(i, call, size)]
    if call_chunks and content is None and refusal is None:
        first["tool_calls"] = call_chunks.pop(0)["tool_calls"]  # OpenAI's first chunk has it

    for key, value in message.items():
        if key in _MESSAGE_CORE:
            continue
        if isinstance(value, str):  # reasoning_content and the like stream like content
            out.extend(({key: piece}, None, None) for piece in _split(value, size))
        else:
            out.append(({key: value}, None, None))

    pending: Any = logprobs  # sent whole with the finish_reason unless it goes token by token
    for field, text in (("content", content), ("refusal", refusal)):
        if not isinstance(text, str) or not text:
            continue
        other = "refusal" if field == "content" else "content"
        tokens = None
        if isinstance(pending, dict) and not pending.get(other):
            tokens = _token_pieces(text, pending.get(field))
        if tokens is not None:
            first_lp: dict[str, Any] = {**pending, field: [tokens[0][1]]}
            out.append(({field: tokens[0][0]}, first_lp, None))
            out.extend(({field: piece}, {field: [entry], other: None}, None)
                       for piece, entry in tokens[1:])
            pending = None
        else:
            out.extend(({field: piece}, None, None) for piece in _split(text, size))

    for delta in call_chunks:
        out.append((delta, None, None))
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        arguments = function_call.get("arguments")
        head = {k: v for k, v in function_call.items() if k != "arguments"}
        out.append(({"function_call": {**head, "arguments": ""}}, None, None))
        if isinstance(arguments, str):
            out.extend(({"function_call": {"arguments": piece}}, None, None)
                       for piece in _split(arguments, size))
    out.append(({}, pending, choice.get("finish_reason") or "stop"))
    return out


def _call_deltas(index: int, call: dict[str, Any], size: int) -> list[dict[str, Any]]:
    kind = call.get("type", "function")
    payload = call.get(kind)
    field = _ARGUMENT_FIELD.get(kind)
    header: dict[str, Any] = {"index": index, "id": call.get("id"), "type": kind}
    header.update((k, v) for k, v in call.items() if k not in ("index", "id", "type", kind))
    if not isinstance(payload, dict) or field is None or not isinstance(payload.get(field), str):
        header[kind] = payload
        return [{"tool_calls": [header]}]
    header[kind] = {**payload, field: ""}
    deltas = [{"tool_calls": [header]}]
    deltas.extend({"tool_calls": [{"index": index, kind: {field: piece}}]}
                  for piece in _split(payload[field], size))
    return deltas


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


class _Events:
    __slots__ = ("events", "sequence")

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.sequence = 0

    def emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        self.events.append(_event(orjson.dumps(payload), kind.encode()))


def stream_from_response(body: bytes, *, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> list[bytes]:
    """A stored Responses API `response` as the event sequence OpenAI streams for it."""
    size = max(1, chunk_chars)
    response = orjson.loads(body)
    out = _Events()
    # Snapshots before the end carry no usage and no output yet (`usage` is not nullable).
    pending = {k: v for k, v in response.items() if k != "usage"}
    pending["status"] = "in_progress"
    pending["output"] = []
    for key in ("completed_at", "incomplete_details", "error"):
        if key in pending:
            pending[key] = None
    out.emit("response.created", response=pending)
    out.emit("response.in_progress", response=pending)
    for index, item in enumerate(response.get("output") or ()):
        _replay_item(out, index, item, size)
    final = "response.incomplete" if response.get("status") == "incomplete" else (
        "response.completed")
    out.emit(final, response=response)
    return out.events


def _replay_item(out: _Events, index: int, item: dict[str, Any], size: int) -> None:
    kind = item.get("type")
    item_id = item.get("id", "")
    opening = dict(item)
    if "status" in opening:
        opening["status"] = "in_progress"
    if kind == "message":
        opening["content"] = []
        out.emit("response.output_item.added", output_index=index, item=opening)
        for part_index, part in enumerate(item.get("content") or ()):
            where = {"item_id": item_id, "output_index": index, "content_index": part_index}
            _replay_part(out, where, part, size)
    elif kind in ("function_call", "custom_tool_call"):
        field, event = (("arguments", "function_call_arguments") if kind == "function_call"
                        else ("input", "custom_tool_call_input"))
        text = item.get(field)
        if not isinstance(text, str):
            text = ""
        opening[field] = ""
        out.emit("response.output_item.added", output_index=index, item=opening)
        for piece in _split(text, size):
            out.emit(f"response.{event}.delta", item_id=item_id, output_index=index, delta=piece)
        done: dict[str, Any] = {"item_id": item_id, "output_index": index, field: text}
        if kind == "function_call":
            done["name"] = item.get("name", "")
        out.emit(f"response.{event}.done", **done)
    elif kind == "reasoning" and isinstance(item.get("summary"), list):
        opening["summary"] = []
        out.emit("response.output_item.added", output_index=index, item=opening)
        for summary_index, part in enumerate(item["summary"]):
            where = {"item_id": item_id, "output_index": index, "summary_index": summary_index}
            text = part.get("text", "") if isinstance(part, dict) else ""
            out.emit("response.reasoning_summary_part.added", **where,
                     part={"type": "summary_text", "text": ""})
            for piece in _split(text, size):
                out.emit("response.reasoning_summary_text.delta", **where, delta=piece)
            out.emit("response.reasoning_summary_text.done", **where, text=text)
            out.emit("response.reasoning_summary_part.done", **where, part=part)
    else:
        out.emit("response.output_item.added", output_index=index, item=opening)
    out.emit("response.output_item.done", output_index=index, item=item)


def _replay_part(out: _Events, where: dict[str, Any], part: dict[str, Any], size: int) -> None:
    kind = part.get("type")
    if kind == "output_text":
        text = part.get("text") or ""
        logprobs = part.get("logprobs")
        opening = {**part, "text": "", "annotations": []}
        if "logprobs" in opening:
            opening["logprobs"] = []
        out.emit("response.content_part.added", **where, part=opening)
        tokens = _token_pieces(text, logprobs)
        if tokens is not None:
            for piece, entry in tokens:
                out.emit("response.output_text.delta", **where, delta=piece, logprobs=[entry])
        else:
            for piece in _split(text, size):
                out.emit("response.output_text.delta", **where, delta=piece, logprobs=[])
        for annotation_index, annotation in enumerate(part.get("annotations") or ()):
            out.emit("response.output_text.annotation.added", **where,
                     annotation_index=annotation_index, annotation=annotation)
        out.emit("response.output_text.done", **where, text=text,
                 logprobs=logprobs if isinstance(logprobs, list) else [])
    elif kind == "refusal":
        text = part.get("refusal") or ""
        out.emit("response.content_part.added", **where, part={**part, "refusal": ""})
        for piece in _split(text, size):
            out.emit("response.refusal.delta", **where, delta=piece)
        out.emit("response.refusal.done", **where, refusal=text)
    else:
        out.emit("response.content_part.added", **where, part=part)
    out.emit("response.content_part.done", **where, part=part)
