"""Gemini through Google's OpenAI-compatible endpoint, and the defaults of both hosted types.

The end-to-end check (the gateway prices a gemini model it relayed) shares the gateway of
test_anthropic.py.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage
from pydantic import ValidationError

from keystead.config.providers import ProviderConfig
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from keystead.providers.base import Endpoint
from keystead.providers.gemini import GeminiProvider
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport
from keystead.usage.prices import PriceBook, TokenUsage

KEY = "gemini-test-key-0123456789"
GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/openai"


@pytest.mark.parametrize(("kind", "url"), [("gemini", GEMINI_URL),
                                           ("anthropic", "https://api.anthropic.com")])
def test_hosted_types_default_their_base_url_and_need_a_key(kind, url):
    assert ProviderConfig(type=kind, api_key=KEY).base_url == url
    assert ProviderConfig(type=kind, api_key=KEY, base_url="http://proxy:8080/x").base_url \
        == "http://proxy:8080/x"
    with pytest.raises(ValidationError, match="api_key is required"):
        ProviderConfig(type=kind)


def test_openai_compatible_still_needs_a_base_url():
    with pytest.raises(ValidationError, match="base_url is required"):
        ProviderConfig(type="openai-compatible")


def test_the_adapter_uses_bearer_auth_on_googles_openai_paths():
    spec = ProviderSpec(name="gemini", type="gemini", base_url=None, source="store",
                        models=("gemini-2.5-flash",))
    provider = build_provider(spec, KEY, ASGITransport(create_mock_app(MockSettings())), 10)
    assert isinstance(provider, GeminiProvider) and provider.type == "gemini"
    assert provider.capabilities.supports(Endpoint.CHAT)
    assert provider.capabilities.supports(Endpoint.EMBEDDINGS)
    assert not provider.capabilities.supports(Endpoint.RESPONSES)
    url, headers = provider.request_target(Endpoint.CHAT, "gemini-2.5-flash", KEY)
    assert url == GEMINI_URL + "/chat/completions"
    assert headers == {"authorization": f"Bearer {KEY}"}
    assert provider.request_target(Endpoint.EMBEDDINGS, "x", KEY)[0] == GEMINI_URL + "/embeddings"


def test_the_adapter_talks_openai_to_a_compatible_server():
    mock = create_mock_app(MockSettings(api_key=KEY))
    spec = ProviderSpec(name="gemini", type="gemini", base_url="http://gemini.test/v1",
                        source="config", models=("gemini-2.5-flash",))
    provider = build_provider(spec, KEY, ASGITransport(mock), 10)

    async def main() -> dict[str, object]:
        body = json.dumps({"model": "gemini-2.5-flash",
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        response = await provider.send(Endpoint.CHAT, "gemini-2.5-flash", body, stream=False)
        assert response.status == 200
        return dict(json.loads(await response.read()))

    completion = asyncio.run(main())
    assert completion["object"] == "chat.completion"
    assert mock.received[-1].headers["authorization"] == f"Bearer {KEY}"
    assert mock.received[-1].body == json.dumps(  # OpenAI-compatible: the bytes go unchanged
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.0-flash"])
def test_gemini_models_are_priced_from_googles_table(model):
    usage = TokenUsage(prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=4_000)
    cost = PriceBook().cost("gemini", model, usage)
    expected = genai_prices.calc_price(
        Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000),
        model_ref=model, provider_id="google").total_price
    assert cost.known and cost.usd == Decimal(expected).quantize(Decimal("1e-9")) > 0


def test_the_providers_doc_example_is_a_valid_config():
    import re
    from pathlib import Path

    import yaml

    from keystead.config.load import parse_config

    text = (Path(__file__).resolve().parents[2] / "docs/providers.md").read_text()
    (example,) = re.findall(r"<!-- docs-example: config -->\s*```\w*\n(.*?)```", text, re.S)
    config = parse_config(yaml.safe_load(example), {
        "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}, source="docs/providers.md")
    assert {name: p.type for name, p in config.providers.items()} == {
        "claude": "anthropic", "gemini": "gemini"}
    assert config.providers["claude"].base_url == "https://api.anthropic.com"
    assert config.providers["gemini"].base_url == GEMINI_URL
    book = PriceBook()
    for provider in config.providers.values():
        for model in provider.models:
            if "embedding" not in model:
                assert book.knows(provider.type, model), model
