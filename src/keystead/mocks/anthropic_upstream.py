"""A mock Anthropic upstream: the Messages API's real wire format, for tests and demos.

A raw ASGI app (like `mocks.openai_upstream`), so what goes over the wire is exactly what is written
here. It answers keystead's `anthropic` adapter and the official `anthropic` SDK alike: in process
(a provider of `type: mock` with `mock: {flavor: anthropic}`, as in `keystead demo`) or over HTTP
(`keystead mock-anthropic --port P`, see `serve_anthropic_mock`).

Routes, each with or without the `/v1` prefix:
    POST /v1/messages                 (streamed with "stream": true)
    POST /v1/messages/count_tokens
    GET  /v1/models, GET /v1/models/{id}

Every request needs an `anthropic-version` header and, when `api_key` is set, that key in
`x-api-key` (or `Authorization: Bearer`, as newer SDKs send it). Requests are checked the way
Anthropic checks them (unknown top-level fields, empty text blocks, tool_use / tool_result
pairing, tool_result first in its turn, temperature <= 1), so a translation that would be
refused upstream is refused here too.

Replies are deterministic (`mocks.content`): "This is a mock reply to: <prompt>" plus filler,
cut by `max_tokens` (stop_reason max_tokens) or a `stop_sequences` entry (stop_sequence).
With tools on offer the mock calls one (`sample_instance` of its `input_schema`): always when
`tool_choice` is any/tool; with auto, unless the last user turn holds tool results (then it
answers in text), and with a short text block before the call, as Claude often does.
`output_config.format` json_schema answers with a JSON instance of the schema.

`AnthropicMockSettings.status` answers every message request with that error (529: a deployment
that stays overloaded). Directives in the last user message (see `mocks.content`), plus the
Anthropic-only ones:
    [[mock:status=529]]          answer that status with Anthropic's error body for it
                                 (429 adds `retry-after: 1`)
    [[mock:tokens=N]]            N words of reply (default 16)
    [[mock:latency=MS]]          wait first
    [[mock:disconnect_after=K]]  streaming: drop the connection after K deltas
    [[mock:cache_read=N]]        usage.cache_read_input_tokens = N (a cached prefix of N tokens
    [[mock:cache_write=N]]       before the counted prompt); cache_creation_input_tokens = N
    [[mock:prompt_too_long]]     400 invalid_request_error "prompt is too long: ..."
    [[mock:stream_error=K]]      streaming: an `error` event (overloaded_error) after K deltas
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keystead.mocks.asgi import ReceivedRequest, lifespan, read_body, received, serve_app
from keystead.mocks.content import (
    DEFAULT_COMPLETION_TOKENS,
    count_tokens,
    new_id,
    parse_directives,
    reply_words,
    split_pieces,
)
from keystead.mocks.stream import MockDisconnect
from keystead.mocks.structured import ToolOffer, pick_tool, sample_instance

__all__ = ["DEFAULT_MODELS", "AnthropicMock", "AnthropicMockSettings", "create_anthropic_mock_app",
           "serve_anthropic_mock"]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ARGUMENT_FRAGMENT = 8
CONTEXT_WINDOW = 200_000
_EXTRA = re.compile(r"\[\[mock:(cache_read|cache_write|prompt_too_long|stream_error)"
                    r"(?:=(\d+))?\]\]")
# Anthropic error type and message for each status the mock can be asked for.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Mock error (status 400)."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your organization's rate limit."),
    500: ("api_error", "An unexpected error has occurred internal to Anthropic's systems."),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
# Top-level Messages fields Anthropic accepts; anything else is "Extra inputs are not permitted".
_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "output_config", "container", "context_management", "mcp_servers", "inference_geo",
    "cache_control", "speed", "diagnostics",
})
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MODEL_CREATED = "2025-10-01T00:00:00Z"
DEFAULT_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6")


@dataclass(frozen=True, slots=True)
class AnthropicMockSettings:
    api_key: str | None = None
    # Models it answers to (a request for another is a 404, as upstream); empty: any model.
    models: tuple[str, ...] = DEFAULT_MODELS
    latency_ms: float = 0
    chunk_delay_ms: float = 0
    # Every POST /v1/messages answers this error status (an overloaded region: 529), whatever
    # the prompt says; for a route whose other deployments answer.
    status: int | None = None


class _Refused(Exception):
    def __init__(self, status: int, message: str | None = None, kind: str | None = None):
        default_kind, default_message = _ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error",
                     f"Mock error (status {status})."))
        super().__init__(message or default_message)
        self.status = status
        self.kind = kind or default_kind
        self.message = message or default_message


def create_anthropic_mock_app(settings: AnthropicMockSettings | None = None) -> AnthropicMock:
    return AnthropicMock(settings or AnthropicMockSettings())


async def serve_anthropic_mock(host: str, port: int, settings: AnthropicMockSettings,
                               sock: socket.socket | None = None) -> None:
    """Serve the mock over HTTP (`keystead mock-anthropic`), as `openai_upstream.serve_mock`."""
    await serve_app(create_anthropic_mock_app(settings), host, port, sock)


class AnthropicMock:
    """The ASGI app. `received` keeps the latest requests so tests can see what was sent;
    `abandoned` counts streams stopped because their client went away (as Anthropic stops
    generating, and billing, when the connection closes)."""

    def __init__(self, settings: AnthropicMockSettings):
        self.settings = settings
        self.received: deque[ReceivedRequest] = deque(maxlen=200)
        self.abandoned = 0

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        request = received(scope, body)
        self.received.append(request)
        gone = asyncio.Event()
        watch = asyncio.get_running_loop().create_task(_watch_disconnect(receive, gone))
        try:
            await self._handle(request, send, gone)
        except _Refused as refused:
            await _send_error(send, refused)
        except _ClientLeft:
            self.abandoned += 1
        finally:
            watch.cancel()

    async def _handle(self, request: ReceivedRequest, send: Send, gone: asyncio.Event) -> None:
        path = request.path.rstrip("/").removeprefix("/v1")
        self._check_headers(request.headers)
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        if request.method == "GET" and path == "/models":
            data = [_model_info(m) for m in self.settings.models]
            await _send_json(send, 200, {"data": data, "has_more": False,
                                         "first_id": data[0]["id"] if data else None,
                                         "last_id": data[-1]["id"] if data else None})
        elif request.method == "GET" and path.startswith("/models/"):
            model = path.removeprefix("/models/")
            if model not in self.settings.models:
                raise _Refused(404, f"model: {model}", "not_found_error")
            await _send_json(send, 200, _model_info(model))
        elif request.method == "POST" and path in ("/messages", "/messages/count_tokens"):
            body = self._check_body(request.body, count_only=path != "/messages")
            if path == "/messages":
                await self._messages(body, send, gone)
            else:
                await _send_json(send, 200, {"input_tokens": _prompt_tokens(body)})
        else:
            raise _Refused(404, f"Not found: {request.method} {request.path}")

    def _check_headers(self, headers: dict[str, str]) -> None:
        if "anthropic-version" not in headers:
            raise _Refused(400, "anthropic-version: header is required")
        if self.settings.api_key is None:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        if self.settings.api_key not in (headers.get("x-api-key"), bearer):
            raise _Refused(401, "invalid x-api-key")

    # --- checking a request, as Anthropic does --------------------------------------------------

    def _check_body(self, raw: bytes, *, count_only: bool) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, "There was an issue with your request body: invalid JSON") \
                from None
        if not isinstance(body, dict):
            raise _Refused(400, "Input should be an object")
        for name in body:
            if name not in _FIELDS:
                raise _Refused(400, f"{name}: Extra inputs are not permitted")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _Refused(400, "model: Field required")
        if self.settings.models and model not in self.settings.models:
            raise _Refused(404, f"model: {model}", "not_found_error")
        if not count_only:
            tokens = body.get("max_tokens")
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
                raise _Refused(400, "max_tokens: Field required" if tokens is None
                               else "max_tokens: Input should be a valid integer >= 0")
        temperature = body.get("temperature")
        if temperature is not None and not (isinstance(temperature, int | float)
                                            and 0 <= temperature <= 1):
            raise _Refused(400, "temperature: Input should be less than or equal to 1")
        _check_system(body.get("system"))
        _check_messages(body.get("messages"))
        _check_tools(body.get("tools"), body.get("tool_choice"))
        return body

    # --- answering ------------------------------------------------------------------------------

    async def _messages(self, body: dict[str, Any], send: Send, gone: asyncio.Event) -> None:
        if self.settings.status is not None:
            raise _Refused(self.settings.status)
        prompt = _last_user_text(body["messages"])
        directives = parse_directives(prompt)
        extra = {name: int(value) if value else 1 for name, value in _EXTRA.findall(prompt)}
        if directives.latency_ms:
            await asyncio.sleep(directives.latency_ms / 1000)
        if directives.status is not None and directives.status >= 400:
            raise _Refused(directives.status)
        prompt_tokens = _prompt_tokens(body)
        if "prompt_too_long" in extra:
            raise _Refused(400, f"prompt is too long: {CONTEXT_WINDOW + prompt_tokens} tokens > "
                                f"{CONTEXT_WINDOW} maximum")
        blocks, stop_reason, stop_sequence, output_tokens = _plan(body, prompt, directives.tokens)
        usage = {"input_tokens": prompt_tokens,
                 "cache_creation_input_tokens": extra.get("cache_write", 0),
                 "cache_read_input_tokens": extra.get("cache_read", 0),
                 "output_tokens": output_tokens, "service_tier": "standard"}
        message = {"id": new_id("msg_"), "type": "message", "role": "assistant",
                   "model": body["model"], "content": blocks, "stop_reason": stop_reason,
                   "stop_sequence": stop_sequence, "usage": usage}
        if not body.get("stream"):
            await _send_json(send, 200, message, RATE_LIMIT_HEADERS)
            return
        events = _Events(send, self.settings.chunk_delay_ms, directives.disconnect_after,
                         extra.get("stream_error"), gone)
        await events.start()
        try:
            await _stream_message(events, message)
        except _StreamEnded:
            return


def _plan(body: dict[str, Any], prompt: str, tokens: int | None,
          ) -> tuple[list[dict[str, Any]], str, str | None, int]:
    """(content blocks, stop_reason, stop_sequence, output tokens) of the reply."""
    tool = _chosen_tool(body)
    if tool is not None:
        forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
        call = {"type": "tool_use", "id": new_id("toolu_"), "name": tool["name"],
                "input": sample_instance(tool.get("input_schema") or {"type": "object"})}
        blocks: list[dict[str, Any]] = [] if forced else [
            {"type": "text", "text": f"I will use {tool['name']}."}]
        blocks.append(call)
        used = sum(count_tokens(b.get("text", "")) for b in blocks) \
            + count_tokens(orjson.dumps(call["input"]).decode()) + 8
        return blocks, "tool_use", None, used
    wanted = DEFAULT_COMPLETION_TOKENS if tokens is None else max(0, tokens)
    limit = body["max_tokens"]
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        text = orjson.dumps(sample_instance(fmt.get("schema") or {})).decode()
        return [{"type": "text", "text": text}], "end_turn", None, len(split_pieces(text))
    count = min(wanted, limit)
    text = " ".join(reply_words(prompt, count))
    stop_reason, stop_sequence = ("max_tokens" if count < wanted else "end_turn"), None
    hits = [(text.find(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
    if hits:
        position, stop_sequence = min(hits)
        text, stop_reason = text[:position], "stop_sequence"
    pieces = split_pieces(text)
    return ([{"type": "text", "text": text}] if text else []), stop_reason, stop_sequence, \
        max(len(pieces), 1)


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type")
    last = body["messages"][-1]
    content = last.get("content")
    answered = last.get("role") == "user" and isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    offers = [ToolOffer(str(t.get("name")), t.get("input_schema")) for t in tools]
    picked = pick_tool(offers, "none" if kind == "none" else "required" if kind == "any"
                       else "auto", choice.get("name") if kind == "tool" else None, answered)
    return None if picked is None else tools[offers.index(picked)]


async def _stream_message(events: _Events, message: dict[str, Any]) -> None:
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    await events.send("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": start_usage}})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            await events.send("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}})
            if index == 0:
                await events.send("ping", {"type": "ping"})
            for piece in split_pieces(block["text"]):
                await events.delta(index, {"type": "text_delta", "text": piece})
        else:
            await events.send("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {**block, "input": {}}})
            arguments = orjson.dumps(block["input"]).decode()
            await events.delta(index, {"type": "input_json_delta", "partial_json": ""})
            for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
                fragment = arguments[start:start + ARGUMENT_FRAGMENT]
                await events.delta(index, {"type": "input_json_delta", "partial_json": fragment})
        await events.send("content_block_stop", {"type": "content_block_stop", "index": index})
    await events.send("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"],
                  "stop_sequence": message["stop_sequence"]},
        "usage": {k: v for k, v in usage.items() if k != "service_tier"}})
    await events.send("message_stop", {"type": "message_stop"})
    await events.end()


class _Events:
    """Anthropic's SSE framing: `event: <type>` then `data: <json>`, a blank line after each."""

    def __init__(self, send: Send, delay_ms: float, disconnect_after: int | None,
                 error_after: int | None, gone: asyncio.Event):
        self._send = send
        self._gone = gone
        self._delay = delay_ms / 1000
        self._disconnect_after = disconnect_after
        self._error_after = error_after
        self._deltas = 0

    async def start(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"), (b"request-id", new_id("req_").encode())]})

    async def send(self, event: str, data: dict[str, Any]) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._gone.is_set():
            raise _ClientLeft
        frame = b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def delta(self, index: int, delta: dict[str, Any]) -> None:
        if self._disconnect_after is not None and self._deltas >= self._disconnect_after:
            raise MockDisconnect("mock disconnect_after directive")
        if self._error_after is not None and self._deltas >= self._error_after:
            await self.send("error", {"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}})
            await self.end()
            raise _StreamEnded
        self._deltas += 1
        await self.send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": delta})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class _StreamEnded(Exception):
    """The stream was closed on purpose (an error event); nothing more to send."""


class _ClientLeft(Exception):
    """The client closed the connection mid-stream: stop generating."""


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


# --- request checks -------------------------------------------------------------------------


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
            isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            for b in system):
        raise _Refused(400, "system: Input should be a valid string or a list of text blocks")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _Refused(400, "messages: at least one message is required")
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _Refused(400, f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            raise _Refused(400, f"{where}: all messages must have non-empty content")
        uses: set[str] = set()
        results: set[str] = set()
        seen_other = False
        for number, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            at = f"{where}.content.{number}"
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    raise _Refused(400, "messages: text content blocks must be non-empty")
                seen_other = True
            elif kind == "image":
                _check_source(block.get("source"), at, _IMAGE_TYPES)
                seen_other = True
            elif kind == "document":
                _check_source(block.get("source"), at, ("application/pdf",))
                seen_other = True
            elif kind == "tool_use" and message["role"] == "assistant":
                if not isinstance(block.get("input"), dict) or not block.get("name") \
                        or not re.fullmatch(r"[a-zA-Z0-9_-]+", str(block.get("id"))):
                    raise _Refused(400, f"{at}: tool_use needs an id, a name and an input object")
                uses.add(block["id"])
            elif kind == "tool_result" and message["role"] == "user":
                if seen_other:
                    raise _Refused(400, f"{where}: tool_result blocks must come first in the "
                                        "content of a user message")
                if block.get("tool_use_id") not in previous_uses:
                    raise _Refused(400, f"{at}: unexpected `tool_use_id` found in `tool_result` "
                                        f"blocks: {block.get('tool_use_id')}. Each `tool_result` "
                                        "block must have a corresponding `tool_use` block in the "
                                        "previous message.")
                results.add(block["tool_use_id"])
            else:
                raise _Refused(400, f"{at}.type: unexpected content block type {kind!r} in a "
                                    f"{message['role']} message")
        if message["role"] == "user" and previous_uses - results:
            missing = ", ".join(sorted(previous_uses - results))
            raise _Refused(400, f"messages.{index - 1}: `tool_use` ids were found without "
                                f"`tool_result` blocks immediately after: {missing}. Each "
                                "`tool_use` block must have a corresponding `tool_result` block "
                                "in the next message.")
        previous_uses = uses


def _check_source(source: Any, at: str, media_types: tuple[str, ...]) -> None:
    if not isinstance(source, dict):
        raise _Refused(400, f"{at}.source: Field required")
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        if source.get("media_type") not in media_types:
            raise _Refused(400, f"{at}.source.media_type: Input should be "
                                + ", ".join(repr(m) for m in media_types))
        return
    raise _Refused(400, f"{at}.source: Input tag does not match 'base64' or 'url'")


def _check_tools(tools: Any, choice: Any) -> None:
    for index, tool in enumerate(tools or []):
        schema = tool.get("input_schema") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                or not isinstance(schema, dict) or schema.get("type") != "object":
            raise _Refused(400, f"tools.{index}: a custom tool needs a name and an input_schema "
                                "of type object")
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise _Refused(400, "tool_choice: Input tag does not match 'auto', 'any', 'tool' or "
                                "'none'")
        if kind == "tool" and not isinstance(choice.get("name"), str):
            raise _Refused(400, "tool_choice.tool.name: Field required")


# --- text and tokens ------------------------------------------------------------------------


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            texts.append(_block_text(block.get("content", "")))
        elif block.get("type") == "tool_use":
            texts.append(orjson.dumps(block.get("input", {})).decode())
    return " ".join(texts)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _block_text(message.get("content"))
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    """Text tokens of the system prompt and every message, + 3 per message, + 3."""
    system = body.get("system")
    total = count_tokens(_block_text(system)) if system else 0
    for message in body.get("messages") or []:
        total += count_tokens(_block_text(message.get("content"))) + 3
    return total + 3


def _model_info(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model.replace("-", " ").title(),
            "created_at": _MODEL_CREATED, "lifecycle": "active"}


# --- ASGI plumbing --------------------------------------------------------------------------

# What Anthropic says of the caller's limits on every message (fixed values: the mock keeps no
# account); `keystead check` prints them.
RATE_LIMIT_HEADERS = [
    (b"anthropic-ratelimit-requests-limit", b"4000"),
    (b"anthropic-ratelimit-requests-remaining", b"3999"),
    (b"anthropic-ratelimit-requests-reset", b"2026-01-01T00:00:01Z"),
    (b"anthropic-ratelimit-tokens-limit", b"400000"),
    (b"anthropic-ratelimit-tokens-remaining", b"399990"),
    (b"anthropic-ratelimit-tokens-reset", b"2026-01-01T00:00:01Z"),
]


async def _send_json(send: Send, status: int, obj: Any,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(obj)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode()),
               (b"request-id", new_id("req_").encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Send, refused: _Refused) -> None:
    body = {"type": "error", "error": {"type": refused.kind, "message": refused.message},
            "request_id": new_id("req_")}
    extra = [(b"retry-after", b"1")] if refused.status == 429 else None
    await _send_json(send, refused.status, body, extra)
