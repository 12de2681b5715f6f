"""A provider's base_url, models and Azure deployments are checked where they enter: in the
config file and in `providers add` (the admin API and the CLI)."""

from __future__ import annotations

from typing import Any

import pytest

from keystead.config.load import ConfigError, parse_config


def provider(**fields: Any) -> dict[str, Any]:
    return {"providers": {"p": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                "api_key": "${K}", **fields}}}


@pytest.mark.parametrize(("fields", "says"), [
    ({"base_url": "https://user:pw@api.openai.com/v1"}, "must not hold user:password@"),
    ({"base_url": "https://:9/v1"}, "has no host"),
    ({"base_url": "https://api.openai.com:port/v1"}, "not a valid URL"),
    ({"models": ["gpt 4o"]}, "not a model name or pattern"),
    ({"models": ["gpt-4o,gpt-4o-mini"]}, "no spaces or commas"),
    ({"models": [""]}, "not a model name"),
    ({"models": ["gpt-4o\u00e9"]}, "printable ASCII"),
    ({"models": ["x" * 201]}, "1 to 200"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com",
      "deployments": {"gpt-4o": "../../admin"}}, "not a deployment name"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com",
      "deployments": {"gpt-4o": "a?b=c"}}, "not a deployment name"),
    ({"type": "azure", "base_url": "https://r.openai.azure.com",
      "deployments": {"gpt 4o": "d"}}, "not a model name"),
])
def test_a_bad_entry_stops_the_load_naming_the_field(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(provider(**fields), {"K": "sk-x"}, source="keystead.yaml")
    assert "providers.p" in str(refused.value) and says in str(refused.value)
    assert "pw@" not in str(refused.value)


def test_good_entries_load() -> None:
    config = parse_config(provider(models=["gpt-4o", "llama3.1:8b", "meta-llama/Llama-3-8B",
                                           "ft:gpt-4o-mini:acme::abc", "gpt-[45]*", "*"]),
                          {"K": "sk-x"}, source="keystead.yaml")
    assert len(config.providers["p"].models) == 6
