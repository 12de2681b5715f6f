"""/admin/keys: create, list, show, change, rotate, pause and revoke virtual keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from keystead.control.keys import KeyService
from keystead.runtime import Runtime
from keystead.server.admin.params import DurationQuery, KeyPath, duration, limits
from keystead.server.admin.schemas.keys import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyUpdate,
    Revoke,
    Rotate,
)

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    keys = KeyService(runtime, actor="admin-api")
    api = APIRouter(prefix="/admin/keys", tags=["keys"])

    @api.get("", response_model=list[KeyOut])
    async def list_keys(
        due_within: Annotated[str | None, DurationQuery(
            "Only keys whose rotation is due within this window (0s: overdue), most overdue "
            "first.")] = None,
    ) -> list[dict[str, Any]]:
        window = duration(due_within, "due_within")
        if window is not None:
            return [keys.view(k) for k in await keys.due(window)]
        return [keys.view(k) for k in await keys.list()]

    @api.post("", response_model=KeyCreated, status_code=201)
    async def create_key(body: KeyCreate) -> dict[str, Any]:
        created = await keys.create(
            body.name, env=body.env, team=body.team, owner=body.owner,
            description=body.description, models=body.models, endpoints=body.endpoints,
            max_tokens=body.max_tokens, max_body_bytes=body.max_body_bytes,
            expires_in_s=duration(body.expires, "expires"), limits=limits(body.limits),
            ip_allowlist=body.ip_allowlist, cache=body.cache)
        return {**keys.view(created.record), "key": created.text}

    @api.patch("/{key}", response_model=KeyOut)
    async def update_key(key: KeyPath, body: KeyUpdate) -> dict[str, Any]:
        # Sent fields only: an absent field stays as it is, null clears it.
        changes = body.model_dump(exclude_unset=True)
        if "expires" in changes:
            changes["expires_in_s"] = duration(changes.pop("expires"), "expires")
        return keys.view(await keys.update(key, **changes))

    @api.get("/{key}", response_model=KeyOut)
    async def show_key(key: KeyPath) -> dict[str, Any]:
        return keys.view(await keys.get(key))

    @api.post("/{key}/rotate", response_model=KeyCreated)
    async def rotate_key(key: KeyPath, body: Rotate | None = None) -> dict[str, Any]:
        grace = duration(body.grace if body else "24h", "grace")
        assert grace is not None
        created = await keys.rotate(key, grace)
        return {**keys.view(created.record), "key": created.text}

    @api.post("/{key}/revoke", response_model=KeyOut)
    async def revoke_key(key: KeyPath, body: Revoke | None = None) -> dict[str, Any]:
        return keys.view(await keys.revoke(key, body.reason if body else None))

    @api.post("/{key}/disable", response_model=KeyOut)
    async def disable_key(key: KeyPath) -> dict[str, Any]:
        return keys.view(await keys.set_disabled(key, True))

    @api.post("/{key}/enable", response_model=KeyOut)
    async def enable_key(key: KeyPath) -> dict[str, Any]:
        return keys.view(await keys.set_disabled(key, False))

    return api
