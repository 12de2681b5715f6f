"""The attempt loop with a scripted provider, a fake clock and a seeded random source:
which deployment each attempt goes to, how long it waits, when it falls back or stops."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from keystead.config.routing import BreakerPolicy, RetryPolicy, RouteConfig
from keystead.providers.base import Endpoint
from keystead.routing.breaker import Breakers
from keystead.routing.router import Router, TierFailed
from keystead.routing.structured import judge_for
from keystead.routing.table import Deployment, Route
from keystead.state.memory_counters import MemoryCounters

from .fakes import OK_BODY, Clock, FakeResponse, ScriptedProvider, reset

RETRY = RetryPolicy(attempts=3, base_ms=100, cap_ms=1000, max_retry_after_s=5)


def make_route(name: str, *deployments: Deployment, retry: RetryPolicy = RETRY,
               strategy: str = "ordered", fallback_on: tuple[str, ...] | None = None,
               ) -> Route:
    """A configured route (not a model name) over `deployments`, tried in the given order."""
    config = RouteConfig.model_validate({
        "deployments": [{"provider": d.provider.name, "model": d.model} for d in deployments],
        "strategy": strategy, **({"fallback_on": fallback_on} if fallback_on else {})})
    return Route(name, list(deployments), strategy, retry, config)


def make_router(clock: Clock, policy: BreakerPolicy | None = None, seed: int = 1) -> Router:
    breakers = Breakers(MemoryCounters(clock), policy or BreakerPolicy(failures=3),
                        clock=clock)
    return Router(breakers, sleep=clock.sleep, clock=clock, rng=random.Random(seed))


def call(router: Router, route: Route, *, stream: bool = False, prompt_tokens: int = 10,
         **kwargs: Any) -> Any:
    return asyncio.run(router.call(route, Endpoint.CHAT, lambda d: b'{"model":"%s"}' %
                                   d.model.encode(), stream=stream,
                                   prompt_tokens=prompt_tokens, **kwargs))


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b'{"error":{}}'
           ) -> FakeResponse:
    return FakeResponse(code, body, headers)


def test_a_retry_goes_to_the_other_deployment_at_once():
    clock = Clock()
    a = ScriptedProvider("a", [status(500)])
    b = ScriptedProvider("b")
    route = make_route("r", Deployment(a, "m"), Deployment(b, "m"))
    served = call(make_router(clock), route)
    assert served.deployment.provider is b
    assert [(x.deployment, x.outcome) for x in served.attempts] == [("a/m", "http_500"),
                                                                     ("b/m", "ok")]
    assert clock.slept == []  # another deployment: no reason to wait


def test_the_same_deployment_is_retried_after_decorrelated_jitter():
    clock = Clock()
    a = ScriptedProvider("a", [status(503), reset(), "ok"])
    route = make_route("r", Deployment(a, "m"))
    served = call(make_router(clock, seed=5), route)
    assert [x.outcome for x in served.attempts] == ["http_503", "unreachable", "ok"]
    rng = random.Random(5)
    first = min(1.0, rng.uniform(0.1, 0.3))
    second = min(1.0, rng.uniform(0.1, max(first, 0.1) * 3))
    assert clock.slept == [round(first, 6), round(second, 6)]


def test_retry_after_is_honoured_when_longer_than_the_backoff():
    clock = Clock()
    a = ScriptedProvider("a", [status(429, {"retry-after-ms": "2500"})])
    served = call(make_router(clock), make_route("r", Deployment(a, "m")))
    assert served.attempts[-1].outcome == "ok"
    assert clock.slept == [2.5]


def test_a_retry_after_beyond_the_cap_moves_on_instead_of_waiting():
    clock = Clock()
    a = ScriptedProvider("a", [status(429, {"retry-after": "60"})])
    fallback = ScriptedProvider("f")
    route = make_route("r", Deployment(a, "m"))
    route.fallbacks.append(make_route("big", Deployment(fallback, "m2")))
    served = call(make_router(clock), route)
    assert served.deployment.provider is fallback and clock.slept == []


def test_a_4xx_that_a_retry_cannot_fix_is_final():
    clock = Clock()
    a = ScriptedProvider("a", [status(400, body=b'{"error":{"code":"invalid_value"}}')])
    route = make_route("r", Deployment(a, "m"))
    route.fallbacks.append(make_route("big", Deployment(ScriptedProvider("f"), "m2")))
    with pytest.raises(TierFailed) as failed:
        call(make_router(clock), route)
    assert failed.value.response is not None and failed.value.response[0] == 400
    assert len(a.calls) == 1


def test_a_context_overflow_falls_back_at_once():
    clock = Clock()
    small = ScriptedProvider("small", [status(
        400, body=b'{"error":{"code":"context_length_exceeded","type":"invalid_request_error"}}')])
    big = ScriptedProvider("big")
    route = make_route("r", Deployment(small, "m"), Deployment(small, "m-other"))
    route.fallbacks.append(make_route("big", Deployment(big, "m-large")))
    served = call(make_router(clock), route)
    assert served.deployment.provider is big and len(small.calls) == 1
    assert [x.outcome for x in served.attempts] == ["context", "ok"]


def test_a_known_context_window_skips_the_small_deployment_before_calling_it():
    clock = Clock()
    small, big = ScriptedProvider("small"), ScriptedProvider("big")
    route = make_route("r", Deployment(small, "m", context_window=1000))
    route.fallbacks.append(make_route("big", Deployment(big, "m", context_window=200_000)))
    served = call(make_router(clock), route, prompt_tokens=5000)
    assert served.deployment.provider is big and small.calls == []


def test_fallback_on_can_exclude_errors():
    clock = Clock()
    a = ScriptedProvider("a", repeat=status(500))
    route = make_route("r", Deployment(a, "m"), fallback_on=("context_window",))
    route.fallbacks.append(make_route("f", Deployment(ScriptedProvider("f"), "m")))
    with pytest.raises(TierFailed) as failed:
        call(make_router(clock), route)
    assert len(a.calls) == 3 and failed.value.response[0] == 500  # type: ignore[index]


def test_attempt_timeout_and_total_deadline():
    clock = Clock()

    async def slow() -> FakeResponse:
        await asyncio.sleep(0.2)
        return FakeResponse(200, OK_BODY)

    a = ScriptedProvider("a", [slow], repeat="ok")
    retry = RetryPolicy(attempts=2, base_ms=0, cap_ms=0, attempt_timeout_s=0.05)
    served = call(make_router(clock), make_route("r", Deployment(a, "m"), retry=retry))
    assert [x.outcome for x in served.attempts] == ["timeout", "ok"]

    b = ScriptedProvider("b", repeat=status(503))
    retry = RetryPolicy(attempts=10, base_ms=1000, cap_ms=1000, total_timeout_s=2.5)
    with pytest.raises(TierFailed) as failed:
        call(make_router(clock), make_route("r", Deployment(b, "m"), retry=retry))
    # 1 s waits: attempts at 0, 1, 2 s; the wait for a fourth would pass the deadline.
    assert len(b.calls) == 3 and len(failed.value.attempts) == 3


def test_a_stream_is_retried_until_its_first_event_only():
    clock = Clock()
    broken = FakeResponse(200, chunks=[reset()])
    good = FakeResponse(200, chunks=[b"data: {\"a\":1}\n\n", b"data: [DONE]\n\n"])
    a = ScriptedProvider("a", [broken, good])
    served = call(make_router(clock), make_route("r", Deployment(a, "m")), stream=True)
    assert served.first == b"data: {\"a\":1}\n\n" and broken.aborted
    assert [x.outcome for x in served.attempts] == ["unreachable", "ok"]


def test_a_malformed_200_is_retried():
    clock = Clock()
    a = ScriptedProvider("a", [FakeResponse(200, b'{"id": "x", "choi')])
    served = call(make_router(clock), make_route("r", Deployment(a, "m")))
    assert [x.outcome for x in served.attempts] == ["malformed", "ok"]


def test_the_breaker_opens_after_repeated_failures_then_probes_and_closes():
    clock = Clock()
    router = make_router(clock, BreakerPolicy(failures=3, window_s=30, cooldown_s=10))
    a = ScriptedProvider("a", repeat=status(500))
    b = ScriptedProvider("b")
    retry = RetryPolicy(attempts=1)
    route = make_route("r", Deployment(a, "m"), Deployment(b, "m"), retry=retry)
    route.fallbacks.append(make_route("f", Deployment(b, "m2"), retry=retry))
    for _ in range(3):
        call(router, route)
    assert len(a.calls) == 3
    assert router.breakers.state("a/m").value == "open"
    for _ in range(5):  # skipped while open
        assert call(router, route).deployment.provider is b
    assert len(a.calls) == 3
    clock.now += 11  # cooled down: one probe goes through, fails, and reopens it
    call(router, route)
    assert len(a.calls) == 4 and router.breakers.state("a/m").value == "open"
    clock.now += 11
    a.repeat = "ok"
    assert call(router, route).deployment.provider is a  # the probe succeeds: closed
    assert router.breakers.state("a/m").value == "closed"


def test_weighted_balancing_follows_the_weights():
    clock = Clock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    route = make_route("r", Deployment(a, "m", weight=3), Deployment(b, "m", weight=1),
                       strategy="weighted")
    router = make_router(clock, seed=11)
    for _ in range(400):
        call(router, route)
    assert 260 <= len(a.calls) <= 340 and len(a.calls) + len(b.calls) == 400


def test_least_busy_picks_the_idle_deployment():
    clock = Clock()
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    da, db = Deployment(a, "m"), Deployment(b, "m")
    da.in_flight = 4
    route = make_route("r", da, db, strategy="least-busy")
    assert call(make_router(clock), route).deployment is db


def test_an_answer_invalid_for_its_schema_is_repaired_once_then_falls_back():
    clock = Clock()
    schema = {"type": "object", "required": ["city"],
              "properties": {"city": {"type": "string"}}}
    judge = judge_for(orjson.dumps({"type": "json_schema",
                                    "json_schema": {"name": "x", "schema": schema}}))
    assert judge is not None

    def answer(content: str) -> FakeResponse:
        return FakeResponse(200, orjson.dumps({"choices": [{"index": 0, "message": {
            "role": "assistant", "content": content}}], "usage": {
            "prompt_tokens": 5, "completion_tokens": 2}}))

    a = ScriptedProvider("a", [answer('{"town": "x"}'), answer('{"city": "Oslo"}')])
    discarded: list[bytes] = []
    route = make_route("r", Deployment(a, "m"))
    served = asyncio.run(make_router(clock).call(
        route, Endpoint.CHAT, lambda d: orjson.dumps({"model": "m", "messages": [
            {"role": "user", "content": "city?"}]}), stream=False, prompt_tokens=5,
        judge=judge, on_discarded=lambda d, body: discarded.append(body)))
    assert served.repaired and served.schema_error is None and len(discarded) == 1
    repair = orjson.loads(a.calls[1][1])  # type: ignore[arg-type]
    assert repair["messages"][-2] == {"role": "assistant", "content": '{"town": "x"}'}
    assert "city" in repair["messages"][-1]["content"]

    b = ScriptedProvider("b", repeat=answer("not json"))
    c = ScriptedProvider("c", repeat=answer('{"city": "Bergen"}'))
    route = make_route("r", Deployment(b, "m"))
    route.fallbacks.append(make_route("smart", Deployment(c, "m")))
    served = asyncio.run(make_router(clock).call(
        route, Endpoint.CHAT, lambda d: orjson.dumps({"model": "m", "messages": [
            {"role": "user", "content": "city?"}]}), stream=False, prompt_tokens=5,
        judge=judge))
    assert served.deployment.provider is c and len(b.calls) == 2  # the answer and its repair


def test_a_deployment_at_its_quota_is_skipped_until_the_window_moves():
    clock = Clock()
    counters = MemoryCounters(clock)
    breakers = Breakers(counters, BreakerPolicy(), clock=clock)
    router = Router(breakers, counters=counters, sleep=clock.sleep, clock=clock,
                    rng=random.Random(1))
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    route = make_route("r", Deployment(a, "m", rpm=2), Deployment(b, "m"))
    served = [asyncio.run(router.call(route, Endpoint.CHAT, lambda d: b"{}", stream=False,
                                      prompt_tokens=1, tokens=10)).deployment.provider.name
              for _ in range(4)]
    assert served == ["a", "a", "b", "b"]
    clock.now += 30  # GCRA: one request's worth of quota back every 30 s
    assert asyncio.run(router.call(route, Endpoint.CHAT, lambda d: b"{}", stream=False,
                                   prompt_tokens=1, tokens=10)).deployment.provider is a
    tpm = make_route("t", Deployment(a, "m", tpm=1000), Deployment(b, "m"))
    first = asyncio.run(router.call(tpm, Endpoint.CHAT, lambda d: b"{}", stream=False,
                                    prompt_tokens=1, tokens=900))
    second = asyncio.run(router.call(tpm, Endpoint.CHAT, lambda d: b"{}", stream=False,
                                     prompt_tokens=1, tokens=900))
    assert (first.deployment.provider, second.deployment.provider) == (a, b)


def test_the_repair_goes_to_the_deployment_that_answered_invalid():
    clock = Clock()
    judge = judge_for(b'{"type": "json_object"}')
    assert judge is not None

    def answer(content: str) -> FakeResponse:
        return FakeResponse(200, orjson.dumps({"choices": [{"index": 0, "message": {
            "role": "assistant", "content": content}}]}))

    a = ScriptedProvider("a", [answer("not json")], repeat=answer('{"ok": true}'))
    b = ScriptedProvider("b", repeat=answer('{"ok": true}'))
    # By latency: a has never been measured, so it goes first; after that b, measured the
    # fastest, would win a free choice, so the repair only stays on a if it is sent there.
    fast = Deployment(b, "m")
    fast.latency_ms = 0.001
    route = make_route("r", Deployment(a, "m"), fast, strategy="latency")
    served = asyncio.run(make_router(clock).call(
        route, Endpoint.CHAT, lambda d: orjson.dumps({"model": "m", "messages": [
            {"role": "user", "content": "json please"}]}), stream=False, prompt_tokens=5,
        judge=judge))
    assert served.repaired and served.deployment.provider is a
    assert len(a.calls) == 2 and b.calls == []
