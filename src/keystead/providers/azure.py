"""Azure OpenAI: a deployment per model in the URL, an `api-key` header, an `api-version`."""

from __future__ import annotations

from keystead.providers.base import Capabilities, Endpoint, Provider
from keystead.providers.key_pool import KeyPool
from keystead.providers.transport import Transport

__all__ = ["AzureProvider"]

_PATHS = {Endpoint.CHAT: "chat/completions", Endpoint.EMBEDDINGS: "embeddings"}


class AzureProvider(Provider):
    type = "azure"

    def __init__(self, name: str, *, base_url: str, api_key: str | KeyPool | None,
                 models: tuple[str, ...], transport: Transport, read_timeout: float,
                 capabilities: Capabilities, deployments: dict[str, str], api_version: str):
        super().__init__(name, base_url=base_url, api_key=api_key, models=models,
                         transport=transport, read_timeout=read_timeout,
                         capabilities=capabilities)
        self.deployments = deployments
        self.api_version = api_version

    def request_target(self, endpoint: Endpoint, model: str,
                       api_key: str | None) -> tuple[str, dict[str, str]]:
        headers = {"api-key": api_key or ""}
        query = f"?api-version={self.api_version}"
        if endpoint is Endpoint.RESPONSES:
            return f"{self.base_url}/openai/responses{query}", headers
        if endpoint is Endpoint.MODELS:
            return f"{self.base_url}/openai/models{query}", headers
        # Without an explicit mapping, the deployment is named after the model, as Azure's
        # portal suggests by default.
        deployment = self.deployments.get(model, model)
        return f"{self.base_url}/openai/deployments/{deployment}/{_PATHS[endpoint]}{query}", headers
