"""The built-in mock upstream: a fake OpenAI-compatible provider speaking the real wire format.

The gateway's demo and tests call it in-process (an ASGI transport) or over HTTP
(`keystead mock-upstream --port P`, see `serve_mock`). It is a raw ASGI app, no framework, so
what goes over the wire is exactly what is written here.

Routes, each with or without the `/v1` prefix:
    POST /v1/chat/completions     (also Azure's /openai/deployments/{deployment}/chat/completions)
    POST /v1/embeddings           (also Azure's /openai/deployments/{deployment}/embeddings)
    POST /v1/responses            (only with `supports_responses`; see `mocks.responses`)
    GET  /v1/models, GET /v1/models/{id}

Replies are deterministic (see `mocks.content`), steerable per request with `[[mock:...]]`
directives in the last user message, and every request is kept in `MockUpstream.received`.

Faults can be scripted per attempt, to test a retrying client: `[[mock:faults=SPEC]]` in the
request (`[[mock:faults@MODEL=SPEC]]` for one model only) or `MockSettings.faults` for every
request. SPEC is a comma-separated list of steps, one per attempt of the same request (counted
per app, SPEC text and model), then normal answers:

    ok                   answer normally
    STATUS               an OpenAI error with that status (400-599); 429 adds `retry-after: 1`
    429:retry=S          ... `retry-after: S` instead (429 and 503 only)
    429:retry_ms=MS      ... `retry-after-ms: MS` and `retry-after: ceil(MS / 1000)`
    slow=MS              wait MS milliseconds, then answer
    stall=MS             streaming: status and SSE headers, then MS of silence before the first
                         event; else like slow
    reset                drop the connection without answering (`MockReset`)
    reset=K              streaming: K content chunks, then drop it (as `disconnect_after=K`);
                         else like reset
    badjson              200 with a truncated JSON body; streaming, one `data:` line that is not
                         JSON, then the end of the stream
    context              400 `context_length_exceeded`, worded as OpenAI words it
    schema               chat and responses: content that breaks `response_format` (`text.format`):
                         not JSON for json_object, JSON the schema rejects for json_schema;
                         elsewhere an ordinary answer
    STEP*N, STEP*        the step N times, or forever (`500*`: always fail)

Unknown steps count as `ok` in a request (like bad directive values); `MockSettings.faults` is
validated strictly (`mocks.faults.parse_faults`).
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from keystead.mocks.asgi import ReceivedRequest, lifespan, read_body, received, serve_app
from keystead.mocks.content import (
    Directives,
    chat_message,
    chat_usage,
    count_tokens,
    embedding_vector,
    encode_base64,
    last_user_text,
    malformed_json,
    model_object,
    new_id,
    parse_directives,
    plan_reply,
    prompt_tokens,
)
from keystead.mocks.faults import OK, FaultScripts, FaultStep, parse_faults
from keystead.mocks.responses import (
    input_messages,
    plan_output,
    response_object,
    responses_usage,
    stream_response,
)
from keystead.mocks.stream import (
    EventStream,
    MockDisconnect,
    stream_chat,
    stream_malformed,
)

__all__ = [
    "MockDisconnect",
    "MockReset",
    "MockSettings",
    "MockUpstream",
    "ReceivedRequest",
    "create_mock_app",
    "serve_mock",
]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FINGERPRINT = "fp_keystead_mock"
EMBEDDING_DIMS = 1536
CONTEXT_LIMIT = 128_000  # what the `context` fault claims, as for gpt-4o
EMBEDDING_CONTEXT_LIMIT = 8_192

# HTTP status -> (OpenAI error `type`, default `code`), as api.openai.com reports them.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
}
_AZURE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_POST_ROUTES = {"/chat/completions": "chat", "/embeddings": "embeddings", "/responses": "responses"}


@dataclass(frozen=True, slots=True)
class MockSettings:
    latency_ms: float = 0
    chunk_delay_ms: float = 0
    failure_rate: float = 0
    failure_status: int = 500
    seed: int | None = None
    api_key: str | None = None
    api_keys: tuple[str, ...] = ()  # several accepted keys (a provider's pool); beats api_key
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    supports_responses: bool = True
    faults: str | None = None  # a fault script for every request (see the module docstring)

    def __post_init__(self) -> None:
        if self.faults is not None:
            parse_faults(self.faults)  # a bad script fails here, not on the first request


class _MockError(Exception):
    """Becomes an OpenAI-format error response (only raised before the response starts)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers  # None: the status's default (429: `retry-after: 1`)


