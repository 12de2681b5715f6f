"""/admin/teams: who owns keys, and the limits, budget and allowlist they share."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keystead.control.teams import TeamService, team_view
from keystead.runtime import Runtime
from keystead.server.admin.params import NamePath, limits
from keystead.server.admin.schemas.teams import TeamCreate, TeamOut, TeamUpdate

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    teams = TeamService(runtime)
    api = APIRouter(prefix="/admin/teams", tags=["teams"])

    @api.get("", response_model=list[TeamOut])
    async def list_teams() -> list[dict[str, Any]]:
        return [team_view(t) for t in await teams.list()]

    @api.post("", response_model=TeamOut, status_code=201)
    async def create_team(body: TeamCreate) -> dict[str, Any]:
        return team_view(await teams.create(
            body.name, description=body.description, owner=body.owner,
            limits=limits(body.limits), ip_allowlist=body.ip_allowlist))

    @api.get("/{name}", response_model=TeamOut)
    async def show_team(name: NamePath) -> dict[str, Any]:
        return team_view(await teams.get(name))

    @api.patch("/{name}", response_model=TeamOut)
    async def update_team(name: NamePath, body: TeamUpdate) -> dict[str, Any]:
        return team_view(await teams.update(name, **body.model_dump(exclude_unset=True)))

    return api
