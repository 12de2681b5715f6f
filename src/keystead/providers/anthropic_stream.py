"""Anthropic's stream -> OpenAI `chat.completion.chunk` events, as they arrive (`StreamTranslator`).

Fed the bytes the connection delivers (events split anywhere); `message_start` becomes the role
chunk, text and tool-input deltas become content and tool_calls deltas, and `message_stop` the
finishing chunk, the usage chunk (with `include_usage`) and `[DONE]`. docs/providers.md is the
reader's version.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from keystead.providers.anthropic_answer import finish_reason, openai_usage
from keystead.providers.anthropic_errors import map_error

__all__ = ["StreamTranslator"]


class StreamTranslator:
    """Anthropic SSE bytes in, OpenAI chat.completion.chunk SSE bytes out, incrementally.

    `feed` takes whatever the connection delivered and returns the OpenAI events it completes;
    `finish` the rest at the end. After `message_stop`: the finishing chunk, the usage chunk
    (with `include_usage`) and `data: [DONE]`. An `error` event becomes OpenAI's mid-stream
    `data: {"error": {...}}` (after a usage chunk, if the message had started, so what was
    spent is counted) and ends the translation.
    """

    __slots__ = ("_buffer", "_created", "_done", "_finish", "_id", "_include_usage", "_model",
                 "_started", "_tools", "_usage")

    def __init__(self, *, include_usage: bool = True, created: int | None = None):
        self._include_usage = include_usage
        self._buffer = b""
        self._created = int(time.time()) if created is None else created
        self._id = "msg_unknown"
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._finish: str | None = None
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while not self._done:
            end = buffer.find(b"\n\n", start)
            if end == -1:
                break
            self._event(buffer[start:end], out)
            start = end + 2
        self._buffer = b"" if self._done else buffer[start:]
        return b"".join(out)

    def finish(self) -> bytes:
        """At the end of the upstream stream: a last event without its blank line, if any."""
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._done:
            out: list[bytes] = []
            self._event(rest.rstrip(b"\n"), out)
            return b"".join(out)
        return b""

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        name = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("latin-1")
        if not data:
            return
        try:
            event = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type") or name
        if kind == "message_start":
            self._message_start(event.get("message") or {}, out)
        elif kind == "content_block_start":
            self._block_start(event, out)
        elif kind == "content_block_delta":
            self._block_delta(event, out)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if delta.get("stop_reason"):
                self._finish = finish_reason(delta["stop_reason"])
            self._merge_usage(event.get("usage"))
        elif kind == "message_stop":
            out.append(self._chunk({}, self._finish or "stop"))
            if self._include_usage:
                out.append(self._usage_chunk())
            out.append(b"data: [DONE]\n\n")
            self._done = True
        elif kind == "error":
            if self._started and self._include_usage:
                out.append(self._usage_chunk())
            error = event.get("error")
            if not isinstance(error, dict):
                error = {}
            _, mapped = map_error(error.get("type"), str(error.get("message") or "Stream error."),
                                  500)
            out.append(b"data: " + orjson.dumps({"error": mapped}) + b"\n\n")
            self._done = True
        # ping, content_block_stop and event types added later carry nothing to translate

    def _message_start(self, message: dict[str, Any], out: list[bytes]) -> None:
        self._id = message.get("id") or self._id
        self._model = message.get("model") or self._model
        self._merge_usage(message.get("usage"))
        self._started = True
        out.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))

    def _block_start(self, event: dict[str, Any], out: list[bytes]) -> None:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif block.get("type") == "tool_use":
            position = self._tools[event.get("index", -1)] = len(self._tools)
            call = {"index": position, "id": block.get("id", ""), "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))

    def _block_delta(self, event: dict[str, Any], out: list[bytes]) -> None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tools.get(event.get("index", -1))
            if position is not None:
                call = {"index": position, "function": {"arguments": delta["partial_json"]}}
                out.append(self._chunk({"tool_calls": [call]}))
        # thinking_delta, signature_delta, citations_delta: no OpenAI counterpart

    def _merge_usage(self, usage: Any) -> None:
        """message_delta's counts are cumulative: the latest non-null value of each wins."""
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        frame: dict[str, Any] = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            frame["usage"] = None
        return b"data: " + orjson.dumps(frame) + b"\n\n"

    def _usage_chunk(self) -> bytes:
        frame = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                 "model": self._model, "choices": [],
                 "usage": openai_usage(self._usage)}
        return b"data: " + orjson.dumps(frame) + b"\n\n"
