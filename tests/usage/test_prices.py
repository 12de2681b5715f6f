"""PriceBook: costs from the genai-prices table, config overrides, exact Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage

from keystead.config.model import ModelPrice
from keystead.usage.prices import Cost, PriceBook, TokenUsage

NANO = Decimal("1e-9")


def library_cost(model: str, usage: TokenUsage, provider_id: str | None = "openai") -> Decimal:
    result = genai_prices.calc_price(
        Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
              cache_read_tokens=usage.cached_tokens),
        model_ref=model, provider_id=provider_id)
    return Decimal(result.total_price).quantize(NANO)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3"])
def test_known_openai_model_matches_the_library(model):
    usage = TokenUsage(prompt_tokens=1234, completion_tokens=567)
    cost = PriceBook().cost("openai", model, usage)
    assert cost.known
    assert cost.usd == library_cost(model, usage)
    assert cost.usd > 0


def test_gpt_4o_mini_cost_is_exact():
    # $0.15 / MTok in, $0.60 / MTok out.
    cost = PriceBook().cost("openai", "gpt-4o-mini", TokenUsage(1_000_000, 1_000_000))
    assert cost == Cost(Decimal("0.750000000"), known=True)
    one = PriceBook().cost("openai", "gpt-4o-mini", TokenUsage(prompt_tokens=1))
    assert one.usd == Decimal("0.000000150")


def test_cached_tokens_are_priced_at_the_cache_rate():
    book = PriceBook()
    # gpt-4o: $2.50 / MTok input, $1.25 / MTok cached input, $10 / MTok output.
    plain = book.cost("openai", "gpt-4o", TokenUsage(prompt_tokens=1000, completion_tokens=100))
    cached = book.cost("openai", "gpt-4o", TokenUsage(prompt_tokens=1000, completion_tokens=100,
                                                      cached_tokens=800))
    assert plain.usd == Decimal("0.003500000")
    assert cached.usd == Decimal("0.002500000")  # 200 x 2.5 + 800 x 1.25 + 100 x 10, per MTok
    assert cached.usd == library_cost("gpt-4o", TokenUsage(1000, 100, 800))


def test_embedding_model_has_no_output_price():
    usage = TokenUsage(prompt_tokens=10_000)
    cost = PriceBook().cost("openai", "text-embedding-3-small", usage)
    assert cost.usd == Decimal("0.000200000")
    assert cost.usd == library_cost("text-embedding-3-small", usage)


def test_mock_and_azure_types_use_openai_model_prices():
    usage = TokenUsage(prompt_tokens=5000, completion_tokens=700, cached_tokens=1000)
    book = PriceBook()
    openai = book.cost("openai", "gpt-4o-mini", usage)
    assert book.cost("mock", "gpt-4o-mini", usage) == openai
    assert book.cost("azure", "gpt-4o-mini", usage).usd == library_cost("gpt-4o-mini", usage,
                                                                        "azure")


def test_openai_compatible_type_finds_models_by_name():
    usage = TokenUsage(prompt_tokens=2000, completion_tokens=300)
    book = PriceBook()
    cost = book.cost("openai-compatible", "gpt-4o-mini", usage)
    assert cost.known
    assert cost == book.cost("openai", "gpt-4o-mini", usage)
    assert book.knows("openai-compatible", "gpt-4.1")


def test_unknown_model_is_flagged_and_free():
    book = PriceBook()
    cost = book.cost("openai-compatible", "my-local-llama-3b", TokenUsage(1000, 1000))
    assert cost == Cost(Decimal(0), known=False)
    assert not book.knows("openai", "definitely-not-a-model")
    assert cost.header() == b"0"


def test_override_from_config_wins_over_the_table():
    price = ModelPrice(input_per_mtok=Decimal("1.00"), output_per_mtok=Decimal("3.00"),
                       cached_input_per_mtok=Decimal("0.10"))
    book = PriceBook({"gpt-4o": price})
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=500_000)
    cost = book.cost("openai", "gpt-4o", usage)
    assert cost == Cost(Decimal("3.550000000"), known=True)  # 0.5 + 0.05 + 3
    assert cost.usd != library_cost("gpt-4o", usage)


def test_override_prices_an_unknown_model():
    book = PriceBook({"my-finetune": ModelPrice(input_per_mtok="0.30", output_per_mtok="1.20")})
    cost = book.cost("openai-compatible", "my-finetune", TokenUsage(1000, 500, cached_tokens=400))
    # No cached rate configured: cached tokens cost the input rate.
    assert cost == Cost(Decimal("0.000900000"), known=True)


def test_tiered_model_falls_back_to_the_library():
    book = PriceBook()
    small = TokenUsage(prompt_tokens=100_000, completion_tokens=1000)
    large = TokenUsage(prompt_tokens=300_000, completion_tokens=1000, cached_tokens=50_000)
    for usage in (small, large):
        cost = book.cost("openai-compatible", "gemini-2.5-pro", usage)
        assert cost.known
        assert cost.usd == library_cost("gemini-2.5-pro", usage, "google")
    # Over 200k prompt tokens, the per-token rate is higher.
    per_token_small = book.cost("openai-compatible", "gemini-2.5-pro",
                                TokenUsage(prompt_tokens=100_000)).usd / 100_000
    per_token_large = book.cost("openai-compatible", "gemini-2.5-pro",
                                TokenUsage(prompt_tokens=300_000)).usd / 300_000
    assert per_token_large > per_token_small


def test_results_are_quantized_to_a_nano_dollar():
    book = PriceBook({"tiny": ModelPrice(input_per_mtok="0.0015", output_per_mtok="0.0001")})
    assert book.cost("openai", "tiny", TokenUsage(prompt_tokens=1)).usd == Decimal("0.000000002")
    assert book.cost("openai", "tiny", TokenUsage(completion_tokens=1)).usd == Decimal(0)
    for model, usage in [("gpt-4o", TokenUsage(7, 3, 1)), ("gemini-2.5-pro", TokenUsage(3, 3)),
                         ("tiny", TokenUsage(1, 1))]:
        usd = book.cost("openai-compatible", model, usage).usd
        assert usd.as_tuple().exponent == -9, model


def test_cost_header_is_plain_decimal_text():
    cost = PriceBook().cost("openai", "gpt-4o-mini", TokenUsage(prompt_tokens=1))
    assert cost.header() == b"0.000000150"


def test_repeated_lookups_give_the_same_answer():
    book = PriceBook()
    usage = TokenUsage(prompt_tokens=42, completion_tokens=7)
    first = book.cost("openai", "gpt-4o", usage)
    assert all(book.cost("openai", "gpt-4o", usage) == first for _ in range(3))
    assert book.cost("openai", "gpt-4o", TokenUsage()).usd == 0
