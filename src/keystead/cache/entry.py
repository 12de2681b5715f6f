"""What the cache stores for one request: the complete answer and what it cost when it was made.

Only complete 200 answers are stored, so there is no status. The body is the OpenAI JSON of the
whole answer (a chat.completion, an embeddings list, a Responses `response`) even when the
original was streamed (`assemble`); a hit replays it as JSON or as a stream (`replay`). The usage
and cost are those of the original call: a hit is recorded at zero upstream cost, and this is
the cost it saved.

Serialised as one format byte + a msgpack array (field names not repeated, the body as raw
binary, not base64): ~40 bytes over the body. An entry written by another format version, or
unreadable, decodes to None, which the caller treats as a miss.
"""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from keystead.usage.prices import TokenUsage

__all__ = ["CachedResponse"]

_FORMAT = b"\x01"


class CachedResponse(msgspec.Struct, array_like=True, frozen=True):
    endpoint: str  # "chat.completions", "embeddings", "responses"
    body: bytes  # the complete answer's JSON, as the client receives it unstreamed
    model: str  # the model that served it (the provider's name for it)
    provider: str  # keystead's name of the provider that served it
    cost_usd: str  # the original call's cost, a Decimal as text (exact)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    created_at: float = 0.0  # wall clock (Unix seconds) when stored: for an `Age` header

    @classmethod
    def build(cls, endpoint: str, body: bytes, *, model: str, provider: str, cost_usd: Decimal,
              usage: TokenUsage | None = None, created_at: float | None = None
              ) -> CachedResponse:
        usage = usage or TokenUsage()
        return cls(endpoint, body, model, provider, format(cost_usd, "f"),
                   usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                   time.time() if created_at is None else created_at)

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(prompt_tokens=self.prompt_tokens,
                          completion_tokens=self.completion_tokens,
                          cached_tokens=self.cached_tokens)

    @property
    def cost(self) -> Decimal:
        return Decimal(self.cost_usd)

    def age_s(self, now: float | None = None) -> int:
        return max(0, int((time.time() if now is None else now) - self.created_at))

    def to_bytes(self) -> bytes:
        return _FORMAT + _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedResponse | None:
        """The entry, or None if `data` is not one this version wrote (a miss, not an error)."""
        if data[:1] != _FORMAT:
            return None
        try:
            return _DECODER.decode(memoryview(data)[1:])
        except msgspec.DecodeError:  # ValidationError included
            return None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CachedResponse)
