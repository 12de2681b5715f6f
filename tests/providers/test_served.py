"""providers/served.py answers "is this model served?" as the registry resolves requests, from
the providers' `models` lists alone (the CLI warns with it without building adapters)."""

from __future__ import annotations

import pytest

from keystead.errors import ModelNotFound
from keystead.providers.base import Capabilities
from keystead.providers.openai_compatible import OpenAICompatibleProvider
from keystead.providers.registry import ProviderRegistry
from keystead.providers.served import serves, unserved
from keystead.providers.transport import HttpTransport

PROVIDERS = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1*"),
    "local": ("llama*", "qwen-[0-9]*"),
    "empty": (),
}
NAMES = ["openai/gpt-4o", "openai/gpt-4.1-nano", "local/qwen-7b", "local/gpt-4o",
         "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-5", "llama3-8b", "qwen-7b",
         "qwen-x", "openai/anything", "empty/x", "nobody/gpt-4o", "gpt-4o-mini/x", "",
         "GPT-4O", "llama", "[", "*"]


@pytest.fixture
def registry() -> ProviderRegistry:
    http = HttpTransport()
    return ProviderRegistry(
        OpenAICompatibleProvider(name, base_url="http://127.0.0.1:1/v1", api_key=None,
                                 models=models, transport=http, read_timeout=1.0,
                                 capabilities=Capabilities())
        for name, models in PROVIDERS.items())


@pytest.mark.parametrize("model", NAMES)
def test_the_same_answer_as_the_registry(registry: ProviderRegistry, model: str) -> None:
    try:
        registry.resolve(model)
        found = True
    except ModelNotFound:
        found = False
    assert serves(model, PROVIDERS) == found


def test_route_aliases_are_served() -> None:
    assert serves("support-default", PROVIDERS, ["support-default"])
    assert not serves("support-default", PROVIDERS)


def test_a_scope_lists_only_what_nothing_serves() -> None:
    scope = ["gpt-4o", "gtp-4o", "gpt-4*", "claude-*", "openai/*", "support-default"]
    assert unserved(scope, {"openai": ("gpt-4o",)}, ["support-default"]) == ["gtp-4o",
                                                                            "claude-*"]
    # a provider that serves by pattern may overlap any scope pattern: no guess, no warning
    assert unserved(["claude-*", "gtp-4o"], PROVIDERS) == ["gtp-4o"]
