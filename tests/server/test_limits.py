"""Limits, budgets and allowlists through the real app, on both backends.

Every test runs twice: SQLite + in-process counters, and PostgreSQL + Redis (real servers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from backends import BACKENDS, backend_config
from keystead.keys.format import parse_key
from keystead.runtime import KEYS_VERSION
from keystead.state.records import Limits, TeamRecord
from redis_support import RedisProxy, delete_prefix
from support import AppClient, Reply, make_loaded, running_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
SLOW_STREAMS = {"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini", "gpt-4o"],
                                       "mock": {"chunk_delay_ms": 20}}}}
AppTest = Callable[[AppClient], Awaitable[None]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    with backend_config(request.param) as raw:
        yield raw


def run_app(tmp_path: Path, backend: dict[str, Any], test: AppTest,
            raw: dict[str, Any] | None = None) -> None:
    loaded = make_loaded(tmp_path, raw={**backend, **(raw or {})})

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 60)

    asyncio.run(main())


async def limited_key(client: AppClient, name: str = "prod-search-api", *,
                      team: str | None = None, ip_allowlist: tuple[str, ...] | None = None,
                      **limits: Any) -> str:
    """A key with limits, set through the store as an operator's change would be."""
    rt = client.runtime
    if team is not None and await rt.store.get_team(team) is None:
        await rt.store.insert_team(TeamRecord(name=team))
    text = await client.create_key(name, **({"team": team} if team else {}))
    await rt.store.update_key(parse_key(text).key_id,  # type: ignore[union-attr]
                              limits=Limits(**limits), ip_allowlist=ip_allowlist)
    await rt.changed(KEYS_VERSION)
    return text


async def set_team(client: AppClient, name: str, **fields: Any) -> None:
    rt = client.runtime
    if await rt.store.get_team(name) is None:
        await rt.store.insert_team(TeamRecord(name=name))
    await rt.store.update_team(name, **fields)
    await rt.changed(KEYS_VERSION)


async def chat(client: AppClient, key: str, content: str = "hello", **fields: Any) -> Reply:
    return await client.request("POST", CHAT, key=key, json_body={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **fields})


async def ledger(client: AppClient) -> list[Any]:
    await client.runtime.ledger.flush()
    return list(reversed(await client.runtime.store.recent_usage(10_000)))


def test_rate_limit_headers_on_every_response_and_a_429_with_retry_after(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, rpm=3)
        replies = [await chat(client, key) for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in replies] == ["2", "1", "0"]
        assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in replies)
        assert replies[0].headers["x-ratelimit-reset-requests"] == "20s"
        refused = await chat(client, key)
        assert refused.status == 429
        error = refused.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_exceeded"
        assert "3 requests per minute" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        rows = await ledger(client)
        assert [(r.status, r.error_code) for r in rows][-1] == (429, "rate_limit_exceeded")

    run_app(tmp_path, backend, test)


def test_a_team_limit_is_shared_by_its_keys(tmp_path, backend):
    async def test(client: AppClient) -> None:
        await set_team(client, "search", limits=Limits(rpm=4))
        a = await limited_key(client, "prod-search-api", team="search")
        b = await limited_key(client, "prod-search-batch", team="search", rpm=100)
        statuses = [(await chat(client, k)).status for k in (a, b, a, b, a)]
        assert statuses == [200, 200, 200, 200, 429]
        # The tighter of the key's 100 and the team's 4 is what the headers show.
        other = await limited_key(client, "prod-ads-api", rpm=100)
        assert (await chat(client, other)).headers["x-ratelimit-remaining-requests"] == "99"

    run_app(tmp_path, backend, test)


def test_environment_limits_come_from_the_config(tmp_path, backend):
    async def test(client: AppClient) -> None:
        prod = await limited_key(client, "prod-search-api")
        dev = await limited_key(client, "dev-search-api")
        assert [(await chat(client, dev)).status for _ in range(3)] == [200, 200, 429]
        assert [(await chat(client, prod)).status for _ in range(3)] == [200, 200, 200]

    run_app(tmp_path, backend, test, {"limits": {"environments": {"dev": {"rpm": 2}}}})


def test_token_limit_charges_prompt_plus_max_tokens_up_front(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, tpm=300)
        first = await chat(client, key, max_tokens=200)
        assert first.status == 200
        used = first.json()["usage"]["total_tokens"]
        # Settled to real usage: what is left is the limit minus what the call really used.
        second = await chat(client, key, max_tokens=10)
        assert second.status == 200
        assert int(second.headers["x-ratelimit-remaining-tokens"]) <= 300 - used
        too_big = await chat(client, key, max_tokens=1000)
        assert too_big.status == 429
        assert too_big.headers["x-should-retry"] == "false"
        assert "more than the 300 tokens per minute" in too_big.json()["error"]["message"]

    run_app(tmp_path, backend, test)


