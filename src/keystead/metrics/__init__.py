"""Prometheus metrics: `GET /metrics` (docs/monitoring.md#metrics).

    recorder.py   the per-request counters and histograms, one `observe` per request
    families.py   their definitions (names, labels, buckets)
    labels.py     bounded label values: known names only, a cap per label, `other`
    state.py      scrape-time gauges: budgets, breakers, provider keys, health, build, config
    health.py     a cached, time-bounded ping of Redis and the database
    endpoint.py   the ASGI answer: token, 404 when off, prometheus-client's text format
    multiproc.py  `--workers N`: the shared directory, dead workers
    core.py       `Metrics` (on) and `NoMetrics` (off); `add_collector` for other parts
"""

from keystead.metrics.core import Metrics, NoMetrics, open_metrics

__all__ = ["Metrics", "NoMetrics", "open_metrics"]
