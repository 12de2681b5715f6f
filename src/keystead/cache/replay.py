"""A stored answer -> the stream OpenAI would have sent for it, for a cache hit asked to stream.

The cache stores whole answers (`keystead.cache.assemble` builds them from streamed misses); a
hit whose client asked for a stream gets the answer replayed as events: `stream_from_completion`
for chat, `stream_from_response` for the Responses API.

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

from typing import Any

import orjson

from keystead.cache.assemble import CHOICE_CORE

__all__ = ["stream_from_completion", "stream_from_response"]

DEFAULT_CHUNK_CHARS = 32
_DONE = b"data: [DONE]\n\n"


# --- text in pieces, for both APIs --------------------------------------------------------------


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


# --- chat: completion -> stream -----------------------------------------------------------------


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
                out.update((k, v) for k, v in choice.items() if k not in CHOICE_CORE)
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


# --- Responses API: response -> events ---------------------------------------------------------


class _Events:
    __slots__ = ("events", "sequence")

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.sequence = 0

    def emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        self.events.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload)
                           + b"\n\n")


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