def test_concurrency_limit(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, max_parallel=2)
        replies = await asyncio.gather(*(chat(client, key, "[[mock:latency=300]] hi")
                                         for _ in range(4)))
        statuses = sorted(r.status for r in replies)
        assert statuses == [200, 200, 429, 429]
        refused = next(r for r in replies if r.status == 429)
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert (await chat(client, key)).status == 200  # the slots are free again

    run_app(tmp_path, backend, test)


def test_concurrent_requests_never_spend_past_a_budget(tmp_path, backend):
    async def test(client: AppClient) -> None:
        # gpt-4o: $2.50 / $10 per million tokens. A worst case of ~300 output tokens is ~$0.003;
        # the budget affords about 10 of those at once.
        key = await limited_key(client, budget_usd=Decimal("0.03"), budget_period="day")
        replies = await asyncio.gather(*(
            client.request("POST", CHAT, key=key, json_body={
                "model": "gpt-4o", "max_tokens": 300,
                "messages": [{"role": "user", "content": f"[[mock:tokens=250]] q{i}"}]})
            for i in range(40)))
        accepted = [r for r in replies if r.status == 200]
        refused = [r for r in replies if r.status == 429]
        assert accepted and refused and len(accepted) + len(refused) == 40
        spent = sum(Decimal(r.headers["x-keystead-cost-usd"]) for r in accepted)
        assert spent <= Decimal("0.03")
        assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
        assert refused[0].headers["x-should-retry"] == "false"
        rows = await ledger(client)
        assert sum(r.cost_usd for r in rows) == spent
        assert sum(1 for r in rows if r.status == 200) == len(accepted)

    run_app(tmp_path, backend, test)


def test_a_budget_writes_max_tokens_into_requests_without_one(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, budget_usd=Decimal("5"))
        reply = await chat(client, key, "[[mock:tokens=100]] long answer")
        assert reply.status == 200
        # The worst case must be known: limits.default_max_tokens (7 here) was written in.
        assert reply.json()["usage"]["completion_tokens"] == 7

    run_app(tmp_path, backend, test, {"limits": {"default_max_tokens": 7}})


