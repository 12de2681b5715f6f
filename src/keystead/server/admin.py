"""The admin API (`/admin/...`): keys, teams, providers, usage. Thin: each route calls the service
layer.

Guarded by the admin token (`Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>`), compared in constant
time. Described by the OpenAPI document at /admin/openapi.json. Errors use the same OpenAI-style
envelope as the data plane.
"""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from keystead import __version__
from keystead.control.events import EventService, event_view
from keystead.control.incident import IncidentService
from keystead.control.keys import KeyService
from keystead.control.providers import ProviderService
from keystead.control.teams import TeamService, apply_limit_changes, team_view
from keystead.control.tokens import TokenService
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
from keystead.server.admin_reload import add_reload_route
from keystead.state.counters import CountersUnavailable
from keystead.state.records import Limits
from keystead.state.store import GroupBy

__all__ = ["create_admin_app"]

# Where a request value comes from; not part of the parameter's name in an error.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


_COUNT = {"rpm": "Requests per minute.", "rpd": "Requests per day.",
          "tpm": "Tokens per minute (prompt + completion).", "tpd": "Tokens per day.",
          "max_parallel": "Requests in flight at once."}
_BUDGET = ("Spend cap per budget period, in USD. Send it as a string (\"12.50\") to keep "
           "every cent exact.")
_ALLOWLIST = ("IPv4/IPv6 addresses or CIDRs; when set, requests from anywhere else are "
              "refused.")
_CACHE = ("The response cache for this key: false never reads or writes it, true also uses "
          "routes whose cache is opt_in, null follows each route.")


class LimitsIn(BaseModel):
    """Limits of a key or a team. An absent or null limit: none at this scope."""

    model_config = ConfigDict(extra="forbid")
    rpm: int | None = Field(None, ge=1, description=_COUNT["rpm"])
    rpd: int | None = Field(None, ge=1, description=_COUNT["rpd"])
    tpm: int | None = Field(None, ge=1, description=_COUNT["tpm"])
    tpd: int | None = Field(None, ge=1, description=_COUNT["tpd"])
    max_parallel: int | None = Field(None, ge=1, description=_COUNT["max_parallel"])
    budget_usd: Decimal | None = Field(None, ge=0, description=_BUDGET)
    budget_period: Literal["day", "month"] = "month"


class LimitsPatch(LimitsIn):
    """Only the limits sent change; null clears one."""

    budget_period: Literal["day", "month"] | None = Field(  # type: ignore[assignment]
        None, description="When the budget resets; null: back to month.")


class LimitsOut(BaseModel):
    rpm: int | None
    rpd: int | None
    tpm: int | None
    tpd: int | None
    max_parallel: int | None
    budget_usd: str | None = Field(description="Decimal text, e.g. \"12.50\".")
    budget_period: Literal["day", "month"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Follows the naming rule, e.g. prod-webhook-bot-01.")
    env: str | None = Field(None, description="Defaults to the environment in the name.")
    team: str | None = None
    owner: str | None = Field(None, description="Contact of the key's owner (email, Slack).")
    description: str | None = None
    models: list[str] | None = Field(None, description="Allowed models; patterns like gpt-4o*.")
    endpoints: list[str] | None = Field(
        None, description="Allowed endpoints: chat.completions, embeddings, responses, models, "
                          "messages (Anthropic's /v1/messages, count_tokens included).")
    max_tokens: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1024)
    expires: str | None = Field(None, description="Lifetime such as 30d, 12h.")
    limits: LimitsIn | None = None
    ip_allowlist: list[str] | None = Field(None, description=_ALLOWLIST)
    cache: bool | None = Field(None, description=_CACHE)


