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
"""

from __future__ import annotations

import contextlib
import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass

from keystead.providers.endpoints import Endpoint
from keystead.providers.key_pool import DISABLED, KeyPool, PoolKey
from keystead.providers.transport import Transport, UpstreamResponse

__all__ = ["Capabilities", "Endpoint", "Provider"]

# Answers about the key rather than the request: the pool acts on them (see key_pool).
_KEY_STATUSES = frozenset((401, 403, 429))


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
        the request sent again with the next one. `key` pins one key of the pool (`providers
        test`): no other key is tried and no state changes."""
        pinned = key is not None
        if key is None:
            key = self.keys.pick()
        was_out = key is not None and key.state == DISABLED  # every key is out: a probe
        url, headers = self.request_target(endpoint, model,
                                           key.secret if key is not None else None)
        headers["accept"] = "text/event-stream" if stream else "application/json"
        method = "GET" if endpoint is Endpoint.MODELS else "POST"
        body = self.prepare(endpoint, model, body, stream)
        if body is not None:
            headers["content-type"] = "application/json"
        response = await self.transport.send(method, url, headers, body,
                                             read_timeout=self.read_timeout, what=self.name)
        if key is not None and not pinned and (response.status in _KEY_STATUSES or was_out):
            response = await self._settle_key(endpoint, model, body, stream, method, key,
                                              was_out, response)
        return self.wrap(response, endpoint, stream)

    async def _settle_key(self, endpoint: Endpoint, model: str, body: bytes | None,
                          stream: bool, method: str, key: PoolKey, was_out: bool,
                          response: UpstreamResponse) -> UpstreamResponse:
        """Tell the pool what the provider said of `key`; on a refusal, send the same (already
        prepared) request with the next key, each key at most once."""
        pool = self.keys
        for _ in range(len(pool)):
            status = response.status
            if status == 429:
                pool.limited(key, response.headers)
            elif status < 400:
                if was_out:
                    pool.answered(key, status)
            elif status in (401, 403):
                following = pool.refused(key, status)
                if following is None:
                    return response
                with contextlib.suppress(Exception):  # a small error body: free the connection
                    await response.read()
                key, was_out = following, False
                url, headers = self.request_target(endpoint, model, key.secret)
                headers["accept"] = "text/event-stream" if stream else "application/json"
                if body is not None:
                    headers["content-type"] = "application/json"
                response = await self.transport.send(method, url, headers, body,
                                                     read_timeout=self.read_timeout,
                                                     what=self.name)
                continue
            return response
        return response


def _is_pattern(model: str) -> bool:
    return any(ch in model for ch in "*?[")
