"""The provider contract: a few methods every adapter fills (TensorZero-style).

An adapter knows how to address its provider (URL, auth header, model name) and nothing about
keys, limits or usage. Bodies go through unchanged: keystead forwards the client's JSON bytes.

Provider keys: a provider holds a `KeyPool` (`self.keys`, one key, several, or none), and
`send` picks the key of each attempt. An adapter never stores or looks up a key itself:
`request_target(endpoint, model, api_key)` receives the key picked for this attempt (None when
the provider has no key) and puts it in whatever header its API wants. `send` may call it more
than once for one request: when the provider refuses a key (401/403), the same request goes
again with the next key of the pool (see `key_pool`), so `request_target` must build fresh
headers from its arguments each time. `prepare` runs once per request, `wrap` once on the
answer that is returned.

Names: `send` refuses a model that cannot be a model name (`names.check_model`), and an adapter
that puts a name into its URL escapes it as one path segment (`names.path_segment`). Errors:
an answer of status 400 or more is read whole in `send` and handed on as an `ErrorResponse`
with any provider key it echoes masked (`redact`), so no relay of it can leak one.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass

from keystead.providers.endpoints import Endpoint
from keystead.providers.key_pool import (
    DISABLED,
    FORBIDDEN_KEY,
    FORBIDDEN_PLACE,
    KeyPool,
    PoolKey,
    classify_403,
)
from keystead.providers.names import check_model
from keystead.providers.redact import ErrorResponse
from keystead.providers.transport import Transport, UpstreamResponse
from keystead.tracing.upstream import TRACE_HEADERS

__all__ = ["Capabilities", "Endpoint", "Provider"]



@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter supports. Unsupported is declared, never discovered by a failure."""

    chat: bool = True
    streaming: bool = True
    embeddings: bool = True
    responses: bool = False
    list_models: bool = True
    messages: bool = False  # Anthropic's /v1/messages (and count_tokens), bytes passed through

    def supports(self, endpoint: Endpoint) -> bool:
        return {
            Endpoint.CHAT: self.chat,
            Endpoint.EMBEDDINGS: self.embeddings,
            Endpoint.RESPONSES: self.responses,
            Endpoint.MODELS: self.list_models,
            Endpoint.MESSAGES: self.messages,
            Endpoint.COUNT_TOKENS: self.messages,
        }.get(endpoint, False)


