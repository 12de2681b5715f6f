"""/admin/usage: the ledger, grouped and filtered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from keystead.control.usage import UsageService
from keystead.runtime import Runtime
from keystead.server.admin.params import DurationQuery, FilterQuery, duration
from keystead.server.admin.schemas.usage import UsageReport
from keystead.state.store import GroupBy

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    usage = UsageService(runtime)
    api = APIRouter(prefix="/admin", tags=["usage"])

    @api.get("/usage", response_model=UsageReport)
    async def usage_report(
        by: Annotated[GroupBy, Query()] = "key",
        since: Annotated[str, DurationQuery("Window such as 24h, 7d, 30d.")] = "7d",
        key: Annotated[str | None, FilterQuery("Only this key (its id or name).")] = None,
        team: Annotated[str | None, FilterQuery("Only this team.")] = None,
        env: Annotated[str | None, FilterQuery("Only this environment.")] = None,
        feature: Annotated[str | None, FilterQuery("Only this feature tag.")] = None,
        route: Annotated[str | None, FilterQuery("Only this route.")] = None,
        model: Annotated[str | None, FilterQuery("Only this model.")] = None,
        provider: Annotated[str | None, FilterQuery("Only this provider.")] = None,
        endpoint: Annotated[str | None, FilterQuery("Only this endpoint.")] = None,
    ) -> dict[str, Any]:
        window = duration(since, "since")
        assert window is not None
        filters = {name: value for name, value in (
            ("key", key), ("team", team), ("env", env), ("feature", feature), ("route", route),
            ("model", model), ("provider", provider), ("endpoint", endpoint))
            if value is not None}
        rows = await usage.report(by, window, filters)
        return {"by": by, "since": since, "filters": filters,
                "rows": [r.as_dict() for r in rows]}

    return api
