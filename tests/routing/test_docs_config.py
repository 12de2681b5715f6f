"""docs/routing.md's worked config is a config keystead accepts, and means what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from keystead.config.load import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def test_the_worked_config_loads_and_says_what_the_guide_says() -> None:
    (example,) = re.findall(r"<!-- docs-example: config -->\s*```\w*\n(.*?)```", DOC.read_text(),
                            re.S)
    config = parse_config(yaml.safe_load(example), {
        "OPENAI_API_KEY": "sk-a", "AZURE_EU_KEY": "az-b", "ANTHROPIC_API_KEY": "sk-ant-c"},
        source="docs/routing.md")
    route = config.routes["support-default"]
    assert [(d.provider, d.model, d.weight) for d in route.deployments] == [
        ("openai", "gpt-4o-mini", 3), ("azure-eu", "gpt-4o-mini", 1)]
    assert route.deployments[1].max_parallel == 50 and route.deployments[1].tpm == 200_000
    assert route.fallbacks == ("support-smart",)
    assert route.cache is not None and route.cache.ttl == "10m"
    assert route.structured_output.on_invalid == "repair"
    assert route.degraded.static_reply
    assert config.routing.breaker.failures == 5 and config.routing.direct_attempts == 1
    assert {d.provider for d in config.routes["support-smart"].deployments} == {"openai",
                                                                                "claude"}
