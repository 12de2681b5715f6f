"""The admin API's app factory: FastAPI, the admin token on every router, the error handlers,
the body limit, the OpenAPI document and its offline viewer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from keystead import __version__
from keystead.runtime import Runtime
from keystead.server.admin.auth import admin_guard
from keystead.server.admin.errors import install_error_handlers
from keystead.server.admin.routes import (
    alerts,
    checks,
    config,
    events,
    keys,
    providers,
    status,
    teams,
    usage,
)
from keystead.server.admin.schemas.common import ErrorEnvelope

__all__ = ["DOCS_ASSETS", "MAX_BODY", "ROUTERS", "create_admin_app"]

# The largest admin request (a provider with a pool of 100 keys) is a few hundred KB; past
# this FastAPI stops reading and the client gets 413 request_too_large.
MAX_BODY = 1024 * 1024

# Every area's router, in the order of the OpenAPI document. A new area: a module in routes/
# with `router(runtime) -> APIRouter`, listed here; it gets the admin token and the errors.
ROUTERS: tuple[Callable[[Runtime], APIRouter], ...] = (
    keys.router, events.router, teams.router, providers.router, usage.router, status.router,
    config.router, alerts.router, checks.router)

# Swagger UI's files, served from the fastapi-offline package: no CDN, so /admin/docs works
# on a machine without internet access.
DOCS_ASSETS = "/admin/docs/assets"


def create_admin_app(runtime: Runtime) -> FastAPI:
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorEnvelope} for code in (400, 401, 403, 404)}
    app = FastAPIOffline(
        title="keystead admin API", version=__version__,
        openapi_url="/admin/openapi.json", docs_url="/admin/docs", redoc_url=None,
        static_url=DOCS_ASSETS, swagger_ui_oauth2_redirect_url="/admin/docs/oauth2-redirect",
        responses=errors, max_body_size=MAX_BODY,
    )
    guard = [Depends(admin_guard(runtime))]
    for router in ROUTERS:
        app.include_router(router(runtime), dependencies=guard)
    install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        # Validation errors are answered as 400 in the OpenAI envelope, never FastAPI's 422.
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                document.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