class Provider(ABC):
    type: str = ""

    def __init__(self, name: str, *, base_url: str, api_key: str | KeyPool | None,
                 models: tuple[str, ...], transport: Transport, read_timeout: float,
                 capabilities: Capabilities):
        """`api_key`: the provider's key, a `KeyPool` of several, or None (no auth)."""
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.keys = api_key if isinstance(api_key, KeyPool) else KeyPool.of(name, api_key)
        self.models = models
        self.transport = transport
        self.read_timeout = read_timeout
        self.capabilities = capabilities
        self._exact = frozenset(m for m in models if not _is_pattern(m))
        self._patterns = tuple(m for m in models if _is_pattern(m))

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def serves(self, model: str) -> bool:
        return model in self._exact or any(fnmatch.fnmatchcase(model, p) for p in self._patterns)

    @property
    def listed_models(self) -> tuple[str, ...]:
        """Models this provider names explicitly (patterns cannot be listed)."""
        return tuple(m for m in self.models if not _is_pattern(m))

    @abstractmethod
    def request_target(self, endpoint: Endpoint, model: str,
                       api_key: str | None) -> tuple[str, dict[str, str]]:
        """URL and headers for a call to `endpoint` for `model`, authenticated with `api_key`
        (the key `send` picked for this attempt; None: send no credentials). Returns a new
        headers dict each call: `send` adds to it."""

    def prepare(self, endpoint: Endpoint, model: str, body: bytes | None,
                stream: bool) -> bytes | None:
        """The body to send, from the client's OpenAI-format body. A translating adapter
        (another provider's API) rewrites it here; OpenAI-compatible ones send it unchanged."""
        return body

    def wrap(self, response: UpstreamResponse, endpoint: Endpoint,
             stream: bool) -> UpstreamResponse:
        """The provider's answer as the gateway reads it: OpenAI-format status, body and SSE
        events. A translating adapter returns a view that translates as it is read."""
        return response

    async def send(self, endpoint: Endpoint, model: str, body: bytes | None, *,
                   stream: bool, key: PoolKey | None = None) -> UpstreamResponse:
        """Send the request with a key of the pool; a key the provider refuses is taken out and
        the request sent again with the next one (see `key_pool`). `key` pins one key of the
        pool (`providers test`): no other key is tried and no state changes. An answer of
        status 400 or more comes back read whole, with any provider key it echoes masked
        (`redact`)."""
        if endpoint is not Endpoint.MODELS:  # (the model list names no model)
            check_model(model, self.name)
        pinned = key is not None
        if key is None:
            key = self.keys.pick()
        was_out = key is not None and key.state == DISABLED  # every key is out: a probe
        url, headers = self._target(endpoint, model, key, stream)
        method = "GET" if endpoint is Endpoint.MODELS else "POST"
        body = self.prepare(endpoint, model, body, stream)
        if body is not None:
            headers["content-type"] = "application/json"
        response = await self.transport.send(method, url, headers, body,
                                             read_timeout=self.read_timeout, what=self.name)
        if key is not None and not pinned and (response.status >= 400 or was_out):
            response = await self._settle_key(endpoint, model, body, stream, method, key,
                                              was_out, response)
        elif response.status >= 400:
            response = await ErrorResponse.read_from(response, self.keys.secrets)
        return self.wrap(response, endpoint, stream)

    def _target(self, endpoint: Endpoint, model: str, key: PoolKey | None,
                stream: bool) -> tuple[str, dict[str, str]]:
        url, headers = self.request_target(endpoint, model,
                                           key.secret if key is not None else None)
        headers["accept"] = "text/event-stream" if stream else "application/json"
        trace = TRACE_HEADERS.get()  # tracing on: the attempt span's traceparent
        if trace is not None:
            headers.update(trace)
        return url, headers

    async def _settle_key(self, endpoint: Endpoint, model: str, body: bytes | None,
                          stream: bool, method: str, key: PoolKey, was_out: bool,
                          response: UpstreamResponse) -> UpstreamResponse:
        """Tell the pool what the provider said of `key`; on a refusal, send the same (already
        prepared) request with a key not tried yet, each key at most once."""
        pool = self.keys
        tried = [key]
        refusers: list[PoolKey] = []  # keys that refused this request with a 403 about it
        while True:
            status = response.status
            if status < 400:
                if was_out:
                    pool.answered(key, status)
                for refuser in refusers:  # another key served what they refused
                    pool.faulted(refuser)
                return response
            error = await self._read_error(response, retry=status in (401, 403))
            following: PoolKey | None
            if status == 429:
                pool.limited(key, error.headers)
                return error
            if status == 401:
                following = pool.refused(key, status, exclude=tried)
            elif status == 403:
                about = classify_403(error.body)
                if about == FORBIDDEN_PLACE:
                    return error  # every key would hear the same
                if about == FORBIDDEN_KEY:
                    following = pool.refused(key, status, exclude=tried)
                else:
                    refusers.append(key)
                    following = pool.another(tried)
            else:
                return error
            if following is None:
                return error
            key, was_out = following, False
            tried.append(key)
            url, headers = self._target(endpoint, model, key, stream)
            if body is not None:
                headers["content-type"] = "application/json"
            response = await self.transport.send(method, url, headers, body,
                                                 read_timeout=self.read_timeout,
                                                 what=self.name)

    async def _read_error(self, response: UpstreamResponse, *, retry: bool) -> ErrorResponse:
        """The error answer read whole and redacted. `retry`: a body that cannot be read does
        not matter (the request goes to another key): an empty one stands for it."""
        if not retry:
            return await ErrorResponse.read_from(response, self.keys.secrets)
        try:
            return await ErrorResponse.read_from(response, self.keys.secrets)
        except Exception:  # a broken refusal: free the connection, move on
            response.abort()
            return ErrorResponse(response, b"")


def _is_pattern(model: str) -> bool:
    return any(ch in model for ch in "*?[")
