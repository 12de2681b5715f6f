"""OpenAI and every server that speaks its API (vLLM, Ollama, llama.cpp, the mock upstream)."""

from __future__ import annotations

from keystead.providers.base import Endpoint, Provider

__all__ = ["MockProvider", "OpenAICompatibleProvider", "OpenAIProvider"]

_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
    Endpoint.RESPONSES: "/responses",
    Endpoint.MODELS: "/models",
}


class OpenAICompatibleProvider(Provider):
    type = "openai-compatible"

    def request_target(self, endpoint: Endpoint, model: str,
                       api_key: str | None) -> tuple[str, dict[str, str]]:
        headers = {}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return self.base_url + _PATHS[endpoint], headers


class OpenAIProvider(OpenAICompatibleProvider):
    type = "openai"


class MockProvider(OpenAICompatibleProvider):
    """The built-in mock upstream; priced as OpenAI, whose model names it answers to."""

    type = "mock"