class KeyUpdate(BaseModel):
    """Only the fields sent change; null clears one (`expires`: never expires,
    `ip_allowlist`: any address, `limits`: every limit, `cache`: follow the route)."""

    model_config = ConfigDict(extra="forbid")
    team: str | None = Field(None, description="Must exist.")
    owner: str | None = None
    description: str | None = None
    models: list[str] | None = Field(None, description="Allowed models; null: every model.")
    endpoints: list[str] | None = Field(None, description="Allowed endpoints; null: all.")
    max_tokens: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1024)
    expires: str | None = Field(None, description="New lifetime from now, such as 30d.")
    limits: LimitsPatch | None = None
    ip_allowlist: list[str] | None = Field(None, description=_ALLOWLIST)
    cache: bool | None = Field(None, description=_CACHE)


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
    cache: bool | None = Field(description=_CACHE)
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    revoked_reason: str | None
    last_used_at: str | None  # the order of key_view, so --server prints what embedded does
    disabled_at: str | None
    limits: LimitsOut
    ip_allowlist: list[str] | None
    rotated_at: str | None
    rotation_due_at: str | None = Field(description="When keys.rotate_every wants it rotated.")
    previous_key_expires_at: str | None = Field(
        description="Until then the text a rotation replaced still works (the grace period).")


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(description="The key's id, its name, or the leaked text itself.")
    reason: str | None = None
    replace: bool = Field(True, description="Issue a replacement (same scopes, limits, budget); "
                                            "false: revoke only.")


class TokenMint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(description="The parent key's id or name.")
    ttl: str | None = Field(None, description="Lifetime, e.g. 15m (default tokens.default_ttl, "
                                              "at most tokens.max_ttl).")
    models: list[str] | None = Field(None, description="Narrower than the key's; default its.")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    user: str | None = Field(None, description="The end user it is for (in the log line).")


class Rotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace: str = Field("24h", description="How long the old text keeps working, e.g. 24h; 0s: "
                                          "refused at once (a leak).")


class KeyCreated(KeyOut):
    key: str = Field(description="The key text. Shown once: keystead stores only its hash.")


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Lowercase letters, digits and '-', e.g. payments.")
    description: str | None = None
    owner: str | None = Field(None, description="Contact of the team (email, Slack).")
    limits: LimitsIn | None = Field(None, description="Shared by all of the team's keys.")
    ip_allowlist: list[str] | None = Field(None, description=_ALLOWLIST)


