"""/admin/checks: run the synthetic checks now (`keystead check --server`), or read the latest
result of each target (those of `checks.every` and of earlier runs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keystead.checks.run import CheckRunner
from keystead.runtime import Runtime
from keystead.server.admin.schemas.checks import CheckOut, CheckRequest, CheckRun

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/admin/checks", tags=["checks"])

    @api.post("", response_model=CheckRun)
    async def run_checks(request: CheckRequest | None = None) -> dict[str, Any]:
        """Send the smallest request through each provider key and route, now."""
        chosen = request or CheckRequest()
        results = await CheckRunner(runtime).run(chosen.providers, chosen.routes)
        return {"ok": all(r.ok for r in results), "results": [r.as_dict() for r in results]}

    @api.get("", response_model=list[CheckOut])
    async def latest() -> list[dict[str, Any]]:
        """The latest result of each target this gateway checked."""
        return [result.as_dict() for _, result in sorted(runtime.checks.items())]

    return api
