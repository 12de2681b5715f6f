"""OpenTelemetry traces with the GenAI semantic conventions (docs/monitoring.md#traces).

    setup.py           the SDK's TracerProvider, batch processor and OTLP/HTTP exporter, built
                       only when `tracing.enabled` (nothing here is imported otherwise)
    request_span.py    one SERVER span per request, a child of the client's traceparent
    attempt_span.py    one CLIENT span per upstream try, whose traceparent goes upstream
    upstream.py        the headers an attempt adds to its upstream request (a context
                       variable; no OpenTelemetry import: the providers read it)
    semconv.py         attribute names and values (GenAI, HTTP, keystead.*)
    answer.py          finish reasons and response id, read from an answer only when tracing

A span never holds a prompt, a completion or a secret: attributes are built from a fixed list.
"""
