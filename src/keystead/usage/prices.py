"""The cost of a request (P11): a maintained offline price table plus overrides from the config.

Prices come from `genai-prices` (Pydantic's maintained table, shipped as data in the package, no
network). Its general `calc_price` costs ~100 µs a call, too much for every request, so each
model's flat per-token prices are looked up once and the arithmetic is done here, in Decimal.
Models with tiered or conditional prices fall back to the library's own calculation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import genai_prices
from genai_prices import Usage

from keystead.config.model import ModelPrice

__all__ = ["Cost", "PriceBook", "TokenUsage"]

_MILLION = Decimal(1_000_000)
_NANO = Decimal("1e-9")
_ZERO = Decimal(0)

# keystead provider types -> genai-prices provider ids
_PROVIDER_IDS = {"openai": "openai", "azure": "azure", "mock": "openai", "anthropic": "anthropic",
                 "gemini": "google"}


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens, read from the provider's prompt cache
    # Part of prompt_tokens written to the provider's prompt cache (Anthropic bills these above
    # the input rate); OpenAI's `prompt_tokens_details.cache_write_tokens`.
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    usd: Decimal
    known: bool  # False: no price for this model; cost recorded as 0 and flagged

    def header(self) -> bytes:
        return format(self.usd, "f").encode()


@dataclass(frozen=True, slots=True)
class _Rates:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal


class PriceBook:
    def __init__(self, overrides: dict[str, ModelPrice] | None = None):
        self._overrides = overrides or {}
        self._rates: dict[tuple[str, str], _Rates | None] = {}
        self._tiered: dict[tuple[str, str], object] = {}

    def cost(self, provider_type: str, model: str, usage: TokenUsage) -> Cost:
        key = (provider_type, model)
        try:
            rates = self._rates[key]
        except KeyError:
            rates = self._rates[key] = self._lookup(provider_type, model)
        if rates is None:
            tiered = self._tiered.get(key)
            if tiered is None:
                return Cost(_ZERO, known=False)
            price = tiered.calc_price(Usage(  # type: ignore[attr-defined]
                input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
                cache_read_tokens=usage.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens))
            return Cost(Decimal(price["total_price"]).quantize(_NANO), known=True)
        uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        total = (uncached * rates.input + usage.cached_tokens * rates.cached_input
                 + usage.cache_write_tokens * rates.cache_write
                 + usage.completion_tokens * rates.output) / _MILLION
        return Cost(total.quantize(_NANO), known=True)

    def knows(self, provider_type: str, model: str) -> bool:
        return self.cost(provider_type, model, TokenUsage()).known

    def _lookup(self, provider_type: str, model: str) -> _Rates | None:
        override = self._overrides.get(model)
        if override is not None:
            cached = override.cached_input_per_mtok
            return _Rates(override.input_per_mtok, override.output_per_mtok,
                          override.input_per_mtok if cached is None else cached,
                          override.input_per_mtok)
        # The provider's own table first; for OpenAI-compatible servers, whoever is known to
        # publish the model (a self-hosted llama has no price), then OpenAI's names.
        candidates = (_PROVIDER_IDS.get(provider_type), None, "openai")
        for provider_id in dict.fromkeys(candidates):
            try:
                result = genai_prices.calc_price(Usage(input_tokens=0, output_tokens=0),
                                                 model_ref=model, provider_id=provider_id)
                break
            except LookupError:
                continue
        else:
            return None
        price = result.model_price
        flat = [v if v is not None else _ZERO
                for v in (price.input_mtok, price.output_mtok, price.cache_read_mtok,
                          price.cache_write_mtok)]
        if all(isinstance(v, Decimal) for v in flat) and \
                not getattr(price, "requests_kcount", None):
            input_rate, output_rate, cached_rate, write_rate = (Decimal(v) for v in flat)  # type: ignore[arg-type]
            if price.cache_read_mtok is None:
                cached_rate = input_rate
            if price.cache_write_mtok is None:
                write_rate = input_rate
            return _Rates(input_rate, output_rate, cached_rate, write_rate)
        self._tiered[(provider_type, model)] = price
        return None