class MockReset(MockDisconnect):
    """The `reset` fault: the connection drops before any answer."""


def create_mock_app(settings: MockSettings) -> MockUpstream:
    return MockUpstream(settings)


async def serve_mock(host: str, port: int, settings: MockSettings,
                     sock: socket.socket | None = None) -> None:
    """Serve the mock over HTTP until cancelled (or interrupted, when in the main thread);
    on `sock` when given (bound and listening already), else on host:port."""
    await serve_app(create_mock_app(settings), host, port, sock)


class MockUpstream:
    """The ASGI app. `received` keeps the latest requests so tests can see what was sent."""

    def __init__(self, settings: MockSettings):
        self.settings = settings
        self.received: deque[ReceivedRequest] = deque(maxlen=200)
        self._rng = random.Random(settings.seed)
        self._request_faults = FaultScripts()  # scripts from [[mock:faults=...]] directives
        self._settings_faults = FaultScripts()  # settings.faults, counted per model

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        request = received(scope, body)
        self.received.append(request)
        try:
            await self._handle(request, send)
        except _MockError as exc:
            await _send_error(send, exc)
        except MockReset:
            _drop_connection(send)
            raise

    async def _handle(self, request: ReceivedRequest, send: Send) -> None:
        self._check_auth(request.headers)
        route, arg = self._route(request.method, request.path)
        if route is None:
            raise _MockError(404, f"Unknown request URL: {request.method} {request.path}.")
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        if self.settings.failure_rate and self._rng.random() < self.settings.failure_rate:
            raise _MockError(self.settings.failure_status, "Injected failure (mock failure_rate).")
        if route == "models":
            data = [model_object(name) for name in self.settings.models]
            await _send_json(send, 200, {"object": "list", "data": data})
            return
        if route == "model":
            if arg not in self.settings.models:
                raise _MockError(
                    404, f"The model '{arg}' does not exist", "model_not_found", "model"
                )
            await _send_json(send, 200, model_object(arg))
            return
        body = _parse_body(request.body, deployment=arg)
        handlers = {
            "chat": self._chat,
            "embeddings": self._embeddings,
            "responses": self._responses,
        }
        await handlers[route](body, send)

    def _check_auth(self, headers: dict[str, str]) -> None:
        accepted = self.settings.api_keys or (self.settings.api_key,)
        if accepted == (None,):
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        if bearer not in accepted and headers.get("api-key") not in accepted:
            raise _MockError(401, "Incorrect API key provided.", "invalid_api_key")

    def _route(self, method: str, path: str) -> tuple[str | None, str | None]:
        """(route name, path argument): the Azure deployment or the model id."""
        path = path.rstrip("/")
        if azure := _AZURE.match(path):
            kind = "chat" if azure[2] == "chat/completions" else "embeddings"
            return (kind if method == "POST" else None), azure[1]
        path = path.removeprefix("/v1")
        if method == "POST":
            route = _POST_ROUTES.get(path)
            if route == "responses" and not self.settings.supports_responses:
                route = None
            return route, None
        if method == "GET" and path == "/models":
            return "models", None
        if method == "GET" and path.startswith("/models/"):
            return "model", path.removeprefix("/models/")
        return None, None

    async def _apply(
        self, directives: Directives, model: str, *, streaming: bool, overflow: _MockError
    ) -> FaultStep:
        """Act on the directives and this attempt's fault step before any answer; return the
        step, for the faults that shape the answer itself (stall, reset=K, badjson, schema).

        `overflow` is the route's `context` error.
        """
        if directives.latency_ms:
            await asyncio.sleep(directives.latency_ms / 1000)
        if directives.status is not None and directives.status >= 400:
            raise _MockError(directives.status, f"Mock error (status {directives.status}).")
        step = self._next_fault(directives, model)
        if step.kind == "status":
            assert step.status is not None
            message = f"Mock fault (status {step.status})."
            raise _MockError(step.status, message, headers=step.retry_headers())
        if step.kind == "context":
            raise overflow
        if step.kind == "slow" or (step.kind == "stall" and not streaming):
            await asyncio.sleep(step.delay_ms / 1000)
        if step.kind == "reset" and (step.after_chunks is None or not streaming):
            raise MockReset("mock reset fault")
        return step

    def _next_fault(self, directives: Directives, model: str) -> FaultStep:
        """This attempt's step: the request's script beats the settings' one."""
        spec = directives.fault_spec(model)
        if spec is not None:
            step = self._request_faults.next_step(spec, model)
        elif self.settings.faults is not None:
            step = self._settings_faults.next_step(self.settings.faults, model)
        else:
            step = None
        return step or OK

    def _event_stream(self, send: Send, fault: FaultStep) -> EventStream:
        stall_ms = fault.delay_ms if fault.kind == "stall" else 0
        return EventStream(send, self.settings.chunk_delay_ms, stall_ms)

    # --- chat completions -------------------------------------------------------------------

    async def _chat(self, body: dict[str, Any], send: Send) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _MockError(400, "'messages' must be a non-empty array.", param="messages")
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 128:
            raise _MockError(400, "'n' must be an integer between 1 and 128.", param="n")
        prompt = last_user_text(messages)
        directives = parse_directives(prompt)
        streaming = bool(body.get("stream"))
        overflow = _context_error("messages", CONTEXT_LIMIT, prompt_tokens(messages))
        fault = await self._apply(directives, body["model"], streaming=streaming, overflow=overflow)
        if fault.kind == "reset":  # reset=K while streaming
            directives = replace(directives, disconnect_after=fault.after_chunks)
        off_schema = fault.kind == "schema"
        replies = [plan_reply(body, prompt, directives, off_schema=off_schema) for _ in range(n)]
        usage = None if directives.no_usage else chat_usage(messages, replies)
        base = {
            "id": new_id("chatcmpl-"),
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        if streaming:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = self._event_stream(send, fault)
            await stream.start()
            if fault.kind == "badjson":
                await stream_malformed(stream, {"object": "chat.completion.chunk", **base})
                return
            await stream_chat(stream, base, replies, usage if include_usage else None, directives)
            return
        choices = [
            {
                "index": i,
                "message": chat_message(reply),
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for i, reply in enumerate(replies)
        ]
        completion = {"object": "chat.completion", **base, "choices": choices}
        if usage is not None:
            completion["usage"] = usage
        await _answer(send, completion, fault)

    # --- embeddings ---------------------------------------------------------------------------

    async def _embeddings(self, body: dict[str, Any], send: Send) -> None:
        items = _embedding_inputs(body.get("input"))
        texts = [item for item in items if isinstance(item, str)]
        directives = parse_directives(texts[-1] if texts else "")
        tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in items)
        overflow = _context_error("input", EMBEDDING_CONTEXT_LIMIT, tokens)
        fault = await self._apply(directives, body["model"], streaming=False, overflow=overflow)
        dims = body.get("dimensions") or EMBEDDING_DIMS
        if not isinstance(dims, int) or dims < 1:
            raise _MockError(400, "'dimensions' must be a positive integer.", param="dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = embedding_vector(item, dims)
            encoded = encode_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        result: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not directives.no_usage:
            result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        await _answer(send, result, fault)

    # --- responses API ----------------------------------------------------------------------

    async def _responses(self, body: dict[str, Any], send: Send) -> None:
        if not isinstance(body.get("input"), str | list):
            raise _MockError(400, "'input' must be a string or an array.", param="input")
        messages = input_messages(body)
        prompt = last_user_text(messages)
        directives = parse_directives(prompt)
        streaming = bool(body.get("stream"))
        overflow = _context_error("input", CONTEXT_LIMIT, prompt_tokens(messages))
        fault = await self._apply(directives, body["model"], streaming=streaming, overflow=overflow)
        if fault.kind == "reset":  # reset=K while streaming
            directives = replace(directives, disconnect_after=fault.after_chunks)
        output = plan_output(body, prompt, directives, off_schema=fault.kind == "schema")
        response = response_object(new_id("resp_"), int(time.time()), body, output.status,
                                   [output.item])
        if not directives.no_usage:
            response["usage"] = responses_usage(prompt_tokens(messages), output.tokens)
        if not streaming:
            await _answer(send, response, fault)
            return
        stream = self._event_stream(send, fault)
        await stream.start()
        if fault.kind == "badjson":
            first = {"type": "response.created", "response": response, "sequence_number": 0}
            await stream_malformed(stream, first, event="response.created")
            return
        await stream_response(stream, response, output, directives)


# --- faults ---------------------------------------------------------------------------------


def _context_error(param: str, limit: int, tokens: int) -> _MockError:
    """A context overflow as OpenAI reports it; the request "resulted in" `limit + tokens`."""
    noun = "messages" if param == "messages" else "input"
    message = (
        f"This model's maximum context length is {limit} tokens. However, your {noun} "
        f"resulted in {limit + tokens} tokens. Please reduce the length of the {noun}."
    )
    return _MockError(400, message, "context_length_exceeded", param)


def _drop_connection(send: Send) -> None:
    """Make a `reset` close the socket without a word when uvicorn serves the mock.

    ASGI has no message for "drop the connection", and uvicorn answers an app that raises
    before `http.response.start` with its own `500 Internal Server Error`. So reach uvicorn's
    request cycle behind `send` (a bound method): marked disconnected it writes nothing more,
    and its transport is closed. In process (ASGITransport, tests) `send` is a plain function:
    nothing to do, the exception itself reads as the dropped connection.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if cycle is None or transport is None or not hasattr(cycle, "disconnected"):
        return
    cycle.disconnected = True
    transport.close()


# --- embeddings and models helpers ----------------------------------------------------------


def _embedding_inputs(raw: Any) -> list[str | list[int]]:
    """A string, strings, a token array or token arrays -> one list of items to embed."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(isinstance(x, int) for x in raw):
            return [list(raw)]
        if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in raw):
            return [list(x) for x in raw]
    raise _MockError(400, "'input' must be a string, strings or token arrays.", param="input")


# --- ASGI plumbing --------------------------------------------------------------------------


def _parse_body(raw: bytes, deployment: str | None) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _MockError(
            400, "We could not parse the JSON body of your request.", "invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise _MockError(400, "The request body must be a JSON object.", "invalid_json")
    if deployment is not None:
        body["model"] = deployment  # Azure: the deployment, not the body, names the model
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _MockError(
            400, "you must provide a model parameter", "missing_required_parameter", "model"
        )
    return body


# What OpenAI says of the caller's limits on every answer (fixed values: the mock keeps no
# account); `keystead check` prints them.
RATE_LIMIT_HEADERS = [
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-limit-tokens", b"200000"),
    (b"x-ratelimit-remaining-tokens", b"199990"),
    (b"x-ratelimit-reset-tokens", b"3ms"),
]


async def _answer(send: Send, obj: Any, fault: FaultStep) -> None:
    """A 200 JSON answer, or (the `badjson` fault) the same cut off halfway."""
    if fault.kind == "badjson":
        await _send_payload(send, 200, malformed_json(obj), RATE_LIMIT_HEADERS)
    else:
        await _send_json(send, 200, obj, RATE_LIMIT_HEADERS)


async def _send_json(
    send: Send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_payload(send, status, orjson.dumps(obj), extra)


async def _send_payload(
    send: Send, status: int, payload: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", new_id("req_").encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Send, exc: _MockError) -> None:
    fallback = "server_error" if exc.status >= 500 else "invalid_request_error"
    kind, default_code = _ERROR_KINDS.get(exc.status, (fallback, None))
    error = {
        "message": exc.message,
        "type": kind,
        "param": exc.param,
        "code": exc.code or default_code,
    }
    extra = exc.headers
    if extra is None and exc.status == 429:
        extra = [(b"retry-after", b"1")]
    await _send_json(send, exc.status, {"error": error}, extra)
