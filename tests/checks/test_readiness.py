"""GET /readyz names the dependency that is down, within about a second, and a probe storm
costs one look a second; /healthz stays a liveness check."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from keystead.checks import readiness
from keystead.reload import ReloadResult
from redis_support import RedisProxy, delete_prefix, fresh_prefix, require_redis
from support import AppClient, make_loaded, running_app


def _run(tmp_path: Path, raw: dict[str, Any] | None, test: Any) -> None:
    async def main() -> None:
        async with running_app(make_loaded(tmp_path, raw)) as client:
            await asyncio.wait_for(test(client), 60)
    asyncio.run(main())


async def _ready(client: AppClient) -> tuple[int, dict[str, Any]]:
    reply = await client.request("GET", "/readyz")
    return reply.status, reply.json()


def test_ready_when_every_dependency_answers(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        assert await _ready(client) == (200, {"status": "ready", "checks": {
            "database": "ok", "usage_ledger": "ok", "config": "ok"}})
        health = await client.request("GET", "/healthz")
        assert (health.status, health.json()) == (200, {"status": "ok"})
    _run(tmp_path, None, test)


def test_a_hung_database_answers_503_within_a_second_and_storms_cost_one_look(
        tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        store: Any = client.runtime.store
        looks = 0

        async def hung(name: str) -> int:
            nonlocal looks
            looks += 1
            await asyncio.sleep(3600)
            return 0

        store.get_version = hung
        started = time.monotonic()
        replies = await asyncio.gather(*(client.request("GET", "/readyz") for _ in range(50)))
        assert time.monotonic() - started < 1.5
        assert looks == 1
        for reply in replies:
            assert reply.status == 503
            assert reply.json()["checks"]["database"] == "down: no answer within 0.8 s"
            assert reply.json()["status"] == "unavailable"
        await client.request("GET", "/readyz")  # cached: no second look within a second
        assert looks == 1
        health = await client.request("GET", "/healthz")  # liveness is not readiness
        assert health.status == 200
    _run(tmp_path, None, test)


def test_the_usage_backlog_and_a_refused_reload_degrade(tmp_path: Path) -> None:
    raw = {"usage": {"queue_max": 10, "batch_size": 1000, "flush_interval_s": 3600}}

    async def test(client: AppClient) -> None:
        runtime = client.runtime
        from keystead.state.records import UsageRecord

        for i in range(6):
            runtime.ledger.record(UsageRecord(request_id=f"r{i}", ts=time.time(),
                                              endpoint="chat.completions", status=200))
        runtime.reloader.last = ReloadResult("host:1", "sighup", False, "abc",
                                             error="routes.x: unknown provider 'y'")
        status, body = await _ready(client)
        assert status == 200 and body["status"] == "degraded"
        assert body["checks"]["usage_ledger"].startswith("degraded: 6 usage records")
        assert body["checks"]["config"].startswith("degraded: the last reload was refused")
        assert "unknown provider 'y'" in body["checks"]["config"]
        assert body["checks"]["database"] == "ok"
    _run(tmp_path, raw, test)


def test_redis_down_is_named(tmp_path: Path) -> None:
    require_redis()
    prefix = fresh_prefix()

    async def main() -> None:
        async with RedisProxy() as proxy:
            raw = {"redis": {"url": proxy.url, "prefix": prefix, "timeout_s": 0.3,
                             "connect_timeout_s": 0.3}}
            async with running_app(make_loaded(tmp_path, raw)) as client:
                assert await _ready(client) == (200, {"status": "ready", "checks": {
                    "database": "ok", "redis": "ok", "usage_ledger": "ok", "config": "ok"}})
                await proxy.stop()
                await asyncio.sleep(readiness.CACHE_S + 0.05)
                started = time.monotonic()
                status, body = await _ready(client)
                assert time.monotonic() - started < 1.5
                assert status == 503 and body["status"] == "unavailable"
                assert body["checks"]["redis"].startswith("down")
                assert body["checks"]["database"] == "ok"
                await proxy.start()
        await delete_prefix(prefix)
    asyncio.run(main())


def test_postgresql_down_is_named_without_its_password(tmp_path: Path) -> None:
    import pg

    pg.require_pg()
    with pg.fresh_database("keystead_r") as url:
        target = make_url(url)

        async def main() -> None:
            proxy = RedisProxy(target=(target.host or "127.0.0.1", target.port or 5432))
            await proxy.start()
            try:
                proxied = target.set(host="127.0.0.1", port=proxy.port)
                raw = {"database": {"url": proxied.render_as_string(hide_password=False)}}
                async with running_app(make_loaded(tmp_path, raw)) as client:
                    assert (await _ready(client))[0] == 200
                    await proxy.stop()
                    await asyncio.sleep(readiness.CACHE_S + 0.05)
                    reply = await client.request("GET", "/readyz")
                    body = reply.json()
                    assert reply.status == 503
                    assert body["checks"]["database"].startswith("down")
                    if target.password:
                        assert target.password not in reply.body.decode()
                    await proxy.start()  # back, for the shutdown's last ledger write
            finally:
                await proxy.stop()
        asyncio.run(main())


def test_a_reason_never_carries_a_password() -> None:
    error = OSError("cannot connect to postgresql://app:hunter2@db.internal:5432/keystead\nmore")
    reason = readiness._reason(error)
    assert "hunter2" not in reason and "app:***@db.internal" in reason
    assert "\n" not in reason and len(readiness._reason(OSError("x" * 5000))) <= 160


def test_a_password_with_a_slash_or_an_at_sign_or_in_a_dsn_is_masked() -> None:
    for text in ("cannot connect to postgresql://app:hun/ter2@db:5432/keystead",
                 "cannot connect to postgresql://app:hun@ter2@db:5432/keystead",
                 "connect failed: host=db user=app password=hunter2 dbname=keystead",
                 "redis://default:hunter2@redis:6379/0 refused"):
        reason = readiness._reason(OSError(text))
        assert "hunter2" not in reason and "ter2" not in reason, reason
        assert "***" in reason


def test_readyz_before_startup_is_503(tmp_path: Path) -> None:
    from keystead.server.app import create_app
    from support import AppClient as Client

    async def main() -> None:
        client = Client(create_app(make_loaded(tmp_path)))
        reply = await client.request("GET", "/readyz")
        assert (reply.status, json.loads(reply.body)) == (503, {"status": "starting"})
        assert (await client.request("GET", "/healthz")).status == 200
    asyncio.run(main())
