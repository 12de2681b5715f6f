"""CheckRunner on a running gateway: provider keys pinned one by one, routes through the
router (fallbacks included), timeouts, embedding-only models, the ledger, the admin API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from keystead.checks.ratelimit import MAX_HEADERS, rate_limit_headers
from keystead.checks.run import CheckRunner
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from support import AppClient, make_loaded, running_app, serving_asgi, serving_http

GOOD = "sk-runner-good-0123456789abcdef"
BAD = "sk-runner-bad-0123456789abcdef"


def _run(tmp_path: Path, raw: dict[str, Any], test: Any, env: dict[str, str] | None = None,
         ) -> None:
    async def main() -> None:
        async with running_app(make_loaded(tmp_path, raw, env)) as client:
            await asyncio.wait_for(test(client), 60)
    asyncio.run(main())


def test_every_key_is_checked_alone_and_the_refused_one_is_named(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving_asgi(create_mock_app(MockSettings(api_key=GOOD))) as base:
            raw = {"providers": {"pool": {
                "type": "openai-compatible", "base_url": base + "/v1",
                "models": ["gpt-4o-mini"], "api_keys": ["${GOOD}", "${BAD}"]}}}
            async with running_app(make_loaded(tmp_path, raw, {"GOOD": GOOD, "BAD": BAD})) \
                    as client:
                results = await CheckRunner(client.runtime).run(["pool"])
                assert [(r.target, r.ok, r.status, r.error) for r in results] == [
                    ("provider:pool#1", True, 200, None),
                    ("provider:pool#2", False, 401, "http_401")]
                assert "invalid_api_key" in results[1].detail
                assert all(GOOD not in r.detail and BAD not in r.detail for r in results)
                # pinned: nothing taken out of rotation by a check
                pool = client.runtime.providers.providers["pool"].keys
                assert [k.state for k in pool.keys] == ["active", "active"]
    asyncio.run(main())


def test_a_route_check_goes_through_the_router_to_the_fallback(tmp_path: Path) -> None:
    raw = {"providers": {
        "broken": {"type": "mock", "models": ["gpt-4o-mini"],
                   "mock": {"faults": "500*"}},
        "mock": {"type": "mock", "models": ["gpt-4o"]}},
        "routes": {"chat": {"deployments": [{"provider": "broken", "model": "gpt-4o-mini"}],
                            "fallbacks": ["backup"]},
                   "backup": {"deployments": [{"provider": "mock", "model": "gpt-4o"}]},
                   "dead": {"deployments": [{"provider": "broken", "model": "gpt-4o-mini"}]}}}

    async def test(client: AppClient) -> None:
        results = await CheckRunner(client.runtime).run([], ["chat", "dead"])
        chat, dead = results
        assert (chat.target, chat.ok, chat.deployment, chat.model) == (
            "route:chat", True, "mock/gpt-4o", "gpt-4o")
        assert chat.rate_limits["x-ratelimit-limit-requests"] == "10000"
        assert (dead.target, dead.ok, dead.status, dead.error) == (
            "route:dead", False, 500, "http_500")
        assert "broken/gpt-4o-mini" in dead.detail
        assert client.runtime.checks["route:chat"] is chat
    _run(tmp_path, raw, test)


def test_a_check_that_takes_too_long_is_a_timeout(tmp_path: Path) -> None:
    raw = {"providers": {"slow": {"type": "mock", "models": ["gpt-4o-mini"],
                                  "mock": {"latency_ms": 5000}}},
           "checks": {"timeout": "0.3s"}}

    async def test(client: AppClient) -> None:
        started = time.monotonic()
        (result,) = await CheckRunner(client.runtime).run(["slow"])
        assert time.monotonic() - started < 2
        assert (result.ok, result.status, result.error) == (False, None, "timeout")
        assert "0.3 s" in result.detail
    _run(tmp_path, raw, test)


def test_an_embedding_only_provider_gets_the_smallest_embedding(tmp_path: Path) -> None:
    raw = {"providers": {"embed": {"type": "mock", "models": ["text-embedding-3-small"]}}}

    async def test(client: AppClient) -> None:
        (result,) = await CheckRunner(client.runtime).run(["embed"])
        assert (result.ok, result.model) == (True, "text-embedding-3-small")
        provider = client.runtime.providers.providers["embed"]
        sent = provider.transport.app.received[-1]  # type: ignore[attr-defined]
        assert sent.path.endswith("/embeddings")
    _run(tmp_path, raw, test)


def test_the_cost_is_in_the_ledger_under_synthetic_check_and_charges_no_budget(
        tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        runtime = client.runtime
        (result,) = await CheckRunner(runtime).run()
        assert result.cost_usd > 0
        await runtime.ledger.flush()
        (record,) = await runtime.store.recent_usage(10)
        assert (record.feature, record.key_id, record.team, record.env) == (
            "synthetic-check", None, None, None)
        assert (record.prompt_tokens > 0, record.completion_tokens) == (True, 1)
        assert record.cost_usd == result.cost_usd
    _run(tmp_path, {}, test)


def test_record_cost_off_leaves_the_ledger_alone(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        await CheckRunner(client.runtime).run()
        await client.runtime.ledger.flush()
        assert await client.runtime.store.recent_usage(10) == []
    _run(tmp_path, {"checks": {"record_cost": False}}, test)


def test_admin_api_runs_checks_and_shows_the_latest(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        reply = await client.admin("POST", "/admin/checks", {})
        assert reply.status == 200, reply.body
        found = reply.json()
        assert found["ok"] is True and found["results"][0]["target"] == "provider:mock"
        latest = await client.admin("GET", "/admin/checks")
        assert [r["target"] for r in latest.json()] == ["provider:mock"]
        missing = await client.admin("POST", "/admin/checks", {"providers": ["nope"]})
        assert missing.status == 404
        hostile = await client.admin("POST", "/admin/checks", {"routes": ["a\x00b"]})
        assert hostile.status == 400
        too_long = await client.admin("POST", "/admin/checks", {"routes": ["x" * 5000]})
        assert too_long.status == 400
        unknown = await client.admin("POST", "/admin/checks", {"targets": []})
        assert unknown.status == 400
        denied = await client.request("POST", "/admin/checks", json_body={})
        assert denied.status == 401
    _run(tmp_path, {}, test)


def test_rate_limit_headers_are_bounded_and_printable() -> None:
    headers = {"X-RateLimit-Remaining-Requests": "42", "retry-after": "7",
               "x-ratelimit-reset-tokens": "bad\u00e9value", "x-ratelimit-limit-tokens": "9" * 500,
               "anthropic-ratelimit-tokens-remaining": " 10 ", "content-type": "text/plain",
               "x-ratelimit-": "", **{f"x-ratelimit-extra-{i}": str(i) for i in range(100)}}
    found = rate_limit_headers(headers)
    assert found["x-ratelimit-remaining-requests"] == "42"
    assert found["retry-after"] == "7"
    assert found["anthropic-ratelimit-tokens-remaining"] == "10"
    assert "x-ratelimit-reset-tokens" not in found  # not ASCII
    assert "x-ratelimit-limit-tokens" not in found  # too long
    assert "content-type" not in found
    assert len(found) == MAX_HEADERS


def test_a_hostile_model_name_and_a_long_route_name_do_not_break_the_admin_api(
        tmp_path: Path) -> None:
    # The model is the upstream's text: an escape sequence, a line break, 300 characters.
    evil = "gpt-\x1b[31mRED\x1b[0m\n" + "x" * 300
    route = "r" * 128  # the longest route name the config accepts

    async def chat(request: Any) -> Any:
        from aiohttp import web

        return web.json_response({
            "id": "c1", "object": "chat.completion", "model": evil,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "pong"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def main() -> None:
        from aiohttp import web

        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", chat)
        async with serving_http(upstream) as base:
            raw = {"providers": {"up": {"type": "openai-compatible", "base_url": base + "/v1",
                                        "models": ["gpt-4o-mini"]}},
                   "routes": {route: {"deployments": [{"provider": "up",
                                                       "model": "gpt-4o-mini"}]}}}
            async with running_app(make_loaded(tmp_path, raw)) as client:
                reply = await client.admin("POST", "/admin/checks", {})
                assert reply.status == 200, reply.body
                results = reply.json()["results"]
                assert [r["target"] for r in results] == [
                    "provider:mock", "provider:up", f"route:{route}"]
                for result in results[1:]:
                    assert result["ok"] and len(result["model"]) <= 256
                    assert result["model"].isprintable() and "\x1b" not in result["model"]
                latest = await client.admin("GET", "/admin/checks")
                assert latest.status == 200 and len(latest.json()) == 3
    asyncio.run(main())


def test_a_target_the_config_no_longer_has_leaves_the_metrics(tmp_path: Path) -> None:
    # A removed route's last result would stay on the gateway: keystead_check_up of a target
    # that no longer exists, paging forever (or, passing, turning into a stale-check alert).
    routes = {"old": {"deployments": [{"provider": "mock", "model": "gpt-4o-mini"}]},
              "new": {"deployments": [{"provider": "mock", "model": "gpt-4o"}]}}

    async def test(client: AppClient) -> None:
        await CheckRunner(client.runtime).run()
        assert {"route:old", "route:new"} <= set(client.runtime.checks)
        fresh = make_loaded(tmp_path, {"routes": {"new": routes["new"]}})
        await client.runtime.apply_config(fresh, "digest2")
        await CheckRunner(client.runtime).run()
        assert "route:old" not in client.runtime.checks
        scraped = (await client.request("GET", "/metrics")).body.decode()
        assert 'target="route:new"' in scraped and 'target="route:old"' not in scraped
        latest = await client.admin("GET", "/admin/checks")
        assert "route:old" not in {r["target"] for r in latest.json()}

    _run(tmp_path, {"routes": routes}, test)
