"""One call per request (`observe`, from the data plane's settle): the request's counters.

The hot path is a dict lookup by the request's raw label tuple, which finds the series made
for it before (prometheus-client's `.labels()` costs microseconds), and a few additions to
plain numbers there: each `inc` or `observe` of prometheus-client takes a lock (~0.5 us, ~1 us
for a histogram, more in multiprocess mode), so they are made once per series at `flush`
(before a scrape; every second with several workers), not once per request. Label values are
folded once, when a tuple is first seen: an answer's model the config does not name to the
model the request was sent as, else `other`; each label capped.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from keystead.metrics.families import LATENCY_BUCKETS, TTFT_BUCKETS, RequestFamilies
from keystead.metrics.labels import OTHER, LabelCap, known_models

if TYPE_CHECKING:
    from keystead.live import Live
    from keystead.pipeline.context import RequestContext
    from keystead.state.records import UsageRecord

__all__ = ["Recorder", "attempt_class"]

log = logging.getLogger("keystead.metrics")

# Raw tuples remembered; past this the memory is dropped and rebuilt (a new config, keys).
_MAX_SERIES = 20_000
_ZERO = Decimal(0)
_REFUSALS = {"rate_limit_exceeded": "rate", "concurrency_limit_exceeded": "concurrency",
             "budget_exceeded": "budget"}


def attempt_class(outcome: str) -> str:
    """An attempt's outcome (routing/router.py AttemptLog) as an error class."""
    if outcome.startswith("http_"):
        code = outcome[5:]
        if code == "429":
            return "429"
        return "5xx" if code.startswith("5") else "4xx"
    if outcome == "unreachable":
        return "connection"
    if outcome in ("timeout", "malformed", "stream_error", "context", "schema"):
        return outcome
    return "other"


class _Series:
    """The children of one label tuple, and what the requests since the last flush added to
    them: plain numbers on the request path, moved into prometheus-client by `flush`."""

    __slots__ = ("completion", "completion_n", "cost", "cost_n", "dirty", "latency",
                 "latency_n", "latency_sum", "prompt", "prompt_n", "requests", "requests_n",
                 "ttft", "ttft_n", "ttft_sum")

    def __init__(self, families: RequestFamilies, request: tuple[str, ...]):
        attribution = request[2:]
        latency = request[:1] + request[2:5]
        self.requests = families.requests.labels(*request)
        self.prompt = families.prompt_tokens.labels(*attribution)
        self.completion = families.completion_tokens.labels(*attribution)
        self.cost = families.cost.labels(*attribution)
        self.latency = families.latency.labels(*latency)
        self.ttft = families.ttft.labels(*latency)
        self.dirty = False
        self._reset()

    def _reset(self) -> None:
        self.requests_n = self.prompt_n = self.completion_n = 0
        self.cost_n = _ZERO
        self.latency_sum = self.ttft_sum = 0.0
        self.latency_n = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: +Inf
        self.ttft_n = [0] * (len(TTFT_BUCKETS) + 1)

    def flush(self) -> None:
        self.requests.inc(self.requests_n)
        if self.prompt_n:
            self.prompt.inc(self.prompt_n)
        if self.completion_n:
            self.completion.inc(self.completion_n)
        if self.cost_n:
            self.cost.inc(float(self.cost_n))
        _add(self.latency, self.latency_sum, self.latency_n)
        _add(self.ttft, self.ttft_sum, self.ttft_n)
        self.dirty = False
        self._reset()


def _add(histogram: Any, total: float, counts: list[int]) -> None:
    """Observations counted per bucket, added to a histogram child at once. prometheus-client
    (pinned) has no public call for it: its buckets are per-bucket (not cumulative) values."""
    if not any(counts):
        return
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


