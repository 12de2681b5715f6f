"""The per-request recorder: bounded labels, and counts equal to prometheus-client's own."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from metrics_support import names, parse, total
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from keystead.metrics.families import LATENCY_BUCKETS, RequestFamilies
from keystead.metrics.recorder import Recorder, attempt_class
from keystead.routing.router import AttemptLog
from keystead.state.records import UsageRecord


def live(*models: str, routes: tuple[str, ...] = ()) -> Any:
    provider = SimpleNamespace(listed_models=models)
    route = SimpleNamespace(all_deployments=lambda: [])
    return SimpleNamespace(providers=SimpleNamespace(providers={"p": provider}),
                           routes=SimpleNamespace(routes=dict.fromkeys(routes, route)))


def ctx(**fields: Any) -> Any:
    return SimpleNamespace(**{"attempt_log": None, "refused_scope": None, "guard": None,
                              "deployment": None, **fields})


def record(**fields: Any) -> UsageRecord:
    base: dict[str, Any] = {"request_id": "r", "ts": 0.0, "endpoint": "chat.completions",
                            "status": 200, "key_id": "k1", "team": "search", "env": "prod",
                            "model_requested": "gpt-4o", "model_served": "gpt-4o",
                            "provider": "openai", "prompt_tokens": 10, "completion_tokens": 5,
                            "cost_usd": Decimal("0.001"), "latency_ms": 420.0}
    return UsageRecord(**{**base, **fields})


def recorder(cap: int = 100, models: tuple[str, ...] = ("gpt-4o",)) -> tuple[Recorder, Any]:
    registry = CollectorRegistry()
    world = live(*models, routes=("support",))
    return Recorder(RequestFamilies(registry), cap, lambda: world), registry


def scrape(rec: Recorder, registry: CollectorRegistry) -> Any:
    rec.flush()
    return parse(generate_latest(registry).decode())


def label_values(samples: Any, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name}


def test_ten_thousand_keys_and_made_up_models_stay_within_the_cap() -> None:
    rec, registry = recorder(cap=50)
    for i in range(10_000):
        rec.started()
        rec.observe(record(key_id=f"key{i:05d}", model_requested=f"made-up-{i}",
                           model_served=f"made-up-{i}", team=f"team{i}",
                           status=200 + i % 400), ctx())
    samples = scrape(rec, registry)
    keys = label_values(samples, "keystead_requests_total", "key")
    assert len(keys) == 51 and "other" in keys
    assert label_values(samples, "keystead_requests_total", "model") == {"other"}
    assert len(label_values(samples, "keystead_requests_total", "team")) == 51
    assert len(label_values(samples, "keystead_requests_total", "status")) == 51
    # Nothing was lost by folding: every request is counted once.
    assert total(samples, "keystead_requests_total") == 10_000
    assert total(samples, "keystead_prompt_tokens_total") == 100_000
    assert len(samples) < 60_000  # bounded, whatever the clients send


def test_a_known_model_keeps_its_name_and_an_unknown_one_is_other() -> None:
    rec, registry = recorder(models=("gpt-4o", "gpt-4o-mini"))
    rec.observe(record(model_served="gpt-4o-mini"), ctx())
    rec.observe(record(model_served="gpt-4o-2099-preview-evil", model_requested="made-up"),
                ctx())
    rec.observe(record(model_served=None, model_requested="x" * 10_000, status=400), ctx())
    samples = scrape(rec, registry)
    assert label_values(samples, "keystead_requests_total", "model") == {"gpt-4o-mini", "other"}


def test_a_dated_answer_is_counted_under_the_model_it_was_sent_as() -> None:
    # OpenAI answers "gpt-4o-mini" with "gpt-4o-mini-2024-07-18": a name no config lists. It
    # must not fold every real request into `other`.
    rec, registry = recorder(models=("gpt-4o", "gpt-4o-mini"))
    rec.observe(record(model_requested="gpt-4o-mini", model_served="gpt-4o-mini-2024-07-18"),
                ctx())
    rec.observe(record(model_requested="support", model_served="gpt-4o-2024-08-06"),
                ctx(deployment=SimpleNamespace(model="gpt-4o")))  # through a route
    samples = scrape(rec, registry)
    assert label_values(samples, "keystead_requests_total", "model") == {"gpt-4o-mini", "gpt-4o"}


def test_flushed_histograms_equal_prometheus_clients_own_observe() -> None:
    rec, registry = recorder()
    reference = Histogram("reference", "", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    rng = random.Random(7)
    for _ in range(2000):
        ms = rng.choice([0.0, 50.0, 100.0, 250.0, 999.9, 1000.0, 61_000.0, 700_000.0,
                         rng.uniform(0, 900_000)])
        rec.observe(record(latency_ms=ms, ttft_ms=ms / 2), ctx())
        reference.observe(ms / 1000.0)
    samples = scrape(rec, registry)
    mine = {dict(labels)["le"]: value for (name, labels), value in samples.items()
            if name == "keystead_request_duration_seconds_bucket"}
    theirs = {s.labels["le"]: s.value for s in reference.collect()[0].samples
              if s.name == "reference_bucket"}
    assert mine == theirs
    assert total(samples, "keystead_request_duration_seconds_count") == 2000
    assert total(samples, "keystead_time_to_first_byte_seconds_count") == 2000


def test_counts_accumulate_across_flushes() -> None:
    rec, registry = recorder()
    rec.observe(record(), ctx())
    scrape(rec, registry)
    rec.observe(record(), ctx())
    rec.observe(record(cost_usd=Decimal("0.5")), ctx())
    samples = scrape(rec, registry)
    assert total(samples, "keystead_requests_total") == 3
    assert abs(total(samples, "keystead_cost_usd_total") - 0.502) < 1e-9


def test_retries_fallbacks_upstream_errors_refusals_cache_degraded_and_guardrails() -> None:
    rec, registry = recorder()
    attempts = [AttemptLog("openai/gpt-4o", "http_429", 1.0), AttemptLog("openai/gpt-4o",
                "http_503", 1.0), AttemptLog("azure/gpt-4o", "timeout", 1.0),
                AttemptLog("azure/gpt-4o", "unreachable", 1.0), AttemptLog("b/gpt-4o", "ok", 1)]
    rec.observe(record(route="support", attempts=5, fallback=True, provider="b"),
                ctx(attempt_log=attempts))
    rec.observe(record(status=429, error_code="budget_exceeded"), ctx(refused_scope="team"))
    rec.observe(record(status=429, error_code="rate_limit_exceeded"), ctx(refused_scope="key"))
    rec.observe(record(route="support", cache="hit"), ctx())
    rec.observe(record(route="support", degraded="static"), ctx())
    rec.observe(record(status=400, error_code="content_blocked"),
                ctx(guard=("openai_key", "email")))
    samples = scrape(rec, registry)
    assert total(samples, "keystead_retries_total", route="support", provider="b") == 4
    assert total(samples, "keystead_fallbacks_total", route="support") == 1
    for provider, kind in (("openai", "429"), ("openai", "5xx"), ("azure", "timeout"),
                           ("azure", "connection")):
        assert total(samples, "keystead_upstream_errors_total", provider=provider,
                     route="support", **{"class": kind}) == 1
    assert total(samples, "keystead_upstream_errors_total") == 4
    assert total(samples, "keystead_limit_refusals_total", scope="team", reason="budget") == 1
    assert total(samples, "keystead_limit_refusals_total", scope="key", reason="rate") == 1
    assert total(samples, "keystead_cache_lookups_total", route="support", result="hit") == 1
    assert total(samples, "keystead_degraded_answers_total", kind="static") == 1
    assert total(samples, "keystead_guardrail_blocks_total", env="prod") == 2
    assert "keystead_in_flight_requests" in names(samples)


def test_attempt_classes() -> None:
    assert [attempt_class(o) for o in ("http_429", "http_500", "http_529", "http_408",
                                       "unreachable", "timeout", "malformed", "stream_error",
                                       "context", "schema", "weird")] == [
        "429", "5xx", "5xx", "4xx", "connection", "timeout", "malformed", "stream_error",
        "context", "schema", "other"]
