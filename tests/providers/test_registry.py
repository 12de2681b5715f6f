"""Model resolution: what each provider serves (its list, or its vendor's defaults), which one
answers a name several claim, and `provider/model` only where that provider serves the model."""

from __future__ import annotations

import dataclasses

import pytest

from keystead.config.load import parse_config
from keystead.config.provider_values import DEFAULT_MODELS
from keystead.errors import ModelNotFound
from keystead.providers.registry import ProviderRegistry, ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport
from keystead.state.records import ProviderRecord


def registry(*specs: ProviderSpec) -> ProviderRegistry:
    transport = ASGITransport(object())
    return ProviderRegistry(build_provider(spec, "sk-test", transport, read_timeout=5)
                            for spec in specs)


def spec(name: str, type_: str, *models: str, source: str = "config",
         deployments: dict[str, str] | None = None) -> ProviderSpec:
    record = ProviderRecord(name=name, type=type_, base_url="http://127.0.0.1:9/v1",
                            api_key_ref=None, models=models, deployments=deployments or {},
                            api_version=None, supports_responses=None, created_at=0.0)
    return dataclasses.replace(ProviderSpec.from_record(record), source=source)


def answers(reg: ProviderRegistry, model: str) -> tuple[str, str]:
    provider, upstream = reg.resolve(model)
    return provider.name, upstream


@pytest.mark.parametrize(("type_", "model"), [
    ("openai", "gpt-4o-mini"), ("openai", "o3-mini"), ("openai", "text-embedding-3-small"),
    ("openai", "chatgpt-4o-latest"), ("openai", "ft:gpt-4o-mini:acme::abc"),
    ("anthropic", "claude-haiku-4-5"), ("gemini", "gemini-2.5-flash"),
])
def test_a_vendor_provider_without_models_serves_its_vendors_models(type_: str,
                                                                    model: str) -> None:
    reg = registry(spec("vendor", type_))
    assert answers(reg, model) == ("vendor", model)
    assert answers(reg, f"vendor/{model}") == ("vendor", model)


def test_defaults_come_from_the_config_too_and_are_marked_as_defaults() -> None:
    config = parse_config({"providers": {
        "openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
                   "api_key": "${K}"},
        "azure": {"type": "azure", "base_url": "https://r.openai.azure.com", "api_key": "${K}",
                  "deployments": {"gpt-4o": "prod-4o", "text-embedding-3-large": "emb"}},
        "mock": {"type": "mock"},
        "local": {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1"},
        "pinned": {"type": "openai", "base_url": "https://api.openai.com/v1",
                   "api_key": "${K}", "models": ["gpt-4o"]}}}, {"K": "sk-x"}, source="test")
    specs = {name: ProviderSpec.from_config(name, p) for name, p in config.providers.items()}
    assert specs["openai"].models == DEFAULT_MODELS["openai"]
    assert specs["azure"].models == ("gpt-4o", "text-embedding-3-large")  # its deployments
    assert specs["mock"].models == ("mock-chat", "mock-embedding")
    assert specs["local"].models == ()
    assert [s.models_given for s in specs.values()] == [False, False, False, False, True]


def test_the_mock_without_models_never_answers_a_real_name() -> None:
    reg = registry(ProviderSpec(name="mock", type="mock", base_url=None, source="config"))
    assert answers(reg, "mock-chat") == ("mock", "mock-chat")
    with pytest.raises(ModelNotFound):
        reg.resolve("gpt-4o-mini")
    assert [m for m, _ in reg.listed_models()] == ["mock-chat", "mock-embedding"]


def test_a_real_provider_answers_a_name_the_mock_in_the_config_lists_too() -> None:
    # issue 12: the old `init` config listed gpt-4o-mini on the mock; a provider added at run
    # time with OpenAI's defaults (or --models gpt-4o-mini) now answers it.
    mock = ProviderSpec(name="mock", type="mock", base_url=None, source="config",
                        models=("gpt-4o-mini", "text-embedding-3-small"))
    for openai in (spec("openai", "openai", source="store"),
                   spec("openai", "openai", "gpt-4o-mini", source="store")):
        reg = registry(mock, openai)
        assert answers(reg, "gpt-4o-mini") == ("openai", "gpt-4o-mini")
        assert answers(reg, "mock/gpt-4o-mini") == ("mock", "gpt-4o-mini")  # chosen explicitly
        assert dict(reg.listed_models())["gpt-4o-mini"].name == "openai"


def test_a_listed_name_beats_a_pattern_and_a_specific_pattern_a_general_one() -> None:
    reg = registry(spec("openai", "openai"), spec("azure", "azure", deployments={"gpt-4o": "d"}),
                   spec("fast", "openai-compatible", "gpt-4.1*"))
    assert answers(reg, "gpt-4o") == ("azure", "gpt-4o")
    assert answers(reg, "gpt-4.1-mini") == ("fast", "gpt-4.1-mini")
    assert answers(reg, "gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert answers(reg, "openai/gpt-4o") == ("openai", "gpt-4o")


def test_provider_slash_model_needs_the_provider_to_serve_the_model() -> None:
    # issue 13: `openai/gpt-4o` reached a provider whatever its models list said.
    reg = registry(spec("openai", "openai", "gpt-4o-mini"), spec("local", "openai-compatible"),
                   spec("anything", "openai-compatible", "*"))
    assert answers(reg, "openai/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    with pytest.raises(ModelNotFound) as refused:
        reg.resolve("openai/gpt-4o")
    assert refused.value.code == "model_not_found" and refused.value.param == "model"
    assert "does not serve the model 'gpt-4o'" in refused.value.message
    assert "It serves gpt-4o-mini" in refused.value.message
    # A provider that lists no models serves none, named or not; the hint says how to fix it.
    with pytest.raises(ModelNotFound, match="lists no models: give it some"):
        reg.resolve("local/llama3")
    # `*` serves any plain name, but never a name that names another provider.
    assert answers(reg, "llama3") == ("anything", "llama3")
    assert answers(reg, "anything/llama3") == ("anything", "llama3")


def test_a_model_name_with_a_slash_of_its_own_is_served_whole() -> None:
    reg = registry(spec("openai", "openai"),
                   spec("vllm", "openai-compatible", "meta-llama/Llama-3-8B", "openai/gpt-oss-20b"))
    assert answers(reg, "meta-llama/Llama-3-8B") == ("vllm", "meta-llama/Llama-3-8B")
    # It starts with a provider's name that does not serve it, but vllm lists it whole.
    assert answers(reg, "openai/gpt-oss-20b") == ("vllm", "openai/gpt-oss-20b")


def test_the_404_hint_names_patterns_when_no_name_is_listed() -> None:
    reg = registry(spec("openai", "openai"))
    with pytest.raises(ModelNotFound) as refused:
        reg.resolve("claude-haiku-4-5")
    assert "names like gpt-*" in refused.value.message
    assert "No provider is configured" not in refused.value.message
    with pytest.raises(ModelNotFound, match="No provider lists a model"):
        registry(spec("local", "openai-compatible")).resolve("llama3")
