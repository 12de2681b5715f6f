"""/admin/reload: this gateway re-reads its config file, then asks every other one to.

Thin, like every admin route: `Reloader.everywhere` does the work (reload.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keystead.errors import ConfigInvalid
from keystead.runtime import Runtime

__all__ = ["router"]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(prefix="/admin")

    @api.post("/reload", tags=["config"])
    async def reload_config() -> dict[str, Any]:
        """Re-read this gateway's config file and apply it (requests in flight finish on the
        old one); if it is valid, every other gateway on the store re-reads its own file too.
        Settings only a restart can change are listed in `restart_needed`. Each gateway
        records what it did as a `config.reload` event (`GET /admin/events?kind=config.reload`).
        """
        result, others = await runtime.reloader.everywhere("admin-api")
        if not result.ok:
            raise ConfigInvalid(f"Gateway {result.replica}: {result.error}")
        return {**result.as_dict(), "others": others}

    return api
