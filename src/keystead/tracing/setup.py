"""The OpenTelemetry SDK as keystead runs it: built once per process, only when tracing is on.

    TracerProvider (resource: service.name, service.version; sampler: parent-based ratio)
      -> BatchSpanProcessor (a queue and a background thread: a request never waits on an
         export; a full queue drops spans)
        -> OTLPSpanExporter (OTLP/HTTP protobuf, each export bounded by `timeout_s`)

No global provider is installed (`trace.set_tracer_provider` is not called): the spans come
from this object's tracer only, so two runtimes in one process (tests) do not mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from keystead import __version__
from keystead.config.tracing import TracingConfig
from keystead.tracing.attempt_span import AttemptTracer
from keystead.tracing.request_span import RequestTracer

__all__ = ["Tracing"]

log = logging.getLogger("keystead.tracing")


class Tracing:
    """The provider and the two span makers: `requests` (the data plane's) and `attempts`
    (the router's). `exporter` replaces the OTLP exporter (tests: the SDK's in-memory one,
    exported span by span)."""

    def __init__(self, config: TracingConfig, *, exporter: SpanExporter | None = None):
        self.timeout_s = config.timeout_s
        self._provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name,
                                      "service.version": __version__}),
            shutdown_on_exit=False)  # closed by the runtime, within its timeout
        processor: SpanProcessor
        if exporter is not None:
            processor = SimpleSpanProcessor(exporter)
        else:
            processor = BatchSpanProcessor(
                _otlp_exporter(config), max_queue_size=config.queue_max,
                schedule_delay_millis=config.flush_interval_s * 1000,
                max_export_batch_size=config.batch_size,
                export_timeout_millis=config.timeout_s * 1000)
        self._provider.add_span_processor(processor)
        tracer = self._provider.get_tracer("keystead", __version__)
        propagator: TextMapPropagator = TraceContextTextMapPropagator()
        self.requests = RequestTracer(tracer, propagator)
        self.attempts = AttemptTracer(tracer, propagator)

    async def close(self) -> None:
        """Export what is queued, waiting `timeout_s` at most: a collector that is down or hangs
        never holds the gateway's shutdown longer. The flush runs in a daemon thread of its own
        (not the loop's executor, which the interpreter would wait for)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            except Exception:
                log.exception("shutting the trace exporter down failed")
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=shut_down, name="keystead-tracing-close", daemon=True).start()
        try:
            await asyncio.wait_for(done, self.timeout_s)
        except TimeoutError:
            log.warning("traces not exported within tracing.timeout_s (%.1fs) at shutdown; "
                        "the rest are dropped", self.timeout_s)


def _otlp_exporter(config: TracingConfig) -> SpanExporter:
    # Imported here: the exporter pulls in protobuf and an HTTP client.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    assert config.endpoint is not None  # the config requires it when tracing is on
    return OTLPSpanExporter(endpoint=config.endpoint, timeout=config.timeout_s,
                            headers={name: value.get_secret_value()
                                     for name, value in config.headers.items()})
