"""Scrape-time gauges through the real app: budgets, breakers, provider keys, health, and the
hook other parts add families with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from metrics_support import scrape, total
from prometheus_client.core import GaugeMetricFamily, Metric

from keystead.keys.format import parse_key
from keystead.metrics.health import CachedPing
from keystead.runtime import KEYS_VERSION
from keystead.state.records import Limits, TeamRecord
from support import AppClient, run_in_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def limited_key(client: AppClient, name: str, team: str | None = None,
                      **limits: object) -> str:
    rt = client.runtime
    if team is not None and await rt.store.get_team(team) is None:
        await rt.store.insert_team(TeamRecord(name=team, limits=Limits(
            budget_usd=Decimal("50"), budget_period="day")))
    text = await client.create_key(name, **({"team": team} if team else {}))
    await rt.store.update_key(parse_key(text).key_id,  # type: ignore[union-attr]
                              limits=Limits(**limits))  # type: ignore[arg-type]
    await rt.changed(KEYS_VERSION)
    return text


def test_budgets_used_and_left_per_key_team_and_env(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await limited_key(client, "prod-search-api", team="search",
                                budget_usd=Decimal("10"))
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        for _ in range(3):
            assert (await client.request("POST", CHAT, json_body=BODY, key=key)).status == 200
        await client.runtime.ledger.flush()
        spent = await client.runtime.store.spend_nanousd("key", key_id, 0.0) / 1e9
        samples = await scrape(client)
        used = total(samples, "keystead_budget_used_usd", scope="key", name=key_id)
        assert used > 0 and used == pytest.approx(spent)  # what the ledger holds
        assert total(samples, "keystead_budget_limit_usd", scope="key", name=key_id) == 10
        assert total(samples, "keystead_budget_left_usd", scope="key", name=key_id) == \
            pytest.approx(10 - used)
        assert total(samples, "keystead_budget_limit_usd", scope="team", name="search") == 50
        assert total(samples, "keystead_budget_used_usd", scope="team", name="search") == \
            pytest.approx(used)
        assert total(samples, "keystead_budget_limit_usd", scope="env", name="prod") == 100

    run_in_app(tmp_path, test, raw={"limits": {"environments": {
        "prod": {"budget_usd": 100, "budget_period": "month"}}}})


def test_a_refusal_is_counted_by_the_scope_that_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await limited_key(client, "prod-search-api", rpm=1)
        assert (await client.request("POST", CHAT, json_body=BODY, key=key)).status == 200
        refused = await client.request("POST", CHAT, json_body=BODY, key=key)
        assert refused.status == 429
        samples = await scrape(client)
        assert total(samples, "keystead_limit_refusals_total", scope="key", reason="rate") == 1
        assert total(samples, "keystead_requests_total", status="429") == 1

    run_in_app(tmp_path, test)


def test_breaker_states_per_deployment(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        rt = client.runtime
        for _ in range(2):
            await rt.breakers.failure("mock/gpt-4o")
        samples = await scrape(client)
        assert total(samples, "keystead_breaker_state", deployment="mock/gpt-4o",
                     state="open") == 1
        assert total(samples, "keystead_breaker_state", deployment="mock/gpt-4o-mini",
                     state="closed") == 1
        assert total(samples, "keystead_breaker_state", deployment="mock/gpt-4o-mini") == 1

    run_in_app(tmp_path, test, raw={
        "routes": {"support": {"deployments": [{"provider": "mock", "model": "gpt-4o-mini"},
                                               {"provider": "mock", "model": "gpt-4o"}]}},
        "routing": {"breaker": {"failures": 2, "window_s": 60, "cooldown_s": 60}}})


def test_provider_key_states_by_label_never_the_key(tmp_path: Path) -> None:
    secrets = {"POOL_KEY_1": "sk-pool-key-1-0123456789abcdefghij",
               "POOL_KEY_2": "sk-pool-key-2-0123456789abcdefghij"}

    async def test(client: AppClient) -> None:
        pool = client.runtime.providers.providers["pool"].keys
        pool.refused(pool.keys[1], 401)
        reply = await client.request("GET", "/metrics")
        for secret in secrets.values():
            assert secret not in reply.body.decode()
        samples = await scrape(client)
        assert total(samples, "keystead_provider_key_state", provider="pool", key="#1",
                     state="active") == 1
        assert total(samples, "keystead_provider_key_state", provider="pool", key="#2",
                     state="disabled") == 1
        assert total(samples, "keystead_provider_key_state", provider="pool") == 2

    run_in_app(tmp_path, test, env=secrets, raw={"providers": {"pool": {
        "type": "mock", "models": ["pool-model"],
        "api_keys": ["${POOL_KEY_1}", "${POOL_KEY_2}"]}}})


def test_other_parts_add_scrape_time_families(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        def checks() -> Iterator[Metric]:
            family = GaugeMetricFamily("keystead_example_up", "A part's own gauge.",
                                       labels=("check",))
            family.add_metric(("route/support",), 1.0)
            yield family

        def broken() -> Iterator[Metric]:
            raise RuntimeError("a collector that fails")
            yield  # pragma: no cover

        client.runtime.metrics.add_collector(checks)
        client.runtime.metrics.add_collector(broken)
        samples = await scrape(client)
        assert total(samples, "keystead_example_up", check="route/support") == 1
        assert total(samples, "keystead_build_info") == 1  # the rest still answers

    run_in_app(tmp_path, test)


def test_the_latest_synthetic_checks_are_gauges_per_target(tmp_path: Path) -> None:
    raw = {"providers": {
        "broken": {"type": "mock", "models": ["gpt-4o-mini"], "mock": {"faults": "500*"}},
        "mock": {"type": "mock", "models": ["gpt-4o"]}},
        "routes": {"chat": {"deployments": [{"provider": "mock", "model": "gpt-4o"}]},
                   "dead": {"deployments": [{"provider": "broken", "model": "gpt-4o-mini"}]}}}

    async def test(client: AppClient) -> None:
        from keystead.checks.run import CheckRunner

        assert total(await scrape(client), "keystead_check_up") == 0  # none ran yet
        before = time.time()
        await CheckRunner(client.runtime).run([], ["chat", "dead"])
        samples = await scrape(client)
        assert total(samples, "keystead_check_up", target="route:chat", kind="route") == 1
        assert total(samples, "keystead_check_up", target="route:dead", kind="route") == 0
        assert total(samples, "keystead_check_latency_seconds", target="route:chat") > 0
        assert total(samples, "keystead_check_timestamp_seconds",
                     target="route:dead") >= before
        # the mock's x-ratelimit-remaining-* headers, as numbers
        assert total(samples, "keystead_check_ratelimit_remaining", target="route:chat",
                     limit="requests") > 0
        assert total(samples, "keystead_check_ratelimit_remaining", target="route:chat",
                     limit="tokens") > 0

    run_in_app(tmp_path, test, raw=raw)


def test_config_generation_counts_rebuilds(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        before = total(await scrape(client), "keystead_config_generation")
        await client.runtime.reload_providers()
        assert total(await scrape(client), "keystead_config_generation") == before + 1

    run_in_app(tmp_path, test)


def test_a_ping_that_hangs_is_down_and_its_answer_is_kept() -> None:
    now = [0.0]
    calls = [0]

    async def hang() -> None:
        calls[0] += 1
        await asyncio.sleep(60)

    async def main() -> None:
        ping = CachedPing(hang, timeout_s=0.05, keep_s=5.0, clock=lambda: now[0])
        results = await asyncio.gather(*(ping.up() for _ in range(20)))  # a scrape storm
        assert results == [False] * 20 and calls[0] == 1
        now[0] = 6.0
        assert await ping.up() is False and calls[0] == 2

    asyncio.run(main())