class TeamUpdate(BaseModel):
    """Only the fields sent change; null clears one (`limits`: every limit)."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    owner: str | None = None
    limits: LimitsPatch | None = None
    ip_allowlist: list[str] | None = Field(None, description=_ALLOWLIST)


class TeamOut(BaseModel):
    name: str
    description: str | None
    owner: str | None
    limits: LimitsOut
    ip_allowlist: list[str] | None
    created_at: str | None


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["openai", "azure", "openai-compatible", "mock", "anthropic", "gemini"]
    base_url: str | None = None
    api_key_env: str | None = Field(None, description="Read the key from this variable.")
    api_key: str | None = Field(None, description="Sealed into the vault; never returned.")
    api_key_ref: str | None = Field(
        None, description="A reference to an external store: env:VAR, file:PATH, "
                          "aws-sm:SECRET_ID[#FIELD], hcvault:MOUNT/PATH#FIELD.")
    api_keys: list[str] | None = Field(
        None, description="Several keys (a pool, labelled #1, #2, ... in this order), each "
                          "sealed into the vault; never returned.")
    api_key_refs: list[str] | None = Field(
        None, description="Several keys (a pool) as references to external stores.")
    models: list[str] = Field(default_factory=list)
    deployments: dict[str, str] = Field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None


class ProviderKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(description="The new key; sealed into the vault, never returned.")
    label: str | None = Field(None, description="Which key of a pool to replace (`2` or `#2`); "
                                                "needed when the provider has several.")


class ProviderKeyAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str | None = Field(None, description="Sealed into the vault; never returned.")
    api_key_ref: str | None = Field(
        None, description="Or a reference to an external store: env:VAR, file:PATH, "
                          "aws-sm:SECRET_ID[#FIELD], hcvault:MOUNT/PATH#FIELD.")


class ProviderKeyOut(BaseModel):
    label: str = Field(description="#1, #2, ...: the key's place in the provider's keys.")
    source: str = Field(description="Where it lives: vault, a reference, or config.")
    fingerprint: str | None = Field(
        description="The first 12 hex characters of the key's sha256; never the key.")
    state: Literal["active", "cooling", "disabled", "unusable"] = Field(
        description="active: in rotation; cooling: rate-limited (429), the other keys go first "
                    "until `until`; disabled: refused by the provider (401/403), out of "
                    "rotation; unusable: cannot be read.")
    since: str | None
    until: str | None
    reason: str | None


class ProviderOut(BaseModel):
    name: str
    type: str
    base_url: str | None
    source: Literal["config", "store"]
    api_key: str | None = Field(description="Where the key lives: env:VAR, vault or config "
                                            "(for a pool, each key's, comma separated).")
    models: list[str]
    deployments: dict[str, str]
    api_version: str | None
    status: Literal["ok", "unusable"]
    error: str | None
    keys: list[ProviderKeyOut] = Field(description="Its keys and their states (a pool).")


class ProviderKeyTest(BaseModel):
    label: str
    fingerprint: str | None
    state: str
    ok: bool
    status: int | None
    latency_ms: float | None
    detail: str


class ProviderTest(BaseModel):
    name: str
    ok: bool = Field(description="Every key works.")
    status: int | None
    latency_ms: float | None
    detail: str
    keys: list[ProviderKeyTest] = Field(default_factory=list, description="Each key's result.")


class UsageRowOut(BaseModel):
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: str
    avg_latency_ms: float
    retries: int = Field(0, description="Attempts beyond the first (routes).")
    fallbacks: int = Field(0, description="Requests a fallback tier answered.")
    cache_hits: int = 0
    saved_usd: str = Field("0", description="What cache hits would have cost.")
    schema_checked: int = Field(0, description="Structured answers validated.")
    schema_invalid: int = Field(0, description="... of which handed over invalid.")
    degraded: int = Field(0, description="Answered in degraded mode (cached or static).")


class UsageReport(BaseModel):
    by: str
    since: str
    filters: dict[str, str] = Field(description="The filters applied, by dimension.")
    rows: list[UsageRowOut]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def create_admin_app(runtime: Runtime) -> FastAPI:
    keys = KeyService(runtime, actor="admin-api")
    providers, usage = ProviderService(runtime, actor="admin-api"), UsageService(runtime)
    teams = TeamService(runtime)
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
    async def list_keys(
        due_within: Annotated[str | None, Query(
            description="Only keys whose rotation is due within this window (0s: overdue), "
                        "most overdue first.")] = None,
    ) -> list[dict[str, Any]]:
        if due_within is not None:
            window = _duration(due_within, "due_within")
            assert window is not None
            return [keys.view(k) for k in await keys.due(window)]
        return [keys.view(k) for k in await keys.list()]

    @app.post("/admin/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
    async def create_key(body: KeyCreate) -> dict[str, Any]:
        expires = _duration(body.expires, "expires")
        created = await keys.create(
            body.name, env=body.env, team=body.team, owner=body.owner,
            description=body.description, models=body.models, endpoints=body.endpoints,
            max_tokens=body.max_tokens, max_body_bytes=body.max_body_bytes, expires_in_s=expires,
            limits=_limits(body.limits), ip_allowlist=body.ip_allowlist, cache=body.cache)
        return {**keys.view(created.record), "key": created.text}

    @app.patch("/admin/keys/{key}", response_model=KeyOut, tags=["keys"])
    async def update_key(key: str, body: KeyUpdate) -> dict[str, Any]:
        # Sent fields only: an absent field stays as it is, null clears it.
        changes = body.model_dump(exclude_unset=True)
        if "expires" in changes:
            changes["expires_in_s"] = _duration(changes.pop("expires"), "expires")
        return keys.view(await keys.update(key, **changes))

    @app.get("/admin/keys/{key}", response_model=KeyOut, tags=["keys"])
    async def show_key(key: str) -> dict[str, Any]:
        return keys.view(await keys.get(key))

    @app.post("/admin/keys/{key}/rotate", response_model=KeyCreated, tags=["keys"])
    async def rotate_key(key: str, body: Rotate | None = None) -> dict[str, Any]:
        grace = _duration(body.grace if body else "24h", "grace")
        assert grace is not None
        created = await keys.rotate(key, grace)
        return {**keys.view(created.record), "key": created.text}

    @app.get("/admin/events", tags=["keys"])
    async def list_events(
        key: Annotated[str | None, Query(description="A key's id or name.")] = None,
        kind: Annotated[str | None, Query(description="e.g. incident, key.revoked, "
                                                      "key.rotation_due")] = None,
        since: Annotated[str | None, Query(description="Window such as 24h, 7d.")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """The audit trail: who created, changed, rotated, paused or revoked which key, the
        incidents, and the rotation reminders; newest first."""
        found = await EventService(runtime).list(key=key, kind=kind, since_s=_duration(
            since, "since"), limit=limit)
        return [event_view(e) for e in found]

    @app.post("/admin/tokens", status_code=201, tags=["keys"])
    async def mint_token(body: TokenMint) -> dict[str, Any]:
        """A short-lived token from a key; a backend holding the key can mint one itself with
        POST /v1/keystead/tokens."""
        options = body.model_dump(exclude={"key"}, exclude_none=True)
        return (await TokenService(runtime).mint_for(body.key, **options)).as_dict()

    @app.post("/admin/incidents", tags=["keys"])
    async def incident(body: IncidentIn) -> dict[str, Any]:
        """Stop a leaked key everywhere, issue its replacement, notify the owner's webhook and
        return the forensics (source IPs, user agents, models, hours, what is unusual)."""
        found = await IncidentService(runtime, "admin-api").respond(body.key, reason=body.reason,
                                                       replace=body.replace)
        return found.as_dict()

    @app.post("/admin/keys/{key}/revoke", response_model=KeyOut, tags=["keys"])
    async def revoke_key(key: str, body: Revoke | None = None) -> dict[str, Any]:
        return keys.view(await keys.revoke(key, body.reason if body else None))

    @app.post("/admin/keys/{key}/disable", response_model=KeyOut, tags=["keys"])
    async def disable_key(key: str) -> dict[str, Any]:
        return keys.view(await keys.set_disabled(key, True))

    @app.post("/admin/keys/{key}/enable", response_model=KeyOut, tags=["keys"])
    async def enable_key(key: str) -> dict[str, Any]:
        return keys.view(await keys.set_disabled(key, False))

    @app.get("/admin/teams", response_model=list[TeamOut], tags=["teams"])
    async def list_teams() -> list[dict[str, Any]]:
        return [team_view(t) for t in await teams.list()]

    @app.post("/admin/teams", response_model=TeamOut, status_code=201, tags=["teams"])
    async def create_team(body: TeamCreate) -> dict[str, Any]:
        return team_view(await teams.create(
            body.name, description=body.description, owner=body.owner,
            limits=_limits(body.limits), ip_allowlist=body.ip_allowlist))

    @app.get("/admin/teams/{name}", response_model=TeamOut, tags=["teams"])
    async def show_team(name: str) -> dict[str, Any]:
        return team_view(await teams.get(name))

    @app.patch("/admin/teams/{name}", response_model=TeamOut, tags=["teams"])
    async def update_team(name: str, body: TeamUpdate) -> dict[str, Any]:
        return team_view(await teams.update(name, **body.model_dump(exclude_unset=True)))

    @app.get("/admin/providers", response_model=list[ProviderOut], tags=["providers"])
    async def list_providers() -> list[dict[str, Any]]:
        return providers.list()

    @app.post("/admin/providers", response_model=ProviderOut, status_code=201,
              tags=["providers"])
    async def add_provider(body: ProviderCreate) -> dict[str, Any]:
        return await providers.add(
            body.name, type=body.type, base_url=body.base_url, api_key_env=body.api_key_env,
            api_key=body.api_key, models=body.models, deployments=body.deployments,
            api_version=body.api_version, supports_responses=body.supports_responses,
            api_key_ref=body.api_key_ref, api_keys=body.api_keys, api_key_refs=body.api_key_refs)

    @app.get("/admin/providers/{name}", response_model=ProviderOut, tags=["providers"])
    async def get_provider(name: str) -> dict[str, Any]:
        return providers.get(name)

    @app.delete("/admin/providers/{name}", status_code=204, tags=["providers"])
    async def remove_provider(name: str) -> Response:
        await providers.remove(name)
        return Response(status_code=204)

    @app.put("/admin/providers/{name}/key", response_model=ProviderOut, tags=["providers"])
    async def set_provider_key(name: str, body: ProviderKey) -> dict[str, Any]:
        """Replace the provider's key (`label`: which of a pool) in the vault; no request fails
        during the swap."""
        return await providers.set_key(name, body.api_key, body.label)

    @app.post("/admin/providers/{name}/keys", response_model=ProviderOut, status_code=201,
              tags=["providers"])
    async def add_provider_key(name: str, body: ProviderKeyAdd) -> dict[str, Any]:
        """Add a key to the pool of a provider added at run time."""
        return await providers.add_key(name, api_key=body.api_key, api_key_ref=body.api_key_ref)

    @app.delete("/admin/providers/{name}/keys/{label}", response_model=ProviderOut,
                tags=["providers"])
    async def remove_provider_key(name: str, label: str) -> dict[str, Any]:
        """Remove key `label` (`2` or `#2`) from the pool of a provider added at run time."""
        return await providers.remove_key(name, label)

    @app.post("/admin/providers/{name}/keys/{label}/enable", response_model=ProviderOut,
              tags=["providers"])
    async def enable_provider_key(name: str, label: str) -> dict[str, Any]:
        """Put key `label`, taken out after a 401/403, back into rotation on every gateway."""
        return await providers.enable_key(name, label)

    @app.post("/admin/providers/{name}/test", response_model=ProviderTest, tags=["providers"])
    async def test_provider(name: str) -> dict[str, Any]:
        return await providers.test(name)

    @app.get("/admin/usage", response_model=UsageReport, tags=["usage"])
    async def usage_report(
        by: Annotated[GroupBy, Query()] = "key",
        since: Annotated[str, Query(description="Window such as 24h, 7d, 30d.")] = "7d",
        key: Annotated[str | None, Query(description="Only this key (its id or name).")] = None,
        team: Annotated[str | None, Query(description="Only this team.")] = None,
        env: Annotated[str | None, Query(description="Only this environment.")] = None,
        feature: Annotated[str | None, Query(description="Only this feature tag.")] = None,
        route: Annotated[str | None, Query(description="Only this route.")] = None,
        model: Annotated[str | None, Query(description="Only this model.")] = None,
        provider: Annotated[str | None, Query(description="Only this provider.")] = None,
        endpoint: Annotated[str | None, Query(description="Only this endpoint.")] = None,
    ) -> dict[str, Any]:
        window = _duration(since, "since")
        assert window is not None
        filters = {name: value for name, value in (
            ("key", key), ("team", team), ("env", env), ("feature", feature), ("route", route),
            ("model", model), ("provider", provider), ("endpoint", endpoint))
            if value is not None}
        rows = await usage.report(by, window, filters)
        return {"by": by, "since": since, "filters": filters,
                "rows": [r.as_dict() for r in rows]}

    @app.get("/admin/routes", tags=["routes"])
    async def routes() -> list[dict[str, Any]]:
        from keystead.control.routes import route_status

        return await route_status(runtime)

    @app.get("/admin/status", tags=["status"])
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
    add_reload_route(app, runtime)
    return app


def _limits(body: LimitsIn | None) -> Limits | None:
    # Through the service's own checks, so the API and the CLI refuse the same values alike.
    return None if body is None else apply_limit_changes(Limits(), body.model_dump())


def _duration(text: str | None, param: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidField(str(exc), param=param) from None
