"""Alerts (/admin/alerts): the rules and their state, test messages, silences."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from keystead.alerts.service import AlertService
from keystead.runtime import Runtime
from keystead.server.admin.params import duration
from keystead.server.admin.schemas.alerts import AlertTest, SilenceIn

__all__ = ["router"]

# A query parameter, not a path segment: a subject may hold '/' (10.0.0.0/24, openai/python).
_TARGET = Annotated[str, Query(min_length=1, max_length=240, pattern=r"^[^\x00-\x1f\x7f]*$",
                               description="A rule, or rule:subject.")]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/admin/alerts", tags=["alerts"])

    @api.get("")
    async def list_alerts() -> list[dict[str, Any]]:
        """Every rule with its alerts: firing (or silenced), resolved in the last 7 days, since
        when, when the last message went out and what each channel did; `ok` or `off` for a
        rule with none."""
        return await AlertService(runtime, "admin-api").list()

    @api.post("/test")
    async def test_channels(body: AlertTest) -> list[dict[str, Any]]:
        """Send a test message to each channel (or one); says which worked and why not."""
        return await AlertService(runtime, "admin-api").test(body.channel)

    @api.post("/silences", status_code=201)
    async def silence(body: SilenceIn) -> dict[str, Any]:
        """No message for a rule or one alert for a while (it still fires and resolves)."""
        seconds = duration(body.duration, "for")
        assert seconds is not None
        return await AlertService(runtime, "admin-api").silence(body.target, seconds,
                                                                body.reason)

    @api.delete("/silences")
    async def unsilence(target: _TARGET) -> dict[str, Any]:
        """End a silence."""
        return await AlertService(runtime, "admin-api").unsilence(target)

    return api
