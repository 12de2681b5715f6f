"""The data plane: OpenAI-compatible routes, each request down one straight line.

    identify -> read + parse -> admit -> route -> provider -> respond -> settle

The ASGI glue is here; each stage lives in `keystead.pipeline`. Identify runs before the body is
read, so a client without a valid key cannot make the gateway buffer a large body.

Anthropic's own `POST /v1/messages` (and `/v1/messages/count_tokens`) walks the same line with
Anthropic's bytes, passed through to anthropic providers; its differences (headers, errors,
the stream's usage) are in `pipeline/messages.py` and are reached by path only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from keystead.cache import CachedResponse
from keystead.config.model import GuardPolicy
from keystead.errors import (
    GatewayError,
    InvalidField,
    MethodNotAllowed,
    ModelNotFound,
    RouteNotFound,
    RouteUnavailable,
    render,
    render_anthropic,
)
from keystead.guard.inspect import ContentBlocked, inspect
from keystead.pipeline import admit, messages
from keystead.pipeline.cache_stage import Lookup, replay, static_completion
from keystead.pipeline.context import RequestContext
from keystead.pipeline.limits import Limiter, Ticket
from keystead.pipeline.limits import Scope as LimitScope
from keystead.pipeline.parse import decode_view, read_body
from keystead.pipeline.relay import (
    ClientGone,
    ClientWatch,
    pass_headers,
    relay_body,
    relay_stream,
    upstream_auth_failure,
)
from keystead.pipeline.rewrite import BodyFactory, BodyRewrite
from keystead.pipeline.settle import (
    budget_worst_cost,
    estimate_usage,
    price,
    prompt_tokens_bounds,
    settle,
)
from keystead.pipeline.sse import MessagesRelay
from keystead.providers.anthropic import CLIENT_HEADERS
from keystead.providers.base import Endpoint
from keystead.routing.router import AttemptLog, Judge, Served, TierFailed
from keystead.routing.table import Deployment, Route
from keystead.server.cors import preflight, with_cors
from keystead.server.mint import mint_token
from keystead.state.records import TeamRecord
from keystead.usage.estimate import estimate_chat
from keystead.usage.extract import usage_from_body
from keystead.usage.prices import TokenUsage

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["DataPlane"]

log = logging.getLogger("keystead.dataplane")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ROUTES: dict[str, tuple[bytes, Endpoint]] = {
    "/v1/chat/completions": (b"POST", Endpoint.CHAT),
    "/v1/embeddings": (b"POST", Endpoint.EMBEDDINGS),
    "/v1/responses": (b"POST", Endpoint.RESPONSES),
    "/v1/models": (b"GET", Endpoint.MODELS),
    "/v1/keystead/tokens": (b"POST", Endpoint.TOKENS),
    "/v1/messages": (b"POST", Endpoint.MESSAGES),
    "/v1/messages/count_tokens": (b"POST", Endpoint.COUNT_TOKENS),
}
# Anthropic's own API, passed through: its errors take Anthropic's envelope.
_NATIVE = frozenset((Endpoint.MESSAGES, Endpoint.COUNT_TOKENS))
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_JSON = (b"content-type", b"application/json")
_ZERO_COST = (b"x-keystead-cost-usd", b"0")
_ZERO = Decimal(0)


# Request ids need to be unique, not secret: a random per-process prefix and a counter make
# them without a system call per request (os.urandom was 1-2 % of a request's CPU).
_ids = itertools.count(1)
_id_prefix = "req_" + os.urandom(6).hex()


def _new_id_prefix() -> None:  # a forked worker must not repeat its parent's ids
    global _id_prefix
    _id_prefix = "req_" + os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_id_prefix)


def _new_request_id() -> str:
    return f"{_id_prefix}{next(_ids) & 0xFFFFFFFFFFFF:012x}"


class DataPlane:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.max_body = runtime.config.server.max_body_bytes
        self.log_requests = runtime.config.logging.requests
        guard = runtime.config.guardrails
        self.guard_default = guard.default if guard.default != GuardPolicy() else None
        self.guard_envs = {env: policy if policy != GuardPolicy() else None
                           for env, policy in guard.environments.items()}
        origins = runtime.config.server.cors_origins
        self.cors_any = "*" in origins
        self.cors_origins = {o.encode() for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route = _ROUTES.get(path)
        model_id = None
        if route is None and path.startswith("/v1/models/"):
            route, model_id = _ROUTES["/v1/models"], path[len("/v1/models/"):]
        authorization = api_key = request_id = feature = user_agent = None
        forwarded_for = forwarded = origin = cache_control = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-keystead-feature":
                feature = value.decode("latin-1")[:128]
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")[:256]
            elif name == b"api-key":
                api_key = value
            elif name == b"x-forwarded-for":
                forwarded_for = value
            elif name == b"forwarded":
                forwarded = value
            elif name == b"origin":
                origin = value
            elif name == b"cache-control":
                cache_control = value.decode("latin-1")
        if origin is not None and self.cors_origins and (self.cors_any
                                                         or origin in self.cors_origins):
            if scope["method"] == "OPTIONS":
                await preflight(send, origin)
                return
            send = with_cors(send, origin)
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = _new_request_id()
        client = scope.get("client")
        client_ip = self.rt.addresses.resolve(client[0] if client else None, forwarded_for,
                                              forwarded)
        endpoint = route[1] if route else Endpoint.MODELS
        ctx = RequestContext(request_id, endpoint, client_ip, user_agent, feature)
        ctx.cache_control = cache_control
        native: dict[str, str] | None = None  # Anthropic's route: its anthropic-* headers
        try:
            if route is None:
                if path.startswith("/v1/messages/"):  # answered in Anthropic's envelope
                    ctx.endpoint = Endpoint.MESSAGES
                    raise RouteNotFound(
                        f"Unknown route {scope['method']} {path}.",
                        hint="keystead passes through POST /v1/messages and "
                             "/v1/messages/count_tokens of Anthropic's API; message batches "
                             "and other routes are not served.")
                raise RouteNotFound(f"Unknown route {scope['method']} {path}.",
                                    hint="keystead serves /v1/chat/completions, /v1/embeddings, "
                                         "/v1/responses, /v1/models and Anthropic's "
                                         "/v1/messages.")
            if scope["method"].encode() != route[0]:
                raise MethodNotAllowed(f"{path} accepts {route[0].decode()}, "
                                       f"not {scope['method']}.")
            if endpoint in _NATIVE:
                x_api_key, native = messages.client_headers(scope["headers"])
                api_key = api_key or x_api_key
            key, ctx.token = self.rt.keys.identify_any(authorization, api_key)
            ctx.key = key
            team = self.rt.teams.get(key.team) if key.team else None
            admit.check_address(key, team, ctx.client_ip)
            admit.check_endpoint(key, endpoint)
            if endpoint is Endpoint.MODELS:
                await self._models(ctx, send, model_id)
                return
            if endpoint is Endpoint.TOKENS:
                await mint_token(self.rt, ctx, receive, send)
                return
            if native is not None:
                # The provider adapter reads them for this request (a context variable is
                # per task, as requests are); the OpenAI routes never set it.
                reset = CLIENT_HEADERS.set(native)
                try:
                    await self._forward(ctx, team, receive, send)
                finally:
                    CLIENT_HEADERS.reset(reset)
                return
            await self._forward(ctx, team, receive, send)
        except GatewayError as error:
            started = ctx.status != 0  # set just before a response starts
            ctx.status, ctx.error_code = error.status, error.code
            if not started:
                await _send_error(send, ctx, error)
            else:
                await _stream_error(send, error, ctx.endpoint in _NATIVE)
        except ClientGone:
            ctx.status, ctx.error_code = 499, "client_disconnected"
        except asyncio.CancelledError:
            # The server gave up on the request (shutdown grace period over): still recorded.
            ctx.status, ctx.error_code = ctx.status or 503, "cancelled"
            raise
        except Exception:
            log.exception("unexpected failure in request %s", ctx.request_id)
            started = ctx.status != 0
            ctx.status, ctx.error_code = 500, "internal_error"
            if not started:
                await _send_error(send, ctx, GatewayError(
                    "The gateway failed to handle this request.",
                    hint=f"Quote request id {ctx.request_id} to your platform team."))
        finally:
            if ctx.usage is None and ctx.completion_text is not None:  # a stream cut short
                await estimate_usage(ctx, None)
            # Every path that learned usage is priced, including a stream that broke (or a client
            # that left) after its usage arrived; usage priced on the way out is not priced again.
            price(ctx, self.rt.prices)
            try:
                if ctx.ticket is not None:
                    usage, extra = ctx.usage, ctx.discarded_usage
                    tokens = usage.prompt_tokens + usage.completion_tokens if usage else None
                    if extra is not None:
                        tokens = (tokens or 0) + extra.prompt_tokens + extra.completion_tokens
                    await self.rt.limiter.settle(ctx.ticket, tokens,
                                                 ctx.cost + ctx.discarded_cost)
            except Exception:  # the ledger row is the record of truth: never lose it for this
                log.exception("settling the limits of request %s failed", ctx.request_id)
            finally:
                settle(ctx, self.rt.ledger, self.log_requests)

    async def _forward(self, ctx: RequestContext, team: TeamRecord | None, receive: Receive,
                       send: Send) -> None:
        """Everything from the body to the answer."""
        key = ctx.key
        assert key is not None
        limit = self.max_body if key.max_body_bytes is None else min(self.max_body,
                                                                       key.max_body_bytes)
        body = ctx.body = await read_body(receive, limit)
        view = ctx.view = decode_view(ctx.endpoint, body)
        ctx.model = view.model
        admit.check_model(key, view.model)
        token = ctx.token
        if token is not None:
            admit.check_token_model(token, view.model)
        route = self.rt.routes.resolve(view.model)
        if not route.implicit:
            ctx.route = route.name
        deployments = route.serving(ctx.endpoint)
        if not deployments:
            if ctx.endpoint in _NATIVE:
                raise messages.not_anthropic(route, view.model,
                                             "/v1/" + ctx.endpoint.value.replace(".", "/"))
            name = route.deployments[0].provider.name if route.deployments else "none"
            raise ModelNotFound(
                f"Model {view.model!r} is served by provider {name}, which does not "
                f"offer /v1/{ctx.endpoint.value.replace('.', '/')}.",
                param="model", hint="Use a model of a provider that supports this route.")
        first = deployments[0]
        ctx.provider, ctx.upstream_model = first.provider, first.model
        policy = self.guard_envs.get(key.env, self.guard_default)
        if policy is not None:
            # Off the event loop when large: the detectors are regular expressions over text.
            inspect_body = partial(inspect, ctx.endpoint, body, policy.secrets, policy.pii)
            try:
                verdict = inspect_body() if len(body) < 16_384 else \
                    await asyncio.to_thread(inspect_body)
            except ContentBlocked as blocked:
                ctx.guard = blocked.kinds
                raise
            ctx.guard = verdict.kinds or None
            if verdict.body is not None:
                body = verdict.body
        rewrite = BodyRewrite()
        had_options = False
        scopes = self.rt.limiter.scopes(key, team)
        token_scope = self.rt.limiter.token_scope(token) if token is not None else None
        if token_scope is not None:
            scopes = [*scopes, token_scope]
        # With a budget, a request must have a known worst case: one without max_tokens gets
        # the configured default written in (docs/limits.md says so).
        cap = token.max_tokens if token is not None and token.max_tokens else key.max_tokens
        if cap is None and self.rt.limiter.has_budget(scopes):
            cap = self.rt.config.limits.default_max_tokens
        requested: int | None = None
        if ctx.endpoint is Endpoint.CHAT:
            ctx.stream = bool(view.stream)
            requested = view.max_completion_tokens if view.max_completion_tokens is not None \
                else view.max_tokens
            admit.check_max_tokens(key, requested, "max_completion_tokens"
                                   if view.max_completion_tokens is not None else "max_tokens",
                                   cap)
            if cap is not None and requested is None:
                rewrite.cap_field = "max_tokens"  # per deployment: see _body_for
                rewrite.cap_value = cap
            if ctx.stream:
                had_options = view.stream_options is not None
                ctx.client_asked_usage = bool(had_options and view.stream_options.include_usage)
                rewrite.force_usage = not ctx.client_asked_usage
            elif view.stream_options is not None:
                raise InvalidField("stream_options is only allowed when stream is true.",
                                   param="stream_options")
        elif ctx.endpoint is Endpoint.RESPONSES:
            ctx.stream = bool(view.stream)
            requested = view.max_output_tokens
            admit.check_max_tokens(key, view.max_output_tokens, "max_output_tokens", cap)
            if cap is not None and view.max_output_tokens is None:
                rewrite.cap_field, rewrite.cap_value = "max_output_tokens", cap
        elif ctx.endpoint is Endpoint.MESSAGES:  # Anthropic's: max_tokens is required there
            ctx.stream = bool(view.stream)
            requested = view.max_tokens
            admit.check_max_tokens(key, requested, "max_tokens", cap)
        body_for = BodyFactory(body, rewrite, had_options, view.model)
        ctx.ticket = await self._admit(ctx, scopes, requested if requested is not None else cap,
                                       deployments)
        lookup = None
        if route.config is not None and route.config.cache is not None:
            lookup = self.rt.cache.plan(ctx, route.name, route.config, body, rewrite.cap_value,
                                        ctx.cache_control)
            if lookup is not None:
                ctx.cache = "miss"
                entry = await self.rt.cache.get(lookup) if lookup.read else None
                if entry is not None:
                    await self._serve_entry(ctx, entry, send, cache="hit")
                    return
        judge = None
        if route.config is not None and route.config.structured_output.validate_output \
                and ctx.endpoint is Endpoint.CHAT and not ctx.stream:
            judge = _judge(view)

        # Only routes know context windows and deployment quotas; a model name needs no count.
        prompt_tokens = output_tokens = context_tokens = 0
        if not route.implicit:
            prompt_tokens = prompt_tokens_bounds(body)[0]
            output_tokens = requested if requested is not None else \
                cap or self.rt.config.limits.default_max_tokens
            context_tokens = await self._context_tokens(ctx, route, prompt_tokens, requested)
        watch = ClientWatch(receive)
        try:
            try:
                served = await self.rt.router.call(
                    route, ctx.endpoint, body_for, stream=ctx.stream,
                    prompt_tokens=context_tokens, tokens=prompt_tokens + output_tokens,
                    judge=judge,
                    on_invalid=route.config.structured_output.on_invalid
                    if route.config is not None else "pass",
                    on_discarded=partial(self._discarded, ctx))
            except asyncio.CancelledError:
                if watch.was_cancelled_by_us():
                    raise ClientGone from None
                raise
            except TierFailed as failed:
                self._note_attempts(ctx, failed.attempts)
                # Degraded mode covers a route that could not answer, never a request the
                # provider refused as the client's own fault.
                if failed.client_error or not await self._degraded(ctx, route, lookup, send):
                    await self._failed(ctx, failed, send)
                return
            deployment = served.deployment
            ctx.deployment, ctx.provider = deployment, deployment.provider
            ctx.upstream_model = deployment.model
            ctx.fallback = served.tier is not route
            self._note_attempts(ctx, served.attempts)
            if judge is not None:
                ctx.schema_valid = served.schema_error is None
            watch.attach(served.upstream)
            try:
                await self._respond(ctx, served, send, watch.gone, lookup)
            finally:
                deployment.in_flight -= 1
        finally:
            await watch.close()

    @staticmethod
    async def _context_tokens(ctx: RequestContext, route: Route, estimate: int,
                              requested: int | None) -> int:
        """What the request needs of a context window (prompt + the output it asks for), for
        skipping deployments too small for it. Counted with the offline tokenizer, off the
        event loop, only when the byte estimate comes near the route's smallest window: an
        estimate alone must not send a request to a dearer model."""
        smallest = route.smallest_window()
        if smallest is None or estimate < smallest // 2 or ctx.endpoint is not Endpoint.CHAT:
            return 0
        view = ctx.view
        try:
            usage = await asyncio.to_thread(
                estimate_chat, ctx.upstream_model or ctx.model or "",
                view.messages, view.tools)  # type: ignore[attr-defined]
        except Exception:  # a count that fails must not fail the request: no pre-check
            log.exception("counting the prompt of request %s failed", ctx.request_id)
            return 0
        return usage.prompt_tokens + (requested or 0)

    @staticmethod
    def _note_attempts(ctx: RequestContext, attempts: list[AttemptLog]) -> None:
        ctx.attempts = max(1, len(attempts))

    def _discarded(self, ctx: RequestContext, deployment: Deployment, body: bytes) -> None:
        """An answer the provider billed that the client will not get (it broke its schema):
        its tokens and cost still count."""
        usage, _model = usage_from_body(body)
        if usage is None:
            return
        cost = self.rt.prices.cost(deployment.provider.type, deployment.model, usage)
        ctx.discarded_cost += cost.usd
        before = ctx.discarded_usage or TokenUsage()
        ctx.discarded_usage = TokenUsage(before.prompt_tokens + usage.prompt_tokens,
                                         before.completion_tokens + usage.completion_tokens,
                                         before.cached_tokens + usage.cached_tokens)

    async def _failed(self, ctx: RequestContext, failed: TierFailed, send: Send) -> None:
        """Every deployment failed: the last provider answer, else the last gateway error."""
        if failed.response is None:
            raise failed.error or RouteUnavailable(
                f"No deployment of route {ctx.route or ctx.model!r} can take a request now.",
                hint="Every deployment is cooling down after a 429 or behind an open circuit "
                     "breaker (`keystead routes` shows which); retry shortly.")
        status, upstream_headers, body, deployment = failed.response
        ctx.deployment, ctx.provider = deployment, deployment.provider
        ctx.upstream_model = deployment.model
        if status in (401, 403):
            raise upstream_auth_failure(ctx, status)
        ctx.error_code = f"upstream_http_{status}"
        if ctx.endpoint in _NATIVE:  # Anthropic's error, as Anthropic wrote it
            body = messages.ensure_envelope(body, status, deployment.provider.name)
            passed = messages.pass_headers(upstream_headers)
        else:
            body = _ensure_error_envelope(body, status, ctx)
            passed = pass_headers(upstream_headers)
        # The body may have been wrapped in an envelope: it is JSON whatever the provider said.
        headers = [_JSON, *(h for h in passed if h[0] != b"content-type"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", ctx.request_id.encode()), _ZERO_COST,
                   *self._served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        ctx.status = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _served_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        headers = []
        if ctx.route is not None:
            headers.append((b"x-keystead-route", ctx.route.encode()))
        if ctx.deployment is not None:
            headers.append((b"x-keystead-deployment", ctx.deployment.id.encode()))
        if ctx.attempts > 1:
            headers.append((b"x-keystead-attempts", str(ctx.attempts).encode()))
        if ctx.fallback:
            headers.append((b"x-keystead-fallback", b"true"))
        if ctx.schema_valid is False:
            headers.append((b"x-keystead-schema-valid", b"false"))
        return headers

    async def _admit(self, ctx: RequestContext, scopes: list[LimitScope], max_output: int | None,
                     deployments: list[Deployment]) -> Ticket:
        """Charge rate limits and reserve budgets, with the request's estimated and worst-case
        tokens (prompt bounded by its size, plus what it may generate)."""
        limiter = self.rt.limiter
        # The counters key holds by an id of ours: a client's x-request-id may repeat, and two
        # requests sharing one hold would share one budget reservation.
        hold_id = _new_request_id()
        if not limiter.needs_tokens(scopes) or ctx.endpoint is Endpoint.COUNT_TOKENS:
            return await limiter.admit(hold_id, scopes, 0, _ZERO)  # (counting tokens is free)
        estimate, bound = prompt_tokens_bounds(ctx.body)
        if ctx.endpoint is Endpoint.EMBEDDINGS:
            output = 0
        else:
            output = max_output if max_output is not None \
                else self.rt.config.limits.default_max_tokens
            output *= max(1, getattr(ctx.view, "n", None) or 1)
        # A route may be served by any of its deployments: reserve for the dearest one (one
        # without a price is refused under a budget, unless limits.unpriced_models allows it).
        worst = budget_worst_cost(ctx, self.rt.prices, bound, output, deployments,
                                  self.rt.config.limits.unpriced_models) \
            if limiter.has_budget(scopes) else _ZERO
        return await limiter.admit(hold_id, scopes, estimate + output, worst)

    async def _respond(self, ctx: RequestContext, served: Served, send: Send,
                       gone: asyncio.Event, lookup: Lookup | None) -> None:
        if ctx.endpoint in _NATIVE:
            await self._respond_native(ctx, served, send, gone)
            return
        provider = ctx.provider
        assert provider is not None
        upstream = served.upstream
        if served.chunks is not None:
            ctx.status = 200
            headers = [*pass_headers(upstream.headers), (b"x-request-id", ctx.request_id.encode()),
                       (b"x-keystead-provider", provider.name.encode()),
                       *self._served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
            assembler = self.rt.cache.assembler(ctx.endpoint) if lookup is not None else None
            await relay_stream(ctx, upstream, served.first, served.chunks, send, headers, gone,
                               lambda: self._cost_comment(ctx),
                               assembler.feed if assembler is not None else None)
            if assembler is not None and lookup is not None:
                assembler.end()
                answer = assembler.result()
                if answer is not None:
                    price(ctx, self.rt.prices)
                    await self.rt.cache.put(ctx, lookup, answer)
            return
        assert served.body is not None
        status, body, headers = relay_body(ctx, upstream, served.body, served.usage,
                                           served.model)
        if gone.is_set():
            raise ClientGone
        if ctx.usage is None:
            await estimate_usage(ctx, body)
        price(ctx, self.rt.prices)
        headers.extend(((b"content-length", str(len(body)).encode()),
                        (b"x-request-id", ctx.request_id.encode()),
                        (b"x-keystead-cost-usd", format(ctx.cost, "f").encode()),
                        (b"x-keystead-provider", provider.name.encode()),
                        *self._served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)))
        ctx.status = status  # from here on the response has started
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if lookup is not None and status == 200 and ctx.schema_valid is not False:
            await self.rt.cache.put(ctx, lookup, body)

    async def _respond_native(self, ctx: RequestContext, served: Served, send: Send,
                              gone: asyncio.Event) -> None:
        """Anthropic's answer as it came: status, body, events (the usage read on the way, the
        cost in a header, or a trailing SSE comment on a stream)."""
        provider = ctx.provider
        assert provider is not None
        upstream = served.upstream
        own = [(b"x-request-id", ctx.request_id.encode()),
               (b"x-keystead-provider", provider.name.encode()),
               *self._served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        if served.chunks is not None:
            ctx.status = 200
            relay = MessagesRelay()
            try:
                await relay_stream(ctx, upstream, served.first, served.chunks, send,
                                   [*messages.pass_headers(upstream.headers), *own], gone,
                                   lambda: self._cost_comment(ctx), relay=relay)
            finally:
                if not relay.finished:  # cut short: charge what it used until then
                    await messages.estimate_cut_stream(ctx, relay)
            return
        assert served.body is not None
        body = served.body
        ctx.ttft = ctx.elapsed_ms()
        ctx.usage = served.usage
        if served.model:
            ctx.upstream_model = served.model
        if gone.is_set():
            raise ClientGone
        if ctx.usage is None:
            await estimate_usage(ctx, body)
        price(ctx, self.rt.prices)
        headers = [*messages.pass_headers(upstream.headers),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-keystead-cost-usd", format(ctx.cost, "f").encode()), *own]
        ctx.status = upstream.status
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _degraded(self, ctx: RequestContext, route: Route, lookup: Lookup | None,
                        send: Send) -> bool:
        """Every deployment failed (P19): a cached answer of any age, else the route's static
        reply. False when the route has neither: the client gets the error."""
        config = route.config
        if config is None:
            return False
        policy = config.degraded
        if policy.serve_cached and lookup is not None:
            entry = await self.rt.cache.get(lookup, stale=True)
            if entry is not None:
                await self._serve_entry(ctx, entry, send, degraded="cached")
                return True
        if policy.static_reply is not None and ctx.endpoint is Endpoint.CHAT:
            entry = static_completion(route.name, policy.static_reply)
            await self._serve_entry(ctx, entry, send, degraded="static")
            return True
        return False

    async def _serve_entry(self, ctx: RequestContext, entry: CachedResponse, send: Send, *,
                           cache: str | None = None, degraded: str | None = None) -> None:
        """An answer the gateway holds (a cache hit, or a degraded reply): no provider call,
        nothing spent; a hit records what it saved."""
        ctx.usage = ctx.priced_usage = TokenUsage()
        ctx.cost = _ZERO
        ctx.provider = ctx.deployment = None
        ctx.upstream_model = entry.model or None
        if cache is not None:
            ctx.cache = cache
        ctx.degraded = degraded
        ctx.saved_cost = entry.cost if degraded != "static" else _ZERO
        headers = [(b"x-request-id", ctx.request_id.encode()), _ZERO_COST,
                   *self._served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        if cache is not None:
            headers += [(b"x-keystead-cache", cache.encode()),
                        (b"x-keystead-cache-age", str(entry.age_s()).encode())]
        if degraded is not None:
            headers.append((b"x-keystead-degraded", degraded.encode()))
        ctx.status = 200
        if ctx.stream:
            events = replay(entry, ctx.client_asked_usage)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), *headers]})
            await send({"type": "http.response.body", "body": b"".join(events),
                        "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            _JSON, (b"content-length", str(len(entry.body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": entry.body})

    def _cost_comment(self, ctx: RequestContext) -> bytes:
        # Headers left before the stream's usage was known: the cost travels as an SSE comment,
        # which every SSE client ignores and a curious one can read.
        if ctx.usage is None:
            return b""
        price(ctx, self.rt.prices)
        return b": x-keystead-cost-usd " + format(ctx.cost, "f").encode() + b"\n\n"

    async def _models(self, ctx: RequestContext, send: Send, model_id: str | None) -> None:
        key = ctx.key
        assert key is not None
        listed = [(model, provider) for model, provider in self.rt.providers.listed_models()
                  if admit.model_allowed(key, model)]
        if model_id is not None:
            ctx.model = model_id
            match = next(((m, p) for m, p in listed if m == model_id), None)
            if match is None:
                raise ModelNotFound(f"The model {model_id!r} does not exist or this key may "
                                    "not use it.", param="model")
            document: dict[str, Any] = _model_object(*match)
        else:
            document = {"object": "list", "data": [_model_object(m, p) for m, p in listed]}
        ctx.status = 200
        body = orjson.dumps(document)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON, (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", ctx.request_id.encode()), _ZERO_COST]})
        await send({"type": "http.response.body", "body": body})


def _judge(view: Any) -> Judge | None:
    raw = getattr(view, "response_format", None)
    if raw is None or bytes(raw) == b"null":
        return None
    from keystead.routing.structured import judge_for  # jsonschema: only when asked for

    return judge_for(bytes(raw))


def _model_object(model: str, provider: Any) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": provider.name}


def _ensure_error_envelope(body: bytes, status: int, ctx: RequestContext) -> bytes:
    """Upstream errors pass through when they are OpenAI-shaped; anything else is wrapped."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return body
    name = ctx.provider.name if ctx.provider else "?"
    return orjson.dumps({"error": {
        "message": f"Provider {name} answered HTTP {status} without an OpenAI error body.",
        "type": "upstream_error", "param": None, "code": f"upstream_http_{status}"}})


async def _send_error(send: Send, ctx: RequestContext, error: GatewayError) -> None:
    body = render_anthropic(error, ctx.request_id) if ctx.endpoint in _NATIVE else render(error)
    headers = [_JSON, (b"content-length", str(len(body)).encode()),
               (b"x-request-id", ctx.request_id.encode()), _ZERO_COST, *error.headers()]
    if ctx.ticket is not None:  # admitted, then failed: the limits still speak
        headers += Limiter.headers(ctx.ticket)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream_error(send: Send, error: GatewayError, native: bool = False) -> None:
    # The status line is gone already; an error event is what OpenAI sends mid-stream, and the
    # SDKs raise it as an APIError. Anthropic's streams send an `error` event (its SDKs raise
    # it as an APIStatusError).
    event = b"event: error\ndata: " + render_anthropic(error) + b"\n\n" if native \
        else b"data: " + render(error) + b"\n\n"
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": event, "more_body": False})
