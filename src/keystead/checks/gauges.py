"""The synthetic checks as Prometheus gauges, read from `runtime.checks` at each scrape.

Targets are named by the config (providers, their pool labels, routes), so the label set is
bounded. With replicas, only the one that ran the latest period's checks holds results (the
others drop theirs when they find the period taken, schedule.py): dashboards read them with
`max by (target)` and `keystead_check_timestamp_seconds` says how fresh they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from keystead.checks.result import CheckResult

__all__ = ["RATE_LIMIT_REMAINING", "check_families"]

# Header -> the `limit` label of keystead_check_ratelimit_remaining (OpenAI's and Anthropic's).
RATE_LIMIT_REMAINING = {
    "x-ratelimit-remaining-requests": "requests",
    "x-ratelimit-remaining-tokens": "tokens",
    "anthropic-ratelimit-requests-remaining": "requests",
    "anthropic-ratelimit-tokens-remaining": "tokens",
    "anthropic-ratelimit-input-tokens-remaining": "input_tokens",
    "anthropic-ratelimit-output-tokens-remaining": "output_tokens",
}


def check_families(results: Callable[[], dict[str, CheckResult]]
                   ) -> Callable[[], Iterable[Metric]]:
    """A collector for `Metrics.add_collector`: `results()` is the runtime's latest check per
    target."""

    def collect() -> Iterable[Metric]:
        up = GaugeMetricFamily("keystead_check_up",
                               "1 if the latest synthetic check of the target passed, else 0.",
                               labels=["target", "kind"])
        latency = GaugeMetricFamily("keystead_check_latency_seconds",
                                    "Latency of the latest synthetic check of the target.",
                                    labels=["target", "kind"])
        when = GaugeMetricFamily("keystead_check_timestamp_seconds",
                                 "Unix time of the latest synthetic check of the target.",
                                 labels=["target", "kind"])
        remaining = GaugeMetricFamily(
            "keystead_check_ratelimit_remaining",
            "What the provider's rate-limit headers said was left at the latest check.",
            labels=["target", "limit"])
        for target, result in sorted(results().items()):
            labels = [target, result.kind]
            up.add_metric(labels, 1.0 if result.ok else 0.0)
            latency.add_metric(labels, result.latency_s)
            when.add_metric(labels, result.checked_at)
            for header, limit in RATE_LIMIT_REMAINING.items():
                value = result.rate_limits.get(header)
                if value is not None and value.isdigit():
                    remaining.add_metric([target, limit], float(value))
        return [up, latency, when, remaining]

    return collect
