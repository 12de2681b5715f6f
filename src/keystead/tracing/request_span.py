"""One SERVER span per request, named "{gen_ai.operation.name} {gen_ai.request.model}".

`start` reads the client's W3C `traceparent`/`tracestate` (the propagator refuses a malformed
traceparent: the request then starts a trace of its own; a malformed tracestate is dropped
here first, see `client_carrier`) and makes the span current for the request's
task, so the router's attempt spans are its children. `end` writes the attributes from the
request context, from a fixed list: ids, names, counts and money, never a prompt, a completion
or a secret.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.util.types import AttributeValue

from keystead.pipeline.context import RequestContext
from keystead.pipeline.endpoints import PATHS
from keystead.tracing import answer
from keystead.tracing.semconv import HTTP, KEYSTEAD, OPERATION, GenAI, clean, provider_name

__all__ = ["RequestTrace", "RequestTracer", "client_carrier"]

log = logging.getLogger("keystead.tracing")

# OpenTelemetry's propagator logs a warning for each header it refuses, quoting a refused
# tracestate member: a client's text in the gateway's log, on every request it likes. The
# headers are checked here first, with the propagator's own limits, and what it would refuse is
# dropped without a word (W3C lets a receiver discard an invalid tracestate).
_TRACEPARENT_MAX = 512
_TRACESTATE_MAX = 512  # W3C: at least 512 characters should be propagated
_TRACESTATE_MEMBERS = 32
_TRACESTATE_KEY = (r"(?:[a-z][_0-9a-z\-*/]{0,255}"
                   r"|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})")
_TRACESTATE_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TRACESTATE_MEMBER = re.compile(f"({_TRACESTATE_KEY})={_TRACESTATE_VALUE}")


class RequestTracer:
    __slots__ = ("_propagator", "_tracer")

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator):
        self._tracer = tracer
        self._propagator = propagator

    def start(self, scope: dict[str, Any], ctx: RequestContext) -> RequestTrace:
        carrier = client_carrier(scope["headers"])
        parent = self._propagator.extract(carrier) if carrier is not None else None
        path: str = scope["path"]
        route = path if path in PATHS else \
            "/v1/models/{model}" if path.startswith("/v1/models/") else None
        method = _method(scope["method"])
        attributes: dict[str, AttributeValue] = {HTTP.METHOD: method,
                                                 KEYSTEAD.REQUEST_ID: ctx.request_id}
        if route is not None:
            attributes[HTTP.ROUTE] = route
        # Named by the HTTP conventions until `end` knows the model (an unknown path's text
        # never becomes a name: the client chose it).
        span = self._tracer.start_span(f"{method} {route}" if route else method,
                                       context=parent, kind=SpanKind.SERVER,
                                       attributes=attributes, start_time=int(ctx.ts * 1e9))
        token = otel_context.attach(set_span_in_context(span, parent))
        return RequestTrace(span, token)


def client_carrier(headers: list[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The client's `traceparent` (and `tracestate`, when every member of it is well formed),
    as the propagator may read them without logging; None without a usable traceparent."""
    traceparent = tracestate = None
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value
        elif name == b"tracestate":
            tracestate = value if tracestate is None else tracestate + b"," + value
    if traceparent is None or len(traceparent) > _TRACEPARENT_MAX:
        return None
    carrier = {"traceparent": traceparent.decode("latin-1")}
    if tracestate is not None and len(tracestate) <= _TRACESTATE_MAX:
        text = tracestate.decode("latin-1")
        if _valid_tracestate(text):
            carrier["tracestate"] = text
    return carrier


def _valid_tracestate(text: str) -> bool:
    keys: set[str] = set()
    for member in text.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys:
            return False
        keys.add(match.group(1))
    return len(keys) <= _TRACESTATE_MEMBERS


