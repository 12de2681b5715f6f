"""Reloading the config file in a running gateway (issue 12, item 4): the new config applies to
new requests, requests in flight finish on the one they started with, a bad file changes
nothing and says what to fix, and settings only a restart can change are kept and listed.

The app runs in-process on a real config file (and its SQLite store); a reload is what SIGHUP,
`POST /admin/reload` and a change notice all end in: `Reloader.reload`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from keystead.config.load import load_config
from keystead.vault.envelope import MasterKey
from support import ADMIN_TOKEN, running_app, serving_http

Write = Callable[..., Path]
ANSWER = (b'{"id":"c1","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}')


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Writes keystead.yaml (a mock provider, SQLite in tmp_path, the base sections merged with
    the given ones) and returns its path; the secrets come from the environment, as a user's."""
    monkeypatch.setenv("KEYSTEAD_MASTER_KEY", MasterKey.generate_text())
    monkeypatch.setenv("KEYSTEAD_ADMIN_TOKEN", ADMIN_TOKEN)
    path = tmp_path / "keystead.yaml"

    def write(**sections: Any) -> Path:
        raw: dict[str, Any] = {
            "database": {"url": f"sqlite:///{tmp_path / 'keystead.db'}"},
            "vault": {"master_key": "${KEYSTEAD_MASTER_KEY}"},
            "admin": {"token": "${KEYSTEAD_ADMIN_TOKEN}"},
            "providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"]}},
            "usage": {"flush_interval_s": 0.05},
        }
        for section, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(section), dict):
                raw[section] = {**raw[section], **value}
            else:
                raw[section] = value
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


def chat(model: str, content: str = "hello") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def ledger_costs(db: Path) -> dict[str, int]:
    """request id -> recorded cost in nano-USD, read from the SQLite file."""
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT request_id, cost_nanousd FROM usage"))
    finally:
        conn.close()


