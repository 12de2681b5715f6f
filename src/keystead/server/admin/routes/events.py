"""The audit trail, leaked-key incidents and short-lived tokens (/admin/events, /admin/incidents,
/admin/tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from keystead.control.events import EventService, event_view
from keystead.control.incident import IncidentService
from keystead.control.tokens import TokenService
from keystead.runtime import Runtime
from keystead.server.admin.params import DurationQuery, duration
from keystead.server.admin.schemas.keys import IncidentIn, TokenMint

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/admin", tags=["keys"])

    @api.get("/events")
    async def list_events(
        key: Annotated[str | None, Query(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$",
                                         description="A key's id or name.")] = None,
        kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_.-]*$",
                                          description="e.g. incident, key.revoked, "
                                                      "key.rotation_due")] = None,
        since: Annotated[str | None, DurationQuery("Window such as 24h, 7d.")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """The audit trail: who created, changed, rotated, paused or revoked which key, the
        incidents, and the rotation reminders; newest first."""
        found = await EventService(runtime).list(key=key, kind=kind, since_s=duration(
            since, "since"), limit=limit)
        return [event_view(e) for e in found]

    @api.post("/tokens", status_code=201)
    async def mint_token(body: TokenMint) -> dict[str, Any]:
        """A short-lived token from a key; a backend holding the key can mint one itself with
        POST /v1/keystead/tokens."""
        options = body.model_dump(exclude={"key"}, exclude_none=True)
        return (await TokenService(runtime).mint_for(body.key, **options)).as_dict()

    @api.post("/incidents")
    async def incident(body: IncidentIn) -> dict[str, Any]:
        """Stop a leaked key everywhere, issue its replacement, notify the owner's webhook and
        return the forensics (source IPs, user agents, models, hours, what is unusual)."""
        found = await IncidentService(runtime, "admin-api").respond(
            body.key, reason=body.reason, replace=body.replace)
        return found.as_dict()

    return api