def test_streams_are_charged_including_abandoned_ones(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, budget_usd=Decimal("10"))
        whole = await chat(client, key, "[[mock:tokens=40]] s", stream=True)
        assert whole.status == 200
        cut = await client.request("POST", CHAT, key=key, disconnect_after_chunks=3, json_body={
            "model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "[[mock:tokens=400]] long"}]})
        assert cut.status == 200
        rows = await ledger(client)
        assert [r.status for r in rows] == [200, 499]
        assert all(r.cost_usd > 0 for r in rows)
        pools = await client.runtime.counters.pools("pool:budget:")
        assert len(pools) == 1
        (pool,) = pools.values()
        # What the budget counted is what the ledger holds, to the nano-dollar.
        assert pool.used == int(sum(r.cost_usd for r in rows) * 10**9)
        assert pool.reserved == 0

    run_app(tmp_path, backend, test, SLOW_STREAMS)


def test_a_restart_remembers_what_the_budget_spent(tmp_path, backend):
    loaded = make_loaded(tmp_path, raw=backend)

    async def main() -> None:
        async with running_app(loaded) as client:
            key = await limited_key(client, budget_usd=Decimal("0.002"))
            while (await chat(client, key, max_tokens=50)).status == 200:
                pass
            if "redis" in backend:  # Redis lost everything too: only the ledger is left
                await delete_prefix(backend["redis"]["prefix"])
        async with running_app(loaded) as client:
            refused = await chat(client, key, max_tokens=50)
            assert refused.status == 429
            assert refused.json()["error"]["code"] == "budget_exceeded"

    asyncio.run(main())


def test_ip_allowlists_of_key_and_team(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, team="search", ip_allowlist=("192.0.2.0/24",))
        inside = await client.request("POST", CHAT, key=key, client=("192.0.2.10", 1),
                                      json_body=BODY)
        assert inside.status == 200
        outside = await client.request("POST", CHAT, key=key, client=("198.51.100.1", 1),
                                       json_body=BODY)
        assert outside.status == 403
        assert outside.json()["error"]["code"] == "ip_not_allowed"
        assert "198.51.100.1" in outside.json()["error"]["message"]
        # Both lists apply: the team's narrower one refuses an address the key's allows.
        await set_team(client, "search", ip_allowlist=("192.0.2.128/25",))
        again = await client.request("POST", CHAT, key=key, client=("192.0.2.10", 1),
                                     json_body=BODY)
        assert again.status == 403 and "team search" in again.json()["error"]["message"]
        rows = await ledger(client)
        assert [(r.status, r.client_ip) for r in rows] == [
            (200, "192.0.2.10"), (403, "198.51.100.1"), (403, "192.0.2.10")]

    run_app(tmp_path, backend, test)


def test_forwarded_addresses_count_only_from_trusted_proxies(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, ip_allowlist=("203.0.113.0/24",))
        body = BODY
        via_proxy = await client.request("POST", CHAT, key=key, json_body=body,
                                         client=("10.0.0.5", 1),
                                         headers={"x-forwarded-for": "203.0.113.7, 10.0.0.9"})
        assert via_proxy.status == 200
        spoofed = await client.request("POST", CHAT, key=key, json_body=body,
                                       client=("198.51.100.1", 1),
                                       headers={"x-forwarded-for": "203.0.113.7"})
        assert spoofed.status == 403
        rows = await ledger(client)
        assert [r.client_ip for r in rows] == ["203.0.113.7", "198.51.100.1"]

    run_app(tmp_path, backend, test, {"server": {"trusted_proxies": ["10.0.0.0/8"]}})


def test_status_shows_in_flight_and_the_limits_backend(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client)
        slow = asyncio.ensure_future(chat(client, key, "[[mock:latency=400]] hi"))
        await asyncio.sleep(0.15)
        status = (await client.admin("GET", "/admin/status")).json()
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        assert status["in_flight"] == {key_id: 1}
        assert status["limits"]["backend"] == ("redis" if backend else "memory")
        assert status["limits"]["healthy"] is True
        await slow
        assert (await client.admin("GET", "/admin/status")).json()["in_flight"] == {}

    run_app(tmp_path, backend, test)


def test_error_bodies_are_json_with_the_openai_envelope(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, rpm=1)
        await chat(client, key)
        refused = await chat(client, key)
        document = json.loads(refused.body)
        assert set(document["error"]) == {"message", "type", "param", "code"}
        assert refused.headers["content-type"] == "application/json"

    run_app(tmp_path, backend, test)


def test_redis_outage_fails_budgets_closed_rates_open_and_recovers(tmp_path):
    with backend_config("scaleout") as backend:
        proxy = RedisProxy()

        async def main() -> None:
            await proxy.start()
            backend["redis"]["url"] = proxy.url
            loaded = make_loaded(tmp_path, raw=backend)
            async with running_app(loaded) as client:
                budgeted = await limited_key(client, "prod-billing-api",
                                             budget_usd=Decimal("10"))
                rated = await limited_key(client, "prod-search-api", rpm=3)
                plain = await limited_key(client, "prod-docs-api")
                assert (await chat(client, budgeted)).status == 200
                assert (await chat(client, rated)).status == 200
                await proxy.stop()
                refused = await chat(client, budgeted)
                assert refused.status == 503
                assert refused.json()["error"]["code"] == "limits_unavailable"
                # Rates fail open onto this replica's own counters, still enforced.
                assert [(await chat(client, rated)).status for _ in range(4)] == \
                    [200, 200, 200, 429]
                assert (await chat(client, plain)).status == 200
                status = (await client.admin("GET", "/admin/status")).json()
                assert status["limits"]["healthy"] is False
                assert status["limits"]["refused_outage"] == 1
                await proxy.start()  # same port: Redis is back
                for _ in range(60):
                    status = (await client.admin("GET", "/admin/status")).json()
                    if status["limits"]["healthy"]:
                        break
                    await asyncio.sleep(0.1)
                assert status["limits"]["healthy"] is True, status
                assert (await chat(client, budgeted)).status == 200
                await proxy.stop()

        asyncio.run(main())


def test_a_repeated_client_request_id_cannot_share_a_reservation(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client, budget_usd=Decimal("0.03"), budget_period="day")
        replies = await asyncio.gather(*(
            client.request("POST", CHAT, key=key, headers={"x-request-id": "same"}, json_body={
                "model": "gpt-4o", "max_tokens": 300,
                "messages": [{"role": "user", "content": "[[mock:tokens=250]] q"}]})
            for _ in range(40)))
        accepted = [r for r in replies if r.status == 200]
        assert sum(Decimal(r.headers["x-keystead-cost-usd"]) for r in accepted) <= Decimal("0.03")
        assert {r.headers["x-request-id"] for r in replies} == {"same"}  # still echoed

    run_app(tmp_path, backend, test)


def test_overlong_client_text_never_blocks_the_ledger(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await limited_key(client)
        long_model = await client.request("POST", CHAT, key=key, json_body={
            "model": "m" * 400, "messages": [{"role": "user", "content": "hi"}]})
        # Refused where it enters (no model name is that long), and recorded without it.
        assert long_model.status == 400
        assert long_model.json()["error"]["code"] == "invalid_model_name"
        assert (await chat(client, key)).status == 200
        rows = await ledger(client)
        assert [(r.status, len(r.model_requested or "")) for r in rows] == [(400, 0),
                                                                            (200, 11)]
        # A path carries anything (uvicorn unquotes %00 and %0d%0a): refused, still recorded.
        for model_id in ("gpt\x00x", "gpt\r\nx", "m" * 400):
            reply = await client.request("GET", f"/v1/models/{model_id}", key=key)
            assert reply.status == 404
        rows = await ledger(client)
        assert [r.status for r in rows[2:]] == [404, 404, 404]
        assert client.runtime.ledger.rejected == 0

    run_app(tmp_path, backend, test)


def test_text_for_the_ledger_is_clipped_and_printable() -> None:
    from keystead.pipeline.settle import _clip

    assert _clip("gpt-4o\x00\r\n", 256) == "gpt-4o???"
    assert _clip("m" * 300, 256) == "m" * 256
    assert _clip(None, 5) is None
    assert _clip("claude-3-5-sonnet", 256) == "claude-3-5-sonnet"


UNPRICED = {"providers": {"mock": {"type": "mock",
                                   "models": ["gpt-4o-mini", "house-llama", "house-mistral"]}},
            "prices": {"house-mistral": {"input_per_mtok": "0.10", "output_per_mtok": "0.30"}}}


def test_under_a_budget_a_model_without_a_price_is_refused_before_the_call(tmp_path):
    """Regression (issue 13): a model with no price cost 0 against a budget, so an unscoped key
    under a budget could call anything for free."""

    async def test(client: AppClient) -> None:
        budgeted = await limited_key(client, budget_usd=Decimal("5"))
        plain = await limited_key(client, "prod-docs-api", rpm=100)
        refused = await chat(client, budgeted, model="house-llama", max_tokens=10)
        assert refused.status == 403
        error = refused.json()["error"]
        assert (error["code"], error["type"], error["param"]) == (
            "price_unknown", "permission_error", "model")
        assert "'house-llama' of provider mock has no known price" in error["message"]
        assert "`prices:` in keystead.yaml" in error["message"]
        # A price in the config is a known price; a key without a budget is not concerned.
        priced = await chat(client, budgeted, model="house-mistral", max_tokens=10)
        assert priced.status == 200 and Decimal(priced.headers["x-keystead-cost-usd"]) > 0
        assert (await chat(client, plain, model="house-llama", max_tokens=10)).status == 200
        rows = await ledger(client)
        assert [(r.model_requested, r.status, r.error_code) for r in rows] == [
            ("house-llama", 403, "price_unknown"), ("house-mistral", 200, None),
            ("house-llama", 200, None)]

    run_app(tmp_path, {}, test, UNPRICED)


def test_unpriced_models_allow_lets_them_through_at_a_cost_of_zero(tmp_path):
    async def test(client: AppClient) -> None:
        budgeted = await limited_key(client, budget_usd=Decimal("5"))
        reply = await chat(client, budgeted, model="house-llama", max_tokens=10)
        assert reply.status == 200 and reply.headers["x-keystead-cost-usd"] == "0"

    run_app(tmp_path, {}, test, {**UNPRICED, "limits": {"unpriced_models": "allow"}})


def test_a_budget_to_seed_while_postgresql_is_down_is_a_503_not_a_500(tmp_path):
    """Regression (issue 13): with PostgreSQL down, a budgeted key whose counter needed its
    seed from the ledger got a 500. Real PostgreSQL behind a proxy that goes away."""
    with backend_config("scaleout") as backend:
        parsed = urlsplit(backend["database"]["url"])
        proxy = RedisProxy(target=(parsed.hostname or "127.0.0.1", parsed.port or 5432))

        async def main() -> None:
            await proxy.start()
            url = urlunsplit((parsed.scheme, f"{parsed.username}@127.0.0.1:{proxy.port}",
                              parsed.path, "", ""))
            loaded = make_loaded(tmp_path, raw={"database": {"url": url}})  # in-process counters
            async with running_app(loaded) as client:
                budgeted = await limited_key(client, budget_usd=Decimal("5"))
                await proxy.stop()  # PostgreSQL is gone
                try:
                    refused = await chat(client, budgeted)
                    assert refused.status == 503, refused.body
                    error = refused.json()["error"]
                    assert error["code"] == "limits_unavailable"
                    assert "cannot be counted now" in error["message"]
                    assert "docs/scaling.md" in error["message"]
                    assert refused.headers["retry-after"] == "1"
                finally:
                    await proxy.start()  # back, so that the ledger can be written
                assert (await chat(client, budgeted)).status == 200
            await proxy.stop()

        asyncio.run(main())
