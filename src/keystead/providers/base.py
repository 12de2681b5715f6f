"""The provider contract: a few methods every adapter fills (TensorZero-style).

An adapter knows how to address its provider (URL, auth header, model name) and nothing about
keys, limits or usage. Bodies go through unchanged: keystead forwards the client's JSON bytes.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

from keystead.providers.transport import Transport, UpstreamResponse

__all__ = ["Capabilities", "Endpoint", "Provider"]


class Endpoint(StrEnum):
    CHAT = "chat.completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MODELS = "models"
    TOKENS = "tokens"  # keystead's own: minting short-lived tokens; never reaches a provider


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter supports. Unsupported is declared, never discovered by a failure."""

    chat: bool = True
    streaming: bool = True
    embeddings: bool = True
    responses: bool = False
    list_models: bool = True

    def supports(self, endpoint: Endpoint) -> bool:
        return {
            Endpoint.CHAT: self.chat,
            Endpoint.EMBEDDINGS: self.embeddings,
            Endpoint.RESPONSES: self.responses,
            Endpoint.MODELS: self.list_models,
        }.get(endpoint, False)


class Provider(ABC):
    type: str = ""

    def __init__(self, name: str, *, base_url: str, api_key: str | None,
                 models: tuple[str, ...], transport: Transport, read_timeout: float,
                 capabilities: Capabilities):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
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
    def request_target(self, endpoint: Endpoint, model: str) -> tuple[str, dict[str, str]]:
        """URL and headers (auth included) for a call to `endpoint` for `model`."""

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
                   stream: bool) -> UpstreamResponse:
        url, headers = self.request_target(endpoint, model)
        headers["accept"] = "text/event-stream" if stream else "application/json"
        method = "GET" if endpoint is Endpoint.MODELS else "POST"
        body = self.prepare(endpoint, model, body, stream)
        if body is not None:
            headers["content-type"] = "application/json"
        response = await self.transport.send(method, url, headers, body,
                                             read_timeout=self.read_timeout, what=self.name)
        return self.wrap(response, endpoint, stream)


def _is_pattern(model: str) -> bool:
    return any(ch in model for ch in "*?[")
