"""The admin API (`/admin/...`): keys, providers, usage. Thin: each route calls the service layer.

Guarded by the admin token (`Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>`), compared in constant
time. Described by the OpenAPI document at /admin/openapi.json. Errors use the same OpenAI-style
envelope as the data plane.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from keystead import __version__
from keystead.control.keys import KeyService, key_view
from keystead.control.providers import ProviderService
from keystead.control.usage import UsageService
from keystead.durations import parse_duration
from keystead.errors import (
    AuthError,
    GatewayError,
    InvalidField,
    InvalidJSON,
    MethodNotAllowed,
    PermissionDenied,
    RouteNotFound,
    render,
)
from keystead.pipeline.identify import bearer_token
from keystead.runtime import Runtime

__all__ = ["create_admin_app"]

# Where a request value comes from; not part of the parameter's name in an error.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Follows the naming rule, e.g. prod-webhook-bot-01.")
    env: str | None = Field(None, description="Defaults to the environment in the name.")
    team: str | None = None
    owner: str | None = Field(None, description="Contact of the key's owner (email, Slack).")
    description: str | None = None
    models: list[str] | None = Field(None, description="Allowed models; patterns like gpt-4o*.")
    endpoints: list[str] | None = Field(
        None, description="Allowed endpoints: chat.completions, embeddings, responses, models.")
    max_tokens: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1024)
    expires: str | None = Field(None, description="Lifetime such as 30d, 12h.")


class KeyOut(BaseModel):
    id: str
    name: str
    status: Literal["active", "disabled", "revoked", "expired"]
    env: str
    team: str | None
    owner: str | None
    description: str | None
    models: list[str] | None
    endpoints: list[str] | None
    max_tokens: int | None
    max_body_bytes: int | None
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    revoked_reason: str | None
    disabled_at: str | None
    last_used_at: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key text. Shown once: keystead stores only its hash.")


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["openai", "azure", "openai-compatible", "mock"]
    base_url: str | None = None
    api_key_env: str | None = Field(None, description="Read the key from this variable.")
    api_key: str | None = Field(None, description="Sealed into the vault; never returned.")
    models: list[str] = Field(default_factory=list)
    deployments: dict[str, str] = Field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None


class ProviderOut(BaseModel):
    name: str
    type: str
    base_url: str | None
    source: Literal["config", "store"]
    api_key: str | None = Field(description="Where the key lives: env:VAR, vault or config.")
    models: list[str]
    deployments: dict[str, str]
    api_version: str | None
    status: Literal["ok", "unusable"]
    error: str | None


class ProviderTest(BaseModel):
    name: str
    ok: bool
    status: int | None
    latency_ms: float | None
    detail: str


class UsageRowOut(BaseModel):
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: str
    avg_latency_ms: float


class UsageReport(BaseModel):
    by: str
    since: str
    rows: list[UsageRowOut]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def create_admin_app(runtime: Runtime) -> FastAPI:
    keys, providers, usage = KeyService(runtime), ProviderService(runtime), UsageService(runtime)
    token = runtime.config.admin.token

    async def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise PermissionDenied("The admin API is disabled: no admin token is configured.",
                                   hint="Set KEYSTEAD_ADMIN_TOKEN (keystead init writes one).")
        presented = bearer_token(authorization) if authorization else None
        if not presented or not hmac.compare_digest(presented.encode(),
                                                    token.get_secret_value().encode()):
            raise AuthError("Missing or wrong admin token.",
                            hint="Send Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>.")

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorEnvelope} for code in (400, 401, 403, 404)}
    app = FastAPI(
        title="keystead admin API", version=__version__,
        openapi_url="/admin/openapi.json", docs_url="/admin/docs", redoc_url=None,
        dependencies=[Depends(require_admin)], responses=errors,
    )

    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> Response:
        return Response(render(exc), status_code=exc.status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in exc.headers()})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        error: GatewayError
        if first.get("type") == "json_invalid":  # its loc is a byte offset, not a parameter
            error = InvalidJSON("The request body is not valid JSON.",
                                hint="Send a JSON object with Content-Type: application/json.")
        else:
            loc = list(first["loc"])
            if loc and loc[0] in _LOCATIONS:
                del loc[0]
            param = ".".join(str(part) for part in loc)
            error = InvalidField(f"Invalid value for '{param}': {first['msg']}.",
                                 param=param or None)
        return Response(render(error), status_code=400, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's own 404/405 (no such route or method) in the envelope, like the data plane.
        error: GatewayError
        if exc.status_code == 404:
            error = RouteNotFound(f"Unknown admin route {request.method} {request.url.path}.",
                                  hint="GET /admin/openapi.json lists the admin routes.")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.url.path} does not accept {request.method}.")
        else:
            error = GatewayError(str(exc.detail))
            error.status = exc.status_code
        return Response(render(error), status_code=error.status, media_type="application/json",
                        headers=dict(exc.headers or {}))

    @app.get("/admin/keys", response_model=list[KeyOut], tags=["keys"])
    async def list_keys() -> list[dict[str, Any]]:
        return [key_view(k) for k in await keys.list()]

    @app.post("/admin/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
    async def create_key(body: KeyCreate) -> dict[str, Any]:
        expires = _duration(body.expires, "expires")
        created = await keys.create(
            body.name, env=body.env, team=body.team, owner=body.owner,
            description=body.description, models=body.models, endpoints=body.endpoints,
            max_tokens=body.max_tokens, max_body_bytes=body.max_body_bytes, expires_in_s=expires)
        return {**key_view(created.record), "key": created.text}

    @app.get("/admin/keys/{key}", response_model=KeyOut, tags=["keys"])
    async def show_key(key: str) -> dict[str, Any]:
        return key_view(await keys.get(key))

    @app.post("/admin/keys/{key}/revoke", response_model=KeyOut, tags=["keys"])
    async def revoke_key(key: str, body: Revoke | None = None) -> dict[str, Any]:
        return key_view(await keys.revoke(key, body.reason if body else None))

    @app.post("/admin/keys/{key}/disable", response_model=KeyOut, tags=["keys"])
    async def disable_key(key: str) -> dict[str, Any]:
        return key_view(await keys.set_disabled(key, True))

    @app.post("/admin/keys/{key}/enable", response_model=KeyOut, tags=["keys"])
    async def enable_key(key: str) -> dict[str, Any]:
        return key_view(await keys.set_disabled(key, False))

    @app.get("/admin/providers", response_model=list[ProviderOut], tags=["providers"])
    async def list_providers() -> list[dict[str, Any]]:
        return providers.list()

    @app.post("/admin/providers", response_model=ProviderOut, status_code=201,
              tags=["providers"])
    async def add_provider(body: ProviderCreate) -> dict[str, Any]:
        return await providers.add(
            body.name, type=body.type, base_url=body.base_url, api_key_env=body.api_key_env,
            api_key=body.api_key, models=body.models, deployments=body.deployments,
            api_version=body.api_version, supports_responses=body.supports_responses)

    @app.delete("/admin/providers/{name}", status_code=204, tags=["providers"])
    async def remove_provider(name: str) -> Response:
        await providers.remove(name)
        return Response(status_code=204)

    @app.post("/admin/providers/{name}/test", response_model=ProviderTest, tags=["providers"])
    async def test_provider(name: str) -> dict[str, Any]:
        return await providers.test(name)

    @app.get("/admin/usage", response_model=UsageReport, tags=["usage"])
    async def usage_report(
        by: Annotated[Literal["key", "team", "model", "feature", "day", "env", "provider",
                              "endpoint"], Query()] = "key",
        since: Annotated[str, Query(description="Window such as 24h, 7d, 30d.")] = "7d",
    ) -> dict[str, Any]:
        window = _duration(since, "since")
        assert window is not None
        rows = await usage.report(by, window)
        return {"by": by, "since": since, "rows": [r.as_dict() for r in rows]}

    @app.get("/admin/status", tags=["status"])
    async def status() -> JSONResponse:
        in_flight = {name.removeprefix("inflight:"): count
                     for name, count in (await runtime.counters.gauges("inflight:")).items()}
        return JSONResponse({
            "in_flight": in_flight,
            "version": __version__, "keys": len(runtime.keys),
            "providers": sorted(runtime.providers.providers),
            "usage_queued": runtime.ledger.queued, "usage_written": runtime.ledger.written,
            "usage_dropped": runtime.ledger.dropped,
        })

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


def _duration(text: str | None, param: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
