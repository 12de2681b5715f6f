"""The request-path metric families: counters and histograms, all `keystead_`.

In a single process they live in the registry `/metrics` renders; with `--workers N`
(multiprocess mode) each worker writes them to its files in PROMETHEUS_MULTIPROC_DIR and the
scrape reads every worker's files, so they are registered nowhere (registry None).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ATTRIBUTION", "LATENCY", "LATENCY_BUCKETS", "REQUEST", "TTFT_BUCKETS",
           "RequestFamilies"]

# Label sets. Histograms carry the fewest (each label value costs a series per bucket).
REQUEST = ("endpoint", "status", "route", "model", "provider", "key", "team", "env")
ATTRIBUTION = ("route", "model", "provider", "key", "team", "env")
LATENCY = ("endpoint", "route", "model", "provider")

# Seconds. LLM calls run from tens of milliseconds (a cache hit, embeddings) to minutes (long
# generations, reasoning models).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
                   600.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class RequestFamilies:
    def __init__(self, registry: CollectorRegistry | None):
        r = registry
        self.requests = Counter("keystead_requests", "Requests answered, by outcome.",
                                REQUEST, registry=r)
        self.prompt_tokens = Counter("keystead_prompt_tokens", "Prompt (input) tokens.",
                                     ATTRIBUTION, registry=r)
        self.completion_tokens = Counter("keystead_completion_tokens",
                                         "Completion (output) tokens.", ATTRIBUTION, registry=r)
        self.cost = Counter("keystead_cost_usd", "Cost in USD at the configured prices.",
                            ATTRIBUTION, registry=r)
        self.latency = Histogram("keystead_request_duration_seconds",
                                 "Time from the request's arrival to its last byte.",
                                 LATENCY, buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("keystead_time_to_first_byte_seconds",
                              "Time from the request's arrival to the first byte of the answer.",
                              LATENCY, buckets=TTFT_BUCKETS, registry=r)
        self.upstream_errors = Counter("keystead_upstream_errors",
                                       "Failed upstream attempts, by class.",
                                       ("provider", "route", "class"), registry=r)
        self.retries = Counter("keystead_retries", "Upstream attempts after a request's first.",
                               ("provider", "route"), registry=r)
        self.fallbacks = Counter("keystead_fallbacks", "Requests served by a fallback tier.",
                                 ("provider", "route"), registry=r)
        self.refusals = Counter("keystead_limit_refusals",
                                "Requests refused by a rate limit, concurrency cap or budget.",
                                ("scope", "reason"), registry=r)
        self.cache = Counter("keystead_cache_lookups", "Response cache lookups.",
                             ("route", "result"), registry=r)
        self.degraded = Counter("keystead_degraded_answers",
                                "Answers given when every deployment failed.",
                                ("route", "kind"), registry=r)
        self.guard_blocks = Counter("keystead_guardrail_blocks",
                                    "Requests a guardrail refused, by what it found.",
                                    ("env", "kind"), registry=r)
        # Summed over live workers in multiprocess mode.
        self.in_flight = Gauge("keystead_in_flight_requests", "Requests being handled now.",
                               registry=r, multiprocess_mode="livesum")
        self.ledger_queue = Gauge("keystead_ledger_queue_depth",
                                  "Usage records waiting to be written to the ledger.",
                                  registry=r, multiprocess_mode="livesum")
        self.ledger_dropped = Gauge("keystead_ledger_dropped_records",
                                    "Usage records dropped because the ledger queue was full "
                                    "(since the process started).",
                                    registry=r, multiprocess_mode="livesum")