class RequestTrace:
    __slots__ = ("_token", "span")

    def __init__(self, span: Span, token: object):
        self.span = span
        self._token = token

    def end(self, ctx: RequestContext) -> None:
        """Name the span, write what the request became, end it. Never raises: a trace is not
        worth a request."""
        span = self.span
        try:
            if span.is_recording():
                _describe(span, ctx)
            span.end()
        except Exception:
            log.exception("ending the trace of request %s failed", ctx.request_id)
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]


def _method(method: str) -> str:
    return method if method in ("GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE",
                                "PATCH") else "_OTHER"


def _describe(span: Span, ctx: RequestContext) -> None:
    attributes: dict[str, AttributeValue] = {HTTP.STATUS: ctx.status}
    operation = OPERATION.get(ctx.endpoint)
    model = clean(ctx.model)
    if operation is not None:
        attributes[GenAI.OPERATION] = operation
        span.update_name(f"{operation} {model}" if model else operation)
        if ctx.stream:
            attributes[GenAI.REQUEST_STREAM] = True
    if model is not None:
        attributes[GenAI.REQUEST_MODEL] = model
    cap = _max_tokens(ctx.view)
    if cap is not None:
        attributes[GenAI.REQUEST_MAX_TOKENS] = cap
    provider = ctx.provider
    if provider is not None:
        attributes[GenAI.PROVIDER] = attributes[GenAI.SYSTEM] = provider_name(provider.type)
        attributes[KEYSTEAD.PROVIDER] = provider.name
    served = clean(ctx.upstream_model)
    if served is not None:
        attributes[GenAI.RESPONSE_MODEL] = served
    usage = ctx.usage
    if usage is not None:
        attributes[GenAI.INPUT_TOKENS] = usage.prompt_tokens
        attributes[GenAI.OUTPUT_TOKENS] = usage.completion_tokens
        if usage.cached_tokens:
            attributes[GenAI.CACHE_READ_TOKENS] = usage.cached_tokens
    if ctx.stream and ctx.completion_text:  # (a whole answer's were read by its attempt)
        response_id, reasons = answer.from_events(ctx.completion_text)
        if response_id is not None:
            attributes[GenAI.RESPONSE_ID] = response_id
        if reasons:
            attributes[GenAI.FINISH_REASONS] = reasons
        if ctx.ttft is not None:
            attributes[GenAI.TIME_TO_FIRST_CHUNK] = ctx.ttft / 1000.0
    key = ctx.key
    if key is not None:
        attributes[KEYSTEAD.KEY] = key.id
        attributes[KEYSTEAD.ENV] = key.env
        if key.team:
            attributes[KEYSTEAD.TEAM] = key.team
    if ctx.route is not None:
        attributes[KEYSTEAD.ROUTE] = ctx.route
    if ctx.deployment is not None:
        attributes[KEYSTEAD.DEPLOYMENT] = ctx.deployment.id
    if ctx.cost_known:
        attributes[KEYSTEAD.COST] = float(ctx.cost)
    if ctx.cache is not None:
        attributes[KEYSTEAD.CACHE] = ctx.cache
    if ctx.degraded is not None:
        attributes[KEYSTEAD.DEGRADED] = ctx.degraded
    attributes[KEYSTEAD.ATTEMPTS] = ctx.attempts
    if ctx.fallback:
        attributes[KEYSTEAD.FALLBACK] = True
    if ctx.usage_estimated:
        attributes[KEYSTEAD.USAGE_ESTIMATED] = True
    code = clean(ctx.error_code, 64)
    if ctx.status >= 400 or code is not None:
        error_type = code or str(ctx.status)
        attributes[HTTP.ERROR_TYPE] = attributes[KEYSTEAD.ERROR_CODE] = error_type
    span.set_attributes(attributes)
    # A server span is in error for 5xx only: a 4xx is the client's (HTTP conventions).
    if ctx.status >= 500:
        span.set_status(Status(StatusCode.ERROR, code or f"HTTP {ctx.status}"))


def _max_tokens(view: object) -> int | None:
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = getattr(view, field, None)
        if isinstance(value, int):
            return value
    return None
