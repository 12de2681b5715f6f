"""Anthropic's Messages API behind the OpenAI chat completions route.

The client speaks OpenAI; `prepare` turns its body into a Messages request
(`anthropic_request`) and `wrap` returns a view of Anthropic's answer that reads as OpenAI's:
status, headers, body (`anthropic_answer`, `anthropic_errors`) and SSE events
(`anthropic_stream`). The rest of the gateway (usage, prices, limits, the ledger) sees an
OpenAI-compatible provider.

Chat only (streamed or not); `GET /v1/models` is translated so `keystead providers test`
works. Embeddings and the Responses API are declared unsupported.

Anthropic's own API (`Endpoint.MESSAGES`, `Endpoint.COUNT_TOKENS`, for clients on Anthropic's
SDKs) is passed through: the body goes as it is, the answer comes back as it is (status 529
included). The client's `anthropic-version` and `anthropic-beta` headers travel with it: the
data plane puts them in `CLIENT_HEADERS` (a context variable: one request, one task) for the
duration of the request, and `request_target` reads it for these endpoints only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from multidict import CIMultiDict

from keystead.errors import InvalidJSON, UpstreamError
from keystead.providers.anthropic_answer import message_to_completion
from keystead.providers.anthropic_errors import error_to_openai, mapped_status
from keystead.providers.anthropic_request import chat_to_messages
from keystead.providers.anthropic_stream import StreamTranslator
from keystead.providers.base import Capabilities, Endpoint, Provider
from keystead.providers.key_pool import KeyPool
from keystead.providers.transport import Transport, UpstreamResponse

__all__ = ["ANTHROPIC_VERSION", "CLIENT_HEADERS", "AnthropicProvider", "TranslatedResponse"]

# The API version keystead's translation is written against (sent on every request), and the
# default of a passed-through request whose client named none.
ANTHROPIC_VERSION = "2023-06-01"
_PATHS = {Endpoint.CHAT: "/v1/messages", Endpoint.MODELS: "/v1/models?limit=1000",
          Endpoint.MESSAGES: "/v1/messages",
          Endpoint.COUNT_TOKENS: "/v1/messages/count_tokens"}
_PASSED = ("retry-after", "retry-after-ms")
_NATIVE = frozenset((Endpoint.MESSAGES, Endpoint.COUNT_TOKENS))

# The headers of the client's own passed-through request (`anthropic-version`, and
# `anthropic-beta` when it sent one), set by the data plane around the request.
CLIENT_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("anthropic_client_headers",
                                                                  default=None)


class AnthropicProvider(Provider):
    type = "anthropic"

    def __init__(self, name: str, *, base_url: str, api_key: str | KeyPool | None,
                 models: tuple[str, ...], transport: Transport, read_timeout: float,
                 capabilities: Capabilities):
        # Anthropic's own API is always passed through: it is the same upstream route.
        super().__init__(name, base_url=base_url, api_key=api_key, models=models,
                         transport=transport, read_timeout=read_timeout,
                         capabilities=replace(capabilities, messages=True))

    def request_target(self, endpoint: Endpoint, model: str,
                       api_key: str | None) -> tuple[str, dict[str, str]]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if endpoint in _NATIVE:
            client = CLIENT_HEADERS.get()
            if client:
                headers.update(client)
        if api_key:
            headers["x-api-key"] = api_key
        path = _PATHS.get(endpoint)
        if path is None:  # capabilities keep other endpoints away; never guess a URL
            raise UpstreamError(f"Provider {self.name} (anthropic) does not serve {endpoint}.")
        return self.base_url + path, headers

    def prepare(self, endpoint: Endpoint, model: str, body: bytes | None,
                stream: bool) -> bytes | None:
        if endpoint is not Endpoint.CHAT or body is None:
            return body  # Anthropic's own requests (and GET /v1/models) go as they are
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidJSON("The body is not JSON.") from None
        if not isinstance(request, dict):
            raise InvalidJSON("The body must be a JSON object.")
        return orjson.dumps(chat_to_messages(request, model, stream=stream))

    def wrap(self, response: UpstreamResponse, endpoint: Endpoint,
             stream: bool) -> UpstreamResponse:
        if endpoint in _NATIVE:
            return response  # passed through: Anthropic's status, headers, body and events
        return TranslatedResponse(response, endpoint, stream and response.status == 200,
                                  self.name)


class TranslatedResponse:
    """Anthropic's answer, read as OpenAI's. Status and headers are known at once; the body
    and the events are translated as they are read."""

    __slots__ = ("_endpoint", "_inner", "_stream", "_what", "headers", "status")

    def __init__(self, inner: UpstreamResponse, endpoint: Endpoint, stream: bool, what: str):
        self._inner = inner
        self._endpoint = endpoint
        self._stream = stream
        self._what = what
        self.status = mapped_status(inner.status)
        headers: CIMultiDict[str] = CIMultiDict()
        headers["content-type"] = "text/event-stream" if stream else "application/json"
        for name in _PASSED:
            value = inner.headers.get(name)
            if value is not None:
                headers[name] = value
        request_id = inner.headers.get("request-id")
        if request_id is not None:
            headers["x-request-id"] = request_id
        self.headers: Mapping[str, str] = headers

    @property
    def upstream_headers(self) -> Mapping[str, str]:
        """Anthropic's own headers, untranslated (its anthropic-ratelimit-*, for checks)."""
        return self._inner.headers

    async def read(self) -> bytes:
        body = await self._inner.read()
        if self._inner.status >= 400:
            return error_to_openai(self._inner.status, body)[1]
        if self._stream:
            translator = StreamTranslator()
            return translator.feed(body) + translator.finish()
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise UpstreamError(f"Provider {self._what} answered HTTP {self._inner.status} "
                                "with a body that is not JSON.")
        if self._endpoint is Endpoint.MODELS:
            return orjson.dumps(_models_list(document))
        return orjson.dumps(message_to_completion(document))

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if not self._stream:
            yield await self.read()
            return
        translator = StreamTranslator()
        async for chunk in self._inner.iter_chunks():
            out = translator.feed(chunk)
            if out:
                yield out
        rest = translator.finish()
        if rest:
            yield rest

    def abort(self) -> None:
        self._inner.abort()

    def release(self) -> None:
        self._inner.release()


def _models_list(document: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's model list -> OpenAI's."""
    data = []
    for model in document.get("data") or []:
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            continue
        data.append({"id": model["id"], "object": "model",
                     "created": _epoch(model.get("created_at")), "owned_by": "anthropic"})
    return {"object": "list", "data": data}


def _epoch(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
