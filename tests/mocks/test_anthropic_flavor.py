"""A `mock` provider with `mock: {flavor: anthropic}` is an `anthropic` adapter over the Anthropic
mock, in process (the demo's /v1/messages) or over HTTP (`keystead mock-anthropic`)."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from keystead.config.providers import MockConfig
from keystead.mocks.anthropic_upstream import AnthropicMock
from keystead.providers.anthropic import AnthropicProvider
from keystead.providers.base import Endpoint
from keystead.providers.key_pool import KeyPool
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport


def spec(**mock: object) -> ProviderSpec:
    return ProviderSpec(name="claude", type="mock", base_url=None, source="config",
                        models=("claude-haiku-4-5",), mock=MockConfig(flavor="anthropic", **mock))


def test_the_anthropic_flavor_serves_messages_and_translated_chat_in_process() -> None:
    provider = build_provider(spec(chunk_delay_ms=1), KeyPool.of("claude", "sk-ant-demo"),
                              ASGITransport(object()), read_timeout=5)
    assert isinstance(provider, AnthropicProvider)
    assert provider.capabilities.messages and not provider.capabilities.embeddings
    assert isinstance(provider.transport, ASGITransport)
    mock = provider.transport.app
    assert isinstance(mock, AnthropicMock) and mock.settings.api_key == "sk-ant-demo"
    assert mock.settings.models == ("claude-haiku-4-5",) and mock.settings.chunk_delay_ms == 1

    async def main() -> tuple[dict[str, object], dict[str, object]]:
        native = await provider.send(Endpoint.MESSAGES, "claude-haiku-4-5", json.dumps({
            "model": "claude-haiku-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "Hello"}]}).encode(), stream=False)
        chat = await provider.send(Endpoint.CHAT, "claude-haiku-4-5", json.dumps({
            "model": "claude-haiku-4-5",
            "messages": [{"role": "user", "content": "Hello"}]}).encode(), stream=False)
        return json.loads(await native.read()), json.loads(await chat.read())

    native, chat = asyncio.run(main())
    assert native["type"] == "message" and native["stop_reason"] == "end_turn"
    assert chat["object"] == "chat.completion"
    # The key went to the mock (it refuses any other), as x-api-key.
    assert mock.received[-1].headers["x-api-key"] == "sk-ant-demo"


def test_the_anthropic_flavor_takes_delays_only() -> None:
    for bad in ({"failure_rate": 0.5}, {"faults": "500,ok"}, {"seed": 3}):
        with pytest.raises(ValidationError, match="latency_ms and chunk_delay_ms only"):
            MockConfig(flavor="anthropic", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MockConfig(flavor="gemini")  # type: ignore[arg-type]
