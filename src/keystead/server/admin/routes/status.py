"""/admin/status and /admin/routes: what this gateway is doing now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keystead import __version__
from keystead.runtime import Runtime
from keystead.state.counters import CountersUnavailable

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/admin")

    @api.get("/routes", tags=["routes"])
    async def routes() -> list[dict[str, Any]]:
        from keystead.control.routes import route_status

        return await route_status(runtime)

    @api.get("/status", tags=["status"])
    async def status() -> JSONResponse:
        try:
            pools = await runtime.counters.pools("pool:inflight:key:")
            in_flight: dict[str, int] | None = {
                name.removeprefix("pool:inflight:key:"): pool.holders
                for name, pool in pools.items() if pool.holders}
        except CountersUnavailable:
            in_flight = None  # Redis is down; `limits` says since when
        return JSONResponse({
            "in_flight": in_flight, "limits": runtime.limiter.status(),
            "version": __version__, "keys": len(runtime.keys),
            "providers": sorted(runtime.providers.providers),
            "usage_queued": runtime.ledger.queued, "usage_written": runtime.ledger.written,
            "usage_dropped": runtime.ledger.dropped,
        })

    return api