def test_a_request_in_flight_finishes_on_the_config_it_started_with(
        write_config: Write, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old_price = {"input_per_mtok": 1000, "output_per_mtok": 1000}
    path = write_config(
        providers={"mock": {"type": "mock", "models": ["gpt-4o-mini"]},
                   "slow": {"type": "mock", "models": ["slow-model"]}},
        prices={"slow-model": old_price}, logging={"requests": True})
    caplog.set_level(logging.INFO, logger="keystead.request")
    ids: dict[str, str] = {}

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            key = await client.create_key("dev-reload-app")
            # The provider is slow for this request: it is in flight while the file changes.
            in_flight = asyncio.ensure_future(client.request(
                "POST", "/v1/chat/completions", key=key,
                json_body=chat("slow-model", "[[mock:latency=600]] hi")))
            await asyncio.sleep(0.2)
            assert not in_flight.done()
            # The slow provider is gone, its model's price is five times higher, and requests
            # are no longer logged.
            write_config(prices={"slow-model": {"input_per_mtok": 5000, "output_per_mtok": 5000}},
                         logging={"requests": False})
            result = await client.runtime.reloader.reload("test")
            assert result.ok, result
            assert {"providers.slow", "prices.slow-model", "logging.requests"} \
                <= set(result.changed)

            reply = await in_flight
            assert reply.status == 200, reply.body  # its provider was removed under it
            usage = reply.json()["usage"]
            ids["old"] = reply.headers["x-request-id"]
            ids["tokens"] = str(usage["prompt_tokens"] + usage["completion_tokens"])
            expected = Decimal(ids["tokens"]) * 1000 / 10**6  # the price it started with
            assert Decimal(reply.headers["x-keystead-cost-usd"]) == expected

            after = await client.request("POST", "/v1/chat/completions", key=key,
                                         json_body=chat("slow-model"))
            assert after.status == 404 and after.json()["error"]["code"] == "model_not_found"
            # What stays serves on: the other provider answers as before.
            still = await client.request("POST", "/v1/chat/completions", key=key,
                                         json_body=chat("gpt-4o-mini"))
            assert still.status == 200, still.body
            ids["new"] = still.headers["x-request-id"]

    asyncio.run(main())
    costs = ledger_costs(tmp_path / "keystead.db")  # written by the shutdown at the latest
    assert costs[ids["old"]] == int(ids["tokens"]) * 1000 * 1000  # nano-USD at the old price
    assert ids["new"] in costs
    logged = [r.getMessage() for r in caplog.records if r.name == "keystead.request"]
    assert any(ids["old"] in line for line in logged)  # logged, as when it started
    assert not any(ids["new"] in line for line in logged)


def test_a_bad_file_is_refused_and_the_running_config_kept(write_config: Write) -> None:
    path = write_config(routes={"support": {"deployments": [
        {"provider": "mock", "model": "gpt-4o-mini"}]}})

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            key = await client.create_key("dev-reload-bad")
            running = client.runtime.live
            path.write_text(path.read_text() + "limits:\n  replicas: 0\n  rpn: 5\n")
            result = await client.runtime.reloader.reload("test")
            assert not result.ok
            assert result.error is not None
            # It names the file, each key and its fix, and says nothing changed.
            assert str(path) in result.error
            assert "limits.replicas: Input should be greater than or equal to 1" in result.error
            assert "limits.rpn: unknown setting (misspelt?" in result.error
            assert "running config is kept" in result.error
            assert client.runtime.live is running
            assert result.digest == running.digest  # the digest of what still runs
            reply = await client.request("POST", "/v1/chat/completions", key=key,
                                         json_body=chat("support"))
            assert reply.status == 200, reply.body

            path.write_text("providers: [unclosed\n")
            assert not (await client.runtime.reloader.reload("test")).ok
            path.unlink()
            gone = await client.runtime.reloader.reload("test")
            assert not gone.ok and gone.error is not None and "does not exist" in gone.error
            assert client.runtime.live is running

    asyncio.run(main())


def test_a_yaml_error_does_not_echo_the_line_it_found(write_config: Write) -> None:
    path = write_config()

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            # A raw secret in a line that does not parse: the message points at it, never
            # quotes it (the reload's event and the admin answer carry the message).
            path.write_text(path.read_text().replace(
                "type: mock", 'type: mock\n    api_key: "sk-live-42x', 1))
            result = await client.runtime.reloader.reload("test")
            assert not result.ok and result.error is not None
            assert "sk-live-42x" not in result.error
            assert "line" in result.error and "not valid YAML" in result.error

    asyncio.run(main())


def test_settings_only_a_restart_changes_are_kept_and_listed(write_config: Write) -> None:
    path = write_config(server={"port": 8080})

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            write_config(server={"port": 9999, "max_body_bytes": 4096},
                         usage={"flush_interval_s": 0.05, "batch_size": 7},
                         limits={"lease_s": 5, "default_max_tokens": 100})
            result = await client.runtime.reloader.reload("test")
            assert result.ok, result
            assert result.restart_needed == ["server.port", "limits.lease_s",
                                             "usage.batch_size"]
            assert set(result.changed) == {"server.max_body_bytes", "limits.default_max_tokens"}
            config = client.runtime.config
            assert config.server.port == 8080 and config.usage.batch_size == 500
            assert config.limits.lease_s == 30 and client.runtime.limiter.config.lease_s == 30
            assert config.server.max_body_bytes == 4096
            assert config.limits.default_max_tokens == 100

    asyncio.run(main())


def test_limits_and_guardrails_change_for_the_next_request(write_config: Write) -> None:
    path = write_config(limits={"environments": {"dev": {"rpm": 1}}})

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            key = await client.create_key("dev-reload-limits")
            secret = "my key is sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 3

            async def send(content: str = "hello") -> Any:
                return await client.request("POST", "/v1/chat/completions", key=key,
                                            json_body=chat("gpt-4o-mini", content))

            assert (await send()).status == 200
            refused = await send()
            assert refused.status == 429 and "environment dev" in refused.json()["error"][
                "message"]
            # (A higher rpm would pass once the minute's backlog drained: GCRA keeps what was
            # spent. Without the limit the next request passes at once.)
            write_config(limits={"environments": {}},
                         guardrails={"default": {"secrets": "block"}})
            result = await client.runtime.reloader.reload("test")
            assert set(result.changed) == {"limits.environments", "guardrails.default"}
            assert (await send()).status == 200
            blocked = await send(secret)
            assert blocked.status == 400, blocked.body
            assert blocked.json()["error"]["code"] == "content_blocked"

    asyncio.run(main())


def test_the_logging_level_changes_on_reload(write_config: Write) -> None:
    path = write_config(logging={"level": "info"})
    root = logging.getLogger()
    before = root.level

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            write_config(logging={"level": "error"})
            result = await client.runtime.reloader.reload("test")
            assert result.changed == ["logging.level"]
            assert root.level == logging.ERROR

    try:
        asyncio.run(main())
    finally:
        root.setLevel(before)


def test_an_env_file_value_is_read_again_and_the_real_environment_wins(
        write_config: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELOAD_MODEL", "from-dotenv-1")  # as the .env had set it at start
    monkeypatch.setenv("RELOAD_REAL", "from-environment")  # set by the real environment
    dotenv = tmp_path / ".env"
    dotenv.write_text("RELOAD_MODEL=from-dotenv-1\nRELOAD_REAL=from-dotenv\n")
    path = write_config(providers={"mock": {"type": "mock",
                                            "models": ["${RELOAD_MODEL}", "${RELOAD_REAL}"]}})

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            dotenv.write_text("RELOAD_MODEL=from-dotenv-2\nRELOAD_REAL=changed-in-dotenv\n")
            result = await client.runtime.reloader.reload("test")
            assert result.changed == ["providers.mock"], result
            models = client.runtime.config.providers["mock"].models
            assert models == ("from-dotenv-2", "from-environment")

    asyncio.run(main())
    assert os.environ["RELOAD_MODEL"] == "from-dotenv-2"  # provider refs (env:VAR) see it too


def test_admin_reload_answers_with_this_gateway_and_the_file_digest(write_config: Write) -> None:
    path = write_config()

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            write_config(routes={"new-route": {"deployments": [
                {"provider": "mock", "model": "gpt-4o-mini"}]}})
            reply = await client.admin("POST", "/admin/reload")
            assert reply.status == 200, reply.body
            answer = reply.json()
            assert answer["ok"] is True and answer["trigger"] == "admin-api"
            assert answer["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            assert answer["changed"] == ["routes.new-route"]
            assert answer["others"].startswith("asked through the store")
            events = await client.admin("GET", "/admin/events?kind=config.reload")
            assert [e["detail"]["digest"] for e in events.json()] == [answer["digest"]]
            assert events.json()[0]["actor"] == "admin-api"

            path.write_text(path.read_text().replace("routes:", "routez:"))
            refused = await client.admin("POST", "/admin/reload")
            assert refused.status == 400, refused.body
            error = refused.json()["error"]
            assert error["code"] == "config_invalid"
            assert "routez: unknown setting" in error["message"]
            assert "running config is kept" in error["message"]
            assert client.runtime.routes.routes.keys() == {"new-route"}

    asyncio.run(main())


def test_a_reload_asked_of_one_gateway_reaches_another_on_the_store(
        write_config: Write, tmp_path: Path) -> None:
    """Two gateways on one store, each with a file of its own (as on two machines): the one
    asked reloads, the other re-reads its own file at its next poll of the store."""
    first = write_config()
    second = tmp_path / "other" / "keystead.yaml"
    second.parent.mkdir()
    second.write_text(first.read_text())

    async def main() -> None:
        async with running_app(load_config(first)) as one, \
                running_app(load_config(second)) as two:
            raw = yaml.safe_load(second.read_text())
            raw["routes"] = {"only-on-two": {"deployments": [
                {"provider": "mock", "model": "gpt-4o-mini"}]}}
            second.write_text(yaml.safe_dump(raw))
            reply = await one.admin("POST", "/admin/reload")
            assert reply.status == 200 and reply.json()["changed"] == []
            events: list[dict[str, Any]] = []
            for _ in range(100):  # the other one's reload is recorded once it is done
                events = (await one.admin("GET", "/admin/events?kind=config.reload")).json()
                if len(events) == 2:
                    break
                await asyncio.sleep(0.05)
            assert sorted(e["detail"]["trigger"] for e in events) == ["admin-api", "poll"]
            assert "only-on-two" in two.runtime.routes.routes
            assert "only-on-two" not in one.runtime.routes.routes

    asyncio.run(main())


def test_a_provider_removed_from_the_store_finishes_its_requests_in_flight(
        write_config: Write) -> None:
    """Regression: removing a provider closed its in-process transport at once, failing the
    requests it was answering."""
    path = write_config()

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            added = await client.admin("POST", "/admin/providers", {
                "name": "extra", "type": "mock", "models": ["extra-model"]})
            assert added.status == 201, added.body
            key = await client.create_key("dev-reload-store")
            in_flight = asyncio.ensure_future(client.request(
                "POST", "/v1/chat/completions", key=key,
                json_body=chat("extra-model", "[[mock:latency=500]] hi")))
            await asyncio.sleep(0.2)
            removed = await client.admin("DELETE", "/admin/providers/extra")
            assert removed.status in (200, 204), removed.body
            reply = await in_flight
            assert reply.status == 200, reply.body

    asyncio.run(main())


def test_a_reload_that_cannot_build_the_new_config_keeps_the_running_one(
        write_config: Write) -> None:
    path = write_config()

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            runtime = client.runtime
            running = runtime.live
            write_config(routes={"r": {"deployments": [{"provider": "mock",
                                                        "model": "gpt-4o-mini"}]}})
            await runtime.store.close()  # the store is out of reach while providers are read
            try:
                result = await runtime.reloader.reload("test")
            finally:
                await runtime.store.open()
            assert not result.ok and result.error is not None
            assert result.error.startswith("applying it failed (")
            assert "the running config is kept" in result.error
            assert runtime.live is running
            assert (await runtime.reloader.reload("test")).changed == ["routes.r"]

    asyncio.run(main())


def test_routes_of_a_good_config_log_no_error_at_start_up(
        write_config: Write, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: the first, provider-less table of routes said every provider was missing."""
    path = write_config(routes={"support": {"deployments": [
        {"provider": "mock", "model": "gpt-4o-mini"}]}})

    async def main() -> None:
        async with running_app(load_config(path)) as client:
            assert client.runtime.routes.problems == {}

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert "is not available" not in caplog.text


def test_a_provider_key_changed_in_the_env_file_is_used_after_a_reload(
        write_config: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/runbook.md: a leaked provider key in the .env is replaced with `keystead reload`;
    the request in flight finishes on the old key, the next one goes with the new."""
    old, new = "sk-old-upstream-key-0123456789", "sk-new-upstream-key-9876543210"
    seen: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", "").removeprefix("Bearer "))
        await asyncio.sleep(0.3)
        return web.Response(body=ANSWER, content_type="application/json")

    monkeypatch.setenv("UPSTREAM_KEY", old)  # as the .env set it when the gateway started
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"UPSTREAM_KEY={old}\n")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", upstream)
        async with serving_http(app) as base:
            path = write_config(providers={"upstream": {
                "type": "openai-compatible", "base_url": f"{base}/v1",
                "api_key": "${UPSTREAM_KEY}", "models": ["m1"]}})
            async with running_app(load_config(path)) as client:
                key = await client.create_key("dev-reload-upstream")
                in_flight = asyncio.ensure_future(client.request(
                    "POST", "/v1/chat/completions", key=key, json_body=chat("m1")))
                await asyncio.sleep(0.1)
                dotenv.write_text(f"UPSTREAM_KEY={new}\n")
                result = await client.runtime.reloader.reload("test")
                assert result.changed == ["providers.upstream"], result
                after = await client.request("POST", "/v1/chat/completions", key=key,
                                             json_body=chat("m1"))
                assert (await in_flight).status == 200 and after.status == 200
        assert seen == [old, new]

    asyncio.run(main())


def test_a_run_time_providers_env_key_changed_in_the_env_file_is_used_after_a_reload(
        write_config: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider added at run time keeps `env:VAR`, read from the process environment: the
    reload must put the .env's new value there before it rebuilds the providers (it did so
    after, and the old key served for up to secret_stores.refresh_s)."""
    from keystead.control.providers import ProviderService

    old, new = "sk-old-upstream-key-0123456789", "sk-new-upstream-key-9876543210"
    seen: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", "").removeprefix("Bearer "))
        return web.Response(body=ANSWER, content_type="application/json")

    monkeypatch.setenv("UPSTREAM_KEY2", old)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"UPSTREAM_KEY2={old}\n")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", upstream)
        async with serving_http(app) as base, \
                running_app(load_config(write_config())) as client:
            await ProviderService(client.runtime).add(
                "up2", type="openai-compatible", base_url=f"{base}/v1",
                api_key_env="UPSTREAM_KEY2", models=["m1"])
            key = await client.create_key("dev-reload-upstream")
            assert (await client.request("POST", "/v1/chat/completions", key=key,
                                         json_body=chat("m1"))).status == 200
            dotenv.write_text(f"UPSTREAM_KEY2={new}\n")
            assert (await client.runtime.reloader.reload("test")).ok
            assert (await client.request("POST", "/v1/chat/completions", key=key,
                                         json_body=chat("m1"))).status == 200
        assert seen == [old, new]

    asyncio.run(main())


def test_a_reload_after_the_master_key_was_rotated_elsewhere_keeps_vault_keys_serving(
        write_config: Write) -> None:
    """`keystead vault rotate-master` in another process re-seals the vault; this gateway
    still holds the old master key. A reload (nothing changed in the file) used to re-read the
    vault, fail to open its keys and take every vault-backed provider out."""
    from keystead.control.providers import ProviderService
    from keystead.vault.store import Vault

    async def main() -> None:
        async with running_app(load_config(write_config())) as client:
            rt = client.runtime
            await ProviderService(rt).add(
                "up3", type="openai-compatible", base_url="http://127.0.0.1:9/v1",
                api_key="sk-abc-0123456789", models=["m1"])
            assert rt.provider_status["up3"].error is None
            elsewhere = Vault(rt.store, rt.vault._master)  # what rotate-master does
            await elsewhere.rotate_master(MasterKey.from_text(MasterKey.generate_text()))
            assert (await rt.reloader.reload("test")).ok
            assert rt.provider_status["up3"].error is None
            assert "up3" in rt.providers.providers

    asyncio.run(main())
