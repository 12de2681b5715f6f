"""One call per request (`observe`, from the data plane's settle): the request's counters.

The hot path is a dict lookup by the request's raw label tuple, which finds the label
children made for it before (prometheus-client's `.labels()` costs microseconds; a cached
child's `inc` a fraction of one). Label values are folded once, when a tuple is first seen:
unknown models to `other`, and each label capped (labels.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keystead.metrics.families import RequestFamilies
from keystead.metrics.labels import OTHER, LabelCap, known_models

if TYPE_CHECKING:
    from keystead.live import Live
    from keystead.pipeline.context import RequestContext
    from keystead.state.records import UsageRecord

__all__ = ["Recorder", "attempt_class"]

# Raw tuples remembered; past this the memory is dropped and rebuilt (a new config, keys).
_MAX_SERIES = 20_000
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
    """The children of one label tuple."""

    __slots__ = ("completion", "cost", "latency", "prompt", "requests", "ttft")

    def __init__(self, families: RequestFamilies, request: tuple[str, ...]):
        attribution = request[2:]
        latency = request[:1] + request[2:5]
        self.requests = families.requests.labels(*request)
        self.prompt = families.prompt_tokens.labels(*attribution)
        self.completion = families.completion_tokens.labels(*attribution)
        self.cost = families.cost.labels(*attribution)
        self.latency = families.latency.labels(*latency)
        self.ttft = families.ttft.labels(*latency)


class Recorder:
    def __init__(self, families: RequestFamilies, cap: int, live: Callable[[], Live]):
        self.families = families
        self._live = live
        self._seen_live: Live | None = None
        self._models: frozenset[str] = frozenset()
        self._cap = {name: LabelCap(cap) for name in
                     ("status", "route", "model", "provider", "key", "team", "env", "kind")}
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._children: dict[tuple[Any, ...], Any] = {}  # the rarer families' children
        self._in_flight = families.in_flight

    def started(self) -> None:
        self._in_flight.inc()

    def observe(self, record: UsageRecord, ctx: RequestContext) -> None:
        self._in_flight.dec()
        live = self._live()
        if live is not self._seen_live:  # a reload: other models may be known now
            self._seen_live, self._models = live, known_models(live)
            self._series.clear()
        model = record.model_served or record.model_requested
        if model is not None and model not in self._models:
            model = OTHER
        raw = (record.endpoint, record.status, record.route, model, record.provider,
               record.key_id, record.team, record.env)
        series = self._series.get(raw)
        if series is None:
            series = self._new_series(raw)
        series.requests.inc()
        if record.prompt_tokens:
            series.prompt.inc(record.prompt_tokens)
        if record.completion_tokens:
            series.completion.inc(record.completion_tokens)
        if record.cost_usd:
            series.cost.inc(float(record.cost_usd))
        series.latency.observe(record.latency_ms / 1000.0)
        if record.ttft_ms is not None:
            series.ttft.observe(record.ttft_ms / 1000.0)
        # The rarer facts: one test each when absent.
        if record.attempts > 1 or ctx.attempt_log:
            self._attempts(record, ctx)
        if record.cache is not None:
            self._child(self.families.cache, "cache", record.route, record.cache).inc()
        if record.degraded is not None:
            self._child(self.families.degraded, "degraded", record.route, record.degraded).inc()
        if record.status == 429 or ctx.refused_scope is not None:
            reason = _REFUSALS.get(record.error_code or "")
            if reason is not None and ctx.refused_scope is not None:
                self._child(self.families.refusals, "refusals", ctx.refused_scope, reason).inc()
        if ctx.guard and record.error_code == "content_blocked":
            for kind in ctx.guard:
                self._child(self.families.guard_blocks, "guard", record.env, kind).inc()

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
