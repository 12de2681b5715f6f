"""The data plane: OpenAI-compatible routes, each request down one straight line.

    identify -> read + parse -> admit -> route -> provider -> respond -> settle

The ASGI glue is here; each stage lives in `keystead.pipeline`, and what the client gets back
in `server/answers.py`. Identify runs before the body is read, so a client without a valid key
cannot make the gateway buffer a large body.

Anthropic's own `POST /v1/messages` (and `/v1/messages/count_tokens`) walks the same line with
Anthropic's bytes, passed through to anthropic providers; its differences (headers, errors,
the stream's usage) are in `pipeline/messages.py` and are reached by path only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from keystead.config.model import GuardPolicy
from keystead.errors import (
    AuthError,
    GatewayError,
    InvalidField,
    MethodNotAllowed,
    ModelNotFound,
    RouteNotFound,
)
from keystead.pipeline import admit, messages
from keystead.pipeline.cache_stage import Lookup, static_completion
from keystead.pipeline.context import RequestContext
from keystead.pipeline.endpoints import EndpointSpec, find_endpoint
from keystead.pipeline.parse import decode_view, read_body
from keystead.pipeline.relay import ClientGone, ClientWatch
from keystead.pipeline.request_id import CLIENT_REQUEST_ID, new_request_id
from keystead.pipeline.reserve import reserve
from keystead.pipeline.rewrite import BodyFactory, BodyRewrite
from keystead.pipeline.settle import (
    count_discarded,
    estimate_usage,
    price,
    prompt_tokens_bounds,
    settle,
)
from keystead.pipeline.validate import check_feature, printable
from keystead.pipeline.window import context_tokens as window_tokens
from keystead.providers.anthropic import CLIENT_HEADERS
from keystead.providers.base import Endpoint
from keystead.routing.router import AttemptLog, Judge, TierFailed
from keystead.routing.table import Route
from keystead.server.answers import NATIVE, Answers, send_error, stream_error
from keystead.server.catalog import list_models
from keystead.server.cors import preflight, with_cors
from keystead.server.mint import mint_token
from keystead.state.records import TeamRecord

if TYPE_CHECKING:
    from keystead.live import Live
    from keystead.runtime import Runtime

__all__ = ["DataPlane"]

log = logging.getLogger("keystead.dataplane")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_DECODE_INLINE = 64 * 1024  # bytes of body decoded on the event loop; larger: in a thread



class DataPlane:
    def __init__(self, runtime: Runtime, live: Live | None = None):
        self.rt = runtime
        # One data plane per config generation (a reload makes a new one): a request keeps the
        # one it started on, so everything the config makes (routes, prices, guardrails, ...)
        # is read from `self.live` and is the same from its first byte to its ledger row.
        self.live = live = live or runtime.live
        config = live.config
        self.answers = Answers(runtime, live)
        server = config.server
        self.max_body = server.max_body_bytes
        self.log_requests = config.logging.requests
        guard = config.guardrails
        self.guard_default = guard.default if guard.default != GuardPolicy() else None
        self.guard_envs = {env: policy if policy != GuardPolicy() else None
                           for env, policy in guard.environments.items()}
        if self.guard_default is not None or any(self.guard_envs.values()):
            # The guardrails' detectors (the scanner's patterns, compiled on import) load with
            # a config that uses them, here rather than on a first request; a gateway without
            # guardrails starts without them.
            import keystead.guard.inspect  # noqa: F401
        origins = server.cors_origins
        self.cors_any = "*" in origins
        self.cors_origins = {o.encode() for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        spec, model_id = find_endpoint(path)
        authorization = api_key = request_id = feature = user_agent = None
        forwarded_for = forwarded = origin = cache_control = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-keystead-feature":
                feature = value
            elif name == b"user-agent":
                user_agent = printable(value, 256)
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
            elif name == b"content-length":
                length = value
        if origin is not None and self.cors_origins and (self.cors_any
                                                         or origin in self.cors_origins):
            if scope["method"] == "OPTIONS":
                await preflight(send, origin)
                return
            send = with_cors(send, origin)
        if request_id is None or not CLIENT_REQUEST_ID.fullmatch(request_id):
            request_id = new_request_id()
        client = scope.get("client")
        client_ip = self.live.addresses.resolve(client[0] if client else None, forwarded_for,
                                              forwarded)
        endpoint = spec.endpoint if spec is not None else _unknown_endpoint(path)
        ctx = RequestContext(request_id, endpoint, client_ip, user_agent, None)
        ctx.cache_control = cache_control
        tracing = self.rt.tracing
        traced = tracing.requests.start(scope, ctx) if tracing is not None else None
        metrics = self.rt.metrics
        metrics.started()  # in flight until observed, below
        native: dict[str, str] | None = None  # Anthropic's route: its anthropic-* headers
        try:
            if feature is not None:
                ctx.feature = check_feature(feature)
            if spec is None:
                _unknown_path(ctx, scope["method"], path)
            if scope["method"] != spec.method:
                raise MethodNotAllowed(f"{path} accepts {spec.method}, not {scope['method']}.",
                                       allow=(spec.method,))
            if spec.native:
                x_api_key, native = messages.client_headers(scope["headers"])
                api_key = api_key or x_api_key
            key, ctx.token = self.rt.keys.identify_any(authorization, api_key)
            ctx.key = key
            team = self.rt.teams.get(key.team) if key.team else None
            admit.check_address(key, team, ctx.client_ip)
            admit.check_endpoint(key, endpoint)
            if endpoint is Endpoint.MODELS:
                await list_models(self.live, ctx, send, model_id)
                return
            if endpoint is Endpoint.TOKENS:
                await mint_token(self.rt, ctx, receive, send, scope)
                return
            body = ctx.body = await read_body(receive, self._body_limit(ctx), _length(length),
                                              scope)
            if native is not None:
                # The provider adapter reads them for this request (a context variable is
                # per task, as requests are); the OpenAI routes never set it.
                reset = CLIENT_HEADERS.set(native)
                try:
                    await self._forward(ctx, spec, team, body, receive, send)
                finally:
                    CLIENT_HEADERS.reset(reset)
                return
            await self._forward(ctx, spec, team, body, receive, send)
        except GatewayError as error:
            started = ctx.status != 0  # set just before a response starts
            ctx.status, ctx.error_code = error.status, error.code
            if isinstance(error, AuthError):
                ctx.claimed_key_id = error.key_id
            if not started:
                await send_error(send, ctx, error)
            else:
                await stream_error(send, error, ctx.endpoint in NATIVE)
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
                await send_error(send, ctx, GatewayError(
                    "The gateway failed to handle this request.",
                    hint=f"Quote request id {ctx.request_id} to your platform team."))
        finally:
            if ctx.usage is None and ctx.completion_text is not None:  # a stream cut short
                await estimate_usage(ctx, None)
            # Every path that learned usage is priced, including a stream that broke (or a client
            # that left) after its usage arrived; usage priced on the way out is not priced again.
            price(ctx, self.live.prices)
            if traced is not None:  # (all it reads is known: never raises)
                traced.end(ctx)
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
                metrics.observe(settle(ctx, self.rt.ledger, self.log_requests), ctx)

    def _body_limit(self, ctx: RequestContext) -> int:
        key = ctx.key
        assert key is not None
        if key.max_body_bytes is None:
            return self.max_body
        return min(self.max_body, key.max_body_bytes)

    async def _forward(self, ctx: RequestContext, spec: EndpointSpec, team: TeamRecord | None,
                       body: bytes, receive: Receive, send: Send) -> None:
        """Everything from the body to the answer."""
        key = ctx.key
        assert key is not None
        # A large body's checks (depth, duplicates, UTF-8) cost milliseconds: off the loop.
        view: Any = decode_view(ctx.endpoint, body) if len(body) < _DECODE_INLINE \
            else await asyncio.to_thread(decode_view, ctx.endpoint, body)
        ctx.view = view
        ctx.model = view.model
        spec.check_refused(view)
        admit.check_model(key, view.model)
        token = ctx.token
        if token is not None:
            admit.check_token_model(token, view.model)
        route = self.live.routes.resolve(view.model)
        if not route.implicit:
            ctx.route = route.name
        deployments = route.serving(ctx.endpoint)
        if not deployments:
            if spec.native:
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
            from keystead.guard.inspect import ContentBlocked, inspect  # (loaded in __init__)

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
        # The key's cap (a token's if narrower) refuses more; with a budget, a request must
        # have a known worst case: one without a cap of its own gets the configured default
        # written in (docs/limits.md says so).
        cap = admit.output_cap(key, token)
        requested, field = spec.requested_output(view)
        admit.check_max_tokens(requested, field, cap)
        fill = cap
        if fill is None and self.rt.limiter.has_budget(scopes):
            fill = self.live.config.limits.default_max_tokens
        if fill is not None and requested is None and spec.cap_write is not None:
            rewrite.cap_field, rewrite.cap_value = spec.cap_write, fill  # per deployment
        if spec.cap_fields:
            ctx.stream = bool(view.stream)
        if ctx.endpoint is Endpoint.CHAT:
            if ctx.stream:
                had_options = view.stream_options is not None
                ctx.client_asked_usage = bool(had_options and view.stream_options.include_usage)
                rewrite.force_usage = not ctx.client_asked_usage
            elif view.stream_options is not None:
                raise InvalidField("stream_options is only allowed when stream is true.",
                                   param="stream_options")
        body_for = BodyFactory(body, rewrite, had_options, view.model)
        output = requested if requested is not None else fill
        ctx.ticket = await reserve(self.rt.limiter, self.live, ctx, scopes, output, deployments)
        lookup = None
        if route.config is not None and route.config.cache is not None:
            lookup = self.rt.cache.plan(ctx, route.name, route.config, body, rewrite.cap_value,
                                        ctx.cache_control)
            if lookup is not None:
                ctx.cache = "miss"
                entry = await self.rt.cache.get(lookup) if lookup.read else None
                if entry is not None:
                    await self.answers.held_answer(ctx, entry, send, cache="hit")
                    return
        judge = None
        if route.config is not None and route.config.structured_output.validate_output \
                and ctx.endpoint is Endpoint.CHAT and not ctx.stream:
            judge = _judge(view)

        # Only routes know context windows and deployment quotas; a model name needs no count.
        prompt_tokens = output_tokens = context_tokens = 0
        if not route.implicit:
            prompt_tokens = prompt_tokens_bounds(body)[0]
            output_tokens = output if output is not None \
                else self.live.config.limits.default_max_tokens
            context_tokens = await window_tokens(ctx, route, prompt_tokens, requested)
        watch = ClientWatch(receive)
        try:
            try:
                served = await self.rt.router.call(
                    route, ctx.endpoint, body_for, stream=ctx.stream,
                    prompt_tokens=context_tokens, tokens=prompt_tokens + output_tokens,
                    judge=judge,
                    on_invalid=route.config.structured_output.on_invalid
                    if route.config is not None else "pass",
                    on_discarded=partial(count_discarded, ctx, self.live.prices))
            except asyncio.CancelledError:
                if watch.was_cancelled_by_us():
                    raise ClientGone from None
                raise
            except TierFailed as failed:
                self._note_attempts(ctx, failed.attempts)
                # Degraded mode covers a route that could not answer, never a request the
                # provider refused as the client's own fault.
                if failed.client_error or not await self._degraded(ctx, route, lookup, send):
                    await self.answers.provider_error(ctx, failed, send)
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
                await self.answers.provider_answer(ctx, served, send, watch.gone, lookup)
            finally:
                deployment.in_flight -= 1
        finally:
            await watch.close()

    @staticmethod
    def _note_attempts(ctx: RequestContext, attempts: list[AttemptLog]) -> None:
        ctx.attempts = max(1, len(attempts))
        ctx.attempt_log = attempts  # upstream errors by class (metrics)

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
                await self.answers.held_answer(ctx, entry, send, degraded="cached")
                return True
        if policy.static_reply is not None and ctx.endpoint is Endpoint.CHAT:
            entry = static_completion(route.name, policy.static_reply)
            await self.answers.held_answer(ctx, entry, send, degraded="static")
            return True
        return False


def _judge(view: Any) -> Judge | None:
    raw = getattr(view, "response_format", None)
    if raw is None or bytes(raw) == b"null":
        return None
    from keystead.routing.structured import judge_for  # jsonschema: only when asked for

    return judge_for(bytes(raw))


def _length(header: bytes | None) -> int | None:
    """The Content-Length header as a number (the server already refused a malformed one)."""
    return int(header) if header is not None and header.isdigit() else None


def _unknown_endpoint(path: str) -> Endpoint:
    """What an unknown path is recorded as: Anthropic's (its errors in Anthropic's envelope)
    under /v1/messages/ and a doubled /v1/messages, else `unknown`."""
    if path.startswith(("/v1/messages/", "/v1/v1/messages")):
        return Endpoint.MESSAGES
    return Endpoint.UNKNOWN


def _unknown_path(ctx: RequestContext, method: str, path: str) -> NoReturn:
    """A 404 that helps, naming the likely mistake."""
    if path.startswith("/v1/v1/"):
        raise RouteNotFound(
            f"Unknown route {method} {path}: the path has /v1 twice.",
            hint="Your client adds /v1 itself (Anthropic's SDK does): give it the gateway's "
                 "address without /v1, e.g. base_url=\"http://127.0.0.1:8080\".")
    if path.startswith("/v1/messages/"):
        raise RouteNotFound(
            f"Unknown route {method} {path}.",
            hint="keystead passes through POST /v1/messages and /v1/messages/count_tokens of "
                 "Anthropic's API; message batches and other routes are not served.")
    raise RouteNotFound(f"Unknown route {method} {path}.",
                        hint="keystead serves /v1/chat/completions, /v1/embeddings, "
                             "/v1/responses, /v1/models and Anthropic's /v1/messages.")