class Recorder:
    def __init__(self, families: RequestFamilies, cap: int, live: Callable[[], Live]):
        self.families = families
        self._live = live
        self._seen_live: Live | None = None
        self._models: frozenset[str] = frozenset()
        self._cap = {name: LabelCap(cap) for name in
                     ("status", "route", "model", "provider", "key", "team", "env", "kind")}
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._dirty: list[_Series] = []  # series with requests not flushed yet
        self._children: dict[tuple[Any, ...], Any] = {}  # the rarer families' children
        self.in_flight = 0

    def started(self) -> None:
        self.in_flight += 1

    def observe(self, record: UsageRecord, ctx: RequestContext) -> None:
        self.in_flight -= 1
        try:
            self._observe(record, ctx)
        except Exception:  # a metrics fault never touches the request (it is answered)
            log.exception("counting request %s in the metrics failed", record.request_id)

    def _observe(self, record: UsageRecord, ctx: RequestContext) -> None:
        live = self._live()
        if live is not self._seen_live:  # a reload: other models may be known now
            self.flush()
            self._seen_live, self._models = live, known_models(live)
            self._series.clear()
        model = record.model_served or record.model_requested
        if model is not None and model not in self._models:
            model = self._sent_as(record, ctx)
        raw = (record.endpoint, record.status, record.route, model, record.provider,
               record.key_id, record.team, record.env)
        series = self._series.get(raw)
        if series is None:
            series = self._new_series(raw)
        series.requests_n += 1
        series.prompt_n += record.prompt_tokens
        series.completion_n += record.completion_tokens
        series.cost_n += record.cost_usd
        seconds = record.latency_ms / 1000.0
        series.latency_sum += seconds
        series.latency_n[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        if record.ttft_ms is not None:
            seconds = record.ttft_ms / 1000.0
            series.ttft_sum += seconds
            series.ttft_n[bisect_left(TTFT_BUCKETS, seconds)] += 1
        if not series.dirty:
            series.dirty = True
            self._dirty.append(series)
        # The rarer facts: one test each when absent.
        if record.attempts > 1 or ctx.attempt_log:
            self._attempts(record, ctx)
        if record.cache is not None:
            self._child(self.families.cache, "cache", record.route, record.cache).inc()
        if record.degraded is not None:
            self._child(self.families.degraded, "degraded", record.route, record.degraded).inc()
        if ctx.refused_scope is not None:
            reason = _REFUSALS.get(record.error_code or "")
            if reason is not None:
                self._child(self.families.refusals, "refusals", ctx.refused_scope, reason).inc()
        if ctx.guard and record.error_code == "content_blocked":
            for kind in ctx.guard:
                self._child(self.families.guard_blocks, "guard", record.env, kind).inc()

    def _sent_as(self, record: UsageRecord, ctx: RequestContext) -> str:
        """A model name the config does not know, counted under the model the request was sent
        as: an answer names a dated snapshot (OpenAI answers gpt-4o-mini with
        gpt-4o-mini-2024-07-18), which would otherwise fold every real request into `other`.
        The deployment's model first (a route's), else the one the client asked for."""
        deployment = ctx.deployment
        for name in (deployment.model if deployment is not None else None,
                     record.model_requested):
            if name is not None and name in self._models:
                return name
        return OTHER

    def flush(self) -> None:
        """Move what requests added since the last flush into prometheus-client: before a
        scrape, and every second in multiprocess mode (the other workers' scrapes read it)."""
        dirty, self._dirty = self._dirty, []
        for series in dirty:
            series.flush()

    def _attempts(self, record: UsageRecord, ctx: RequestContext) -> None:
        families = self.families
        if record.attempts > 1:
            self._child(families.retries, "retries", record.provider, record.route).inc(
                record.attempts - 1)
        if record.fallback:
            self._child(families.fallbacks, "fallbacks", record.provider, record.route).inc()
        for attempt in ctx.attempt_log or ():
            if attempt.outcome != "ok":
                provider = attempt.deployment.partition("/")[0]  # "provider/model"
                self._child(families.upstream_errors, "upstream", provider, record.route,
                            attempt_class(attempt.outcome)).inc()

    def _new_series(self, raw: tuple[Any, ...]) -> _Series:
        if len(self._series) >= _MAX_SERIES:
            self.flush()
            self._series.clear()
        cap = self._cap
        labels = (raw[0], cap["status"](str(raw[1])), cap["route"](raw[2]), cap["model"](raw[3]),
                  cap["provider"](raw[4]), cap["key"](raw[5]), cap["team"](raw[6]),
                  cap["env"](raw[7]))
        series = self._series[raw] = _Series(self.families, labels)
        return series

    def _child(self, family: Any, name: str, *values: str | None) -> Any:
        raw = (name, *values)
        child = self._children.get(raw)
        if child is None:
            if len(self._children) >= _MAX_SERIES:
                self._children.clear()
            names = family._labelnames
            folded = [self._cap[label](value) if label in self._cap else (value or "")
                      for label, value in zip(names, values, strict=True)]
            child = self._children[raw] = family.labels(*folded)
        return child
