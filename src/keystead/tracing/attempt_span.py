"""One CLIENT span per upstream try, a child of the request span.

The router hands over its try (a coroutine not yet started) with what it knows: the endpoint,
the deployment, the try's number and the backoff waited before it. While the try runs, its
`traceparent` (this span's, so the provider's own spans hang under it) is in `TRACE_HEADERS`,
which `Provider.send` adds to the request it sends. A whole answer's id and finish reasons are
read here (they are set on the request span too); a stream's are read when it ends.

The span covers the try up to a usable answer: a whole body, or a stream's first event (the
rest of a stream belongs to the request span).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from keystead.providers.endpoints import Endpoint
from keystead.routing.attempt import AttemptFailed
from keystead.tracing import answer
from keystead.tracing.semconv import ATTEMPT, HTTP, KEYSTEAD, OPERATION, GenAI, clean, provider_name
from keystead.tracing.upstream import TRACE_HEADERS

if TYPE_CHECKING:
    from keystead.routing.router import Served
    from keystead.routing.table import Deployment

__all__ = ["AttemptTracer"]


class AttemptTracer:
    __slots__ = ("_hosts", "_propagator", "_tracer")

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator):
        self._tracer = tracer
        self._propagator = propagator
        self._hosts: dict[str, tuple[str | None, int | None]] = {}  # base URL -> host, port

    async def attempt(self, call: Coroutine[Any, Any, Served], endpoint: Endpoint,
                      deployment: Deployment, number: int, wait_s: float) -> Served:
        """Run `call` (one try) inside its span; its outcome is the span's."""
        try:
            span = self._start(endpoint, deployment, number, wait_s)
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier, set_span_in_context(span))
        except BaseException:
            call.close()  # never started: no "never awaited" warning
            raise
        reset = TRACE_HEADERS.set(carrier)
        try:
            served = await call
        except AttemptFailed as failed:
            _failed(span, failed.outcome, failed.response[0] if failed.response else None)
            raise
        except BaseException as exc:  # cancelled (the client left), or a bug
            _failed(span, type(exc).__name__, None)
            raise
        else:
            _served(span, served, endpoint)
            return served
        finally:
            TRACE_HEADERS.reset(reset)
            span.end()

    def _start(self, endpoint: Endpoint, deployment: Deployment, number: int,
               wait_s: float) -> Span:
        provider = deployment.provider
        operation = OPERATION.get(endpoint)
        system = provider_name(provider.type)
        attributes: dict[str, AttributeValue] = {
            GenAI.PROVIDER: system, GenAI.SYSTEM: system,
            GenAI.REQUEST_MODEL: deployment.model,
            KEYSTEAD.PROVIDER: provider.name, KEYSTEAD.DEPLOYMENT: deployment.id,
            ATTEMPT.NUMBER: number, ATTEMPT.BACKOFF: wait_s,
        }
        if operation is not None:
            attributes[GenAI.OPERATION] = operation
        host, port = self._address(provider.base_url)
        if host is not None:
            attributes[HTTP.SERVER_ADDRESS] = host
            if port is not None:
                attributes[HTTP.SERVER_PORT] = port
        name = f"{operation or endpoint.value} {deployment.model}"
        return self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    def _address(self, base_url: str) -> tuple[str | None, int | None]:
        """The provider's host and port (never the rest of its URL), parsed once per URL."""
        found = self._hosts.get(base_url)
        if found is None:
            try:
                parts = urlsplit(base_url)
                found = clean(parts.hostname), parts.port
            except ValueError:
                found = (None, None)
            if len(self._hosts) < 1024:
                self._hosts[base_url] = found
        return found


def _served(span: Span, served: Served, endpoint: Endpoint) -> None:
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {
        HTTP.STATUS: served.upstream.status, ATTEMPT.OUTCOME: "ok"}
    model = clean(served.model)
    if model is not None:
        attributes[GenAI.RESPONSE_MODEL] = model
    usage = served.usage
    if usage is not None:
        attributes[GenAI.INPUT_TOKENS] = usage.prompt_tokens
        attributes[GenAI.OUTPUT_TOKENS] = usage.completion_tokens
    if served.body is not None and endpoint in OPERATION:
        response_id, reasons = answer.from_body(served.body)
        found: dict[str, AttributeValue] = {}
        if response_id is not None:
            found[GenAI.RESPONSE_ID] = response_id
        if reasons:
            found[GenAI.FINISH_REASONS] = reasons
        if found:
            attributes.update(found)
            # The request span (current around the try) reports the answer the client gets.
            get_current_span().set_attributes(found)
    span.set_attributes(attributes)


def _failed(span: Span, outcome: str, status: int | None) -> None:
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {ATTEMPT.OUTCOME: outcome,
                                             HTTP.ERROR_TYPE: outcome}
    if status is not None:
        attributes[HTTP.STATUS] = status
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, outcome))
