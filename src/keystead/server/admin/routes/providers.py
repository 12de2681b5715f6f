"""/admin/providers: upstreams added at run time and their key pools. Keys go into the vault
and never come back out; the policy (secret references, URLs) is the service's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from keystead.control.providers import ProviderService
from keystead.runtime import Runtime
from keystead.server.admin.params import LabelPath, NamePath
from keystead.server.admin.schemas.providers import (
    ProviderCreate,
    ProviderKey,
    ProviderKeyAdd,
    ProviderOut,
    ProviderTest,
)

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    providers = ProviderService(runtime, actor="admin-api")
    api = APIRouter(prefix="/admin/providers", tags=["providers"])

    @api.get("", response_model=list[ProviderOut])
    async def list_providers() -> list[dict[str, Any]]:
        return providers.list()

    @api.post("", response_model=ProviderOut, status_code=201)
    async def add_provider(body: ProviderCreate) -> dict[str, Any]:
        return await providers.add(
            body.name, type=body.type, base_url=body.base_url, api_key_env=body.api_key_env,
            api_key=body.api_key, models=body.models, deployments=body.deployments,
            api_version=body.api_version, supports_responses=body.supports_responses,
            api_key_ref=body.api_key_ref, api_keys=body.api_keys, api_key_refs=body.api_key_refs)

    @api.get("/{name}", response_model=ProviderOut)
    async def get_provider(name: NamePath) -> dict[str, Any]:
        return providers.get(name)

    @api.delete("/{name}", status_code=204)
    async def remove_provider(name: NamePath) -> Response:
        await providers.remove(name)
        return Response(status_code=204)

    @api.put("/{name}/key", response_model=ProviderOut)
    async def set_provider_key(name: NamePath, body: ProviderKey) -> dict[str, Any]:
        """Replace the provider's key (`label`: which of a pool) in the vault; no request fails
        during the swap."""
        return await providers.set_key(name, body.api_key, body.label)

    @api.post("/{name}/keys", response_model=ProviderOut, status_code=201)
    async def add_provider_key(name: NamePath, body: ProviderKeyAdd) -> dict[str, Any]:
        """Add a key to the pool of a provider added at run time."""
        return await providers.add_key(name, api_key=body.api_key, api_key_ref=body.api_key_ref)

    @api.delete("/{name}/keys/{label}", response_model=ProviderOut)
    async def remove_provider_key(name: NamePath, label: LabelPath) -> dict[str, Any]:
        """Remove key `label` (`2` or `#2`) from the pool of a provider added at run time."""
        return await providers.remove_key(name, label)

    @api.post("/{name}/keys/{label}/enable", response_model=ProviderOut)
    async def enable_provider_key(name: NamePath, label: LabelPath) -> dict[str, Any]:
        """Put key `label`, taken out after a 401/403, back into rotation on every gateway."""
        return await providers.enable_key(name, label)

    @api.post("/{name}/test", response_model=ProviderTest)
    async def test_provider(name: NamePath) -> dict[str, Any]:
        return await providers.test(name)

    return api
