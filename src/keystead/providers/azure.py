"""Azure OpenAI: a deployment per model in the URL, an `api-key` header, an `api-version`.

The deployment is the only name that goes into a URL here: it is percent-escaped as one path
segment and must be a name Azure can give a deployment (letters, digits, `.`, `_`, `-`; never
`.` or `..`), so no model name walks the path to another deployment (see `names`).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from keystead.errors import InvalidField
from keystead.providers.base import Capabilities, Endpoint, Provider
from keystead.providers.key_pool import KeyPool
from keystead.providers.names import path_segment, shown
from keystead.providers.transport import Transport

__all__ = ["AzureProvider"]

_PATHS = {Endpoint.CHAT: "chat/completions", Endpoint.EMBEDDINGS: "embeddings"}
# What Azure accepts as a deployment name (the portal refuses anything else).
_DEPLOYMENT = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
        self._query = f"?api-version={quote(api_version, safe='')}"  # one query value, always

    def request_target(self, endpoint: Endpoint, model: str,
                       api_key: str | None) -> tuple[str, dict[str, str]]:
        headers = {"api-key": api_key or ""}
        query = self._query
        if endpoint is Endpoint.RESPONSES:
            return f"{self.base_url}/openai/responses{query}", headers
        if endpoint is Endpoint.MODELS:
            return f"{self.base_url}/openai/models{query}", headers
        # Without an explicit mapping, the deployment is named after the model, as Azure's
        # portal suggests by default.
        deployment = self.deployments.get(model, model)
        segment = path_segment(deployment, self.name, "deployment")
        if _DEPLOYMENT.fullmatch(deployment) is None:
            raise InvalidField(
                f"Azure deployment {shown(deployment)} (for model {shown(model)}) is not a name "
                "Azure gives a deployment.", param="model", code="invalid_model_name",
                hint="Deployment names are 1 to 64 letters, digits, '.', '_' or '-'; map the "
                     f"model to its deployment in providers.{self.name}.deployments.")
        return (f"{self.base_url}/openai/deployments/{segment}/{_PATHS[endpoint]}{query}",
                headers)
