"""A pool of provider keys through the real app: requests spread over the keys, a key the provider
revokes (401) is taken out with no failed request and said so (log, event, admin API), every key
out still answers `upstream_auth_failed`, a rate-limited key (429) cools down while the others
serve, and an operator puts a key back (enable-key)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from keystead.config.load import ConfigError, parse_config
from keystead.mocks.openai_upstream import MockUpstream
from keystead.providers.key_pool import fingerprint
from keystead.runtime import KEY_DISABLED, KEY_ENABLED
from keystead.state.records import EventRecord
from support import AppClient, Reply, make_loaded, running_app, serving_http

K1, K2, K3 = (f"sk-pool-key-{n}-0123456789abcdefghij" for n in (1, 2, 3))
ENV = {"POOL_KEY_1": K1, "POOL_KEY_2": K2, "POOL_KEY_3": K3}
POOL = {"pool": {"type": "mock", "models": ["pool-model"],
                 "api_keys": ["${POOL_KEY_1}", "env:POOL_KEY_2", "${POOL_KEY_3}"]}}
CHAT = {"model": "pool-model", "messages": [{"role": "user", "content": "hi"}]}


def run(tmp_path: Path, body: Callable[[AppClient], Awaitable[None]],
        providers: dict[str, Any] | None = None) -> None:
    async def main() -> None:
        loaded = make_loaded(tmp_path, {"providers": providers or POOL}, env=ENV)
        async with running_app(loaded) as client:
            await asyncio.wait_for(body(client), 60)

    asyncio.run(main())


def upstream(client: AppClient) -> MockUpstream:
    app = client.runtime.providers.providers["pool"].transport.app  # type: ignore[attr-defined]
    assert isinstance(app, MockUpstream)
    return app


def accept(client: AppClient, *keys: str) -> None:
    """What the provider accepts from now on (a revoked key is left out)."""
    app = upstream(client)
    app.settings = dataclasses.replace(app.settings, api_keys=keys or ("none-accepted",))


def sent_keys(app: MockUpstream, last: int) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in list(app.received)[-last:]]


async def chats(client: AppClient, key: str, n: int) -> list[Reply]:
    return list(await asyncio.gather(*(client.request("POST", "/v1/chat/completions", key=key,
                                                      json_body=CHAT) for _ in range(n))))


async def events(client: AppClient, kind: str, count: int) -> list[EventRecord]:
    for _ in range(200):  # written by a task off the request path
        found = await client.runtime.store.list_events(50, kind=kind)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {count} {kind} events")


async def documented(client: AppClient, method: str, template: str, reply: Reply) -> Any:
    doc = (await client.admin("GET", "/admin/openapi.json")).json()
    schema = doc["paths"][template][method.lower()]["responses"][str(reply.status)][
        "content"]["application/json"]["schema"]
    body = reply.json()
    Draft202012Validator({"components": doc["components"], **schema}).validate(body)
    return body


def test_requests_spread_over_the_pool_and_a_revoked_key_fails_no_request(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def body(client: AppClient) -> None:
        key = await client.create_key("prod-pool-test")
        app = upstream(client)
        replies = [await client.request("POST", "/v1/chat/completions", key=key,
                                        json_body=CHAT) for _ in range(30)]
        assert {r.status for r in replies} == {200}
        assert Counter(sent_keys(app, 30)) == Counter({K1: 10, K2: 10, K3: 10})

        accept(client, K1, K3)  # the operator revoked #2 at the provider
        replies = await chats(client, key, 60)
        assert Counter(r.status for r in replies) == Counter({200: 60})
        (event,) = await events(client, KEY_DISABLED, 1)
        assert event.actor == "gateway" and event.key_id is None
        assert event.detail == {"provider": "pool", "label": "#2",
                                "fingerprint": fingerprint(K2), "reason": "HTTP 401",
                                "status": 401}
        replies = await chats(client, key, 20)
        assert {r.status for r in replies} == {200}
        assert K2 not in sent_keys(app, 20)  # out of rotation

        reply = await client.admin("GET", "/admin/providers/pool")
        view = await documented(client, "GET", "/admin/providers/{name}", reply)
        assert [(k["label"], k["state"], k["source"]) for k in view["keys"]] == [
            ("#1", "active", "config"), ("#2", "disabled", "config"), ("#3", "active", "config")]
        assert view["keys"][1]["reason"] == "HTTP 401" and view["keys"][1]["since"]
        assert view["keys"][1]["fingerprint"] == fingerprint(K2)
        listed = (await client.admin("GET", "/admin/providers")).json()
        assert [p["keys"][1]["state"] for p in listed if p["name"] == "pool"] == ["disabled"]
        (state,) = await client.runtime.store.list_provider_key_states()
        assert (state.provider, state.fingerprint, state.label) == ("pool", fingerprint(K2), "#2")

        # An unrelated reload (another provider added) keeps the key out.
        added = await client.admin("POST", "/admin/providers", {"name": "other", "type": "mock",
                                                                "models": ["other-model"]})
        assert added.status == 201
        assert client.runtime.providers.providers["pool"].keys.keys[1].state == "disabled"

        # Every key out: the provider's refusal reaches the client as before.
        accept(client)
        reply = await client.request("POST", "/v1/chat/completions", key=key, json_body=CHAT)
        assert reply.status == 502, reply.body
        assert reply.json()["error"]["code"] == "upstream_auth_failed"
        await events(client, KEY_DISABLED, 3)
        view = (await client.admin("GET", "/admin/providers/pool")).json()
        assert {k["state"] for k in view["keys"]} == {"disabled"}
        # ... and a key the provider takes back is found by the next requests.
        accept(client, K3)
        replies = [await client.request("POST", "/v1/chat/completions", key=key,
                                        json_body=CHAT) for _ in range(4)]
        assert replies[-1].status == 200
        back = await events(client, KEY_ENABLED, 1)
        assert back[0].detail["label"] == "#3" and back[0].actor == "gateway"

    run(tmp_path, body)
    text = caplog.text
    assert "provider pool: key #2 (fingerprint " + fingerprint(K2) in text
    assert "taken out of rotation" in text and "no key left" in text
    for secret in (K1, K2, K3):
        assert secret not in text


def test_an_operator_puts_a_key_back(tmp_path: Path) -> None:
    async def body(client: AppClient) -> None:
        key = await client.create_key("prod-pool-test")
        accept(client, K1, K3)
        assert {r.status for r in await chats(client, key, 10)} == {200}
        await events(client, KEY_DISABLED, 1)

        accept(client, K1, K2, K3)  # fixed at the provider
        reply = await client.admin("POST", "/admin/providers/pool/keys/2/enable")
        assert reply.status == 200, reply.body
        view = await documented(client, "POST", "/admin/providers/{name}/keys/{label}/enable",
                                reply)
        assert view["keys"][1]["state"] == "active"
        (event,) = await events(client, KEY_ENABLED, 1)
        assert event.actor == "admin-api"
        assert event.detail["label"] == "#2" and event.detail["previous"] == "disabled"
        assert await client.runtime.store.list_provider_key_states() == []
        assert {r.status for r in await chats(client, key, 30)} == {200}
        assert K2 in sent_keys(upstream(client), 30)

        # Enabling a key the provider still refuses: out again at the first request, which
        # goes to another key.
        accept(client, K1, K3)
        reply = await client.admin("POST", "/admin/providers/pool/keys/2/enable")
        assert reply.status == 200  # idempotent: it was active
        assert {r.status for r in await chats(client, key, 10)} == {200}
        await events(client, KEY_DISABLED, 2)
        missing = await client.admin("POST", "/admin/providers/pool/keys/9/enable")
        assert missing.status == 404 and "#1, #2, #3" in missing.json()["error"]["message"]
        unknown = await client.admin("POST", "/admin/providers/nope/keys/1/enable")
        assert unknown.status == 404

        tested = await client.admin("POST", "/admin/providers/pool/test")
        result = await documented(client, "POST", "/admin/providers/{name}/test", tested)
        assert result["ok"] is False and "2 of 3 keys ok" in result["detail"]
        assert [(k["label"], k["ok"], k["status"]) for k in result["keys"]] == [
            ("#1", True, 200), ("#2", False, 401), ("#3", True, 200)]

    run(tmp_path, body)


def test_a_rate_limited_key_cools_down_while_the_others_serve(tmp_path: Path) -> None:
    seen: list[str] = []
    limited = {K1}

    async def handler(request: web.Request) -> web.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(key)
        if key in limited:
            return web.json_response({"error": {"message": "slow down", "type": "requests",
                                                "code": "rate_limit_exceeded", "param": None}},
                                     status=429, headers={"retry-after": "30"})
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "pool-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        async with serving_http(app) as base:
            providers = {"pool": {"type": "openai-compatible", "base_url": f"{base}/v1",
                                  "models": ["pool-model"],
                                  "api_keys": ["${POOL_KEY_1}", "${POOL_KEY_2}"]}}
            loaded = make_loaded(tmp_path, {"providers": providers}, env=ENV)
            async with running_app(loaded) as client:
                key = await client.create_key("prod-pool-test")
                await client.request("POST", "/v1/chat/completions", key=key, json_body=CHAT)
                assert seen[0] == K1  # rate-limited: #1 cools down for 30 s
                view = (await client.admin("GET", "/admin/providers/pool")).json()
                first = view["keys"][0]
                assert (first["state"], first["reason"]) == ("cooling",
                                                              "HTTP 429, retry after 30 s")
                assert first["until"] > first["since"]
                before = len(seen)
                replies = [await client.request("POST", "/v1/chat/completions", key=key,
                                                json_body=CHAT) for _ in range(10)]
                assert {r.status for r in replies} == {200}
                assert set(seen[before:]) == {K2}  # the other key goes first
                assert await client.runtime.store.list_events(10, kind=KEY_DISABLED) == []

    asyncio.run(main())


def test_pool_config_is_validated() -> None:
    def parse(provider: dict[str, Any], env: dict[str, str] | None = None) -> Any:
        return parse_config({"providers": {"p": {"type": "openai",
                                                 "base_url": "https://x/v1", **provider}}},
                            env or ENV, source="t")

    config = parse({"api_keys": ["${POOL_KEY_1}", "env:POOL_KEY_2", "vault:openai-b",
                                 "file:/run/secrets/c"]})
    assert [k.get_secret_value() for k in config.providers["p"].api_keys] == [
        K1, K2, "vault:openai-b", "file:/run/secrets/c"]
    with pytest.raises(ConfigError, match="api_key and api_keys are mutually exclusive"):
        parse({"api_key": "${POOL_KEY_1}", "api_keys": ["${POOL_KEY_2}"]})
    with pytest.raises(ConfigError, match="api_keys is empty"):
        parse({"api_keys": []})
    with pytest.raises(ConfigError, match="key #3 is the same as key #1"):
        parse({"api_keys": ["${POOL_KEY_1}", "${POOL_KEY_2}", "${POOL_KEY_1}"]})
    with pytest.raises(ConfigError, match=r"providers\.p\.api_keys\.1: holds a raw secret"):
        parse({"api_keys": ["${POOL_KEY_1}", "sk-raw-key-in-the-file"]})
    with pytest.raises(ConfigError, match="api_key is required"):
        parse({})


def test_a_pool_key_that_cannot_be_read_leaves_the_others_serving(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"

    async def body(client: AppClient) -> None:
        status = client.runtime.provider_status["pool"]
        assert status.error is None and list(status.key_errors) == ["#2"]
        view = (await client.admin("GET", "/admin/providers/pool")).json()
        assert view["status"] == "ok"
        assert [(k["label"], k["state"]) for k in view["keys"]] == [
            ("#1", "active"), ("#2", "unusable"), ("#3", "active")]
        assert str(missing) in view["keys"][1]["reason"]
        key = await client.create_key("prod-pool-test")
        assert {r.status for r in await chats(client, key, 6)} == {200}
        assert set(sent_keys(upstream(client), 6)) == {K1, K3}

    run(tmp_path, body, {"pool": {"type": "mock", "models": ["pool-model"], "api_keys": [
        "${POOL_KEY_1}", f"file:{missing}", "${POOL_KEY_3}"]}})


def test_one_requests_403_does_not_take_a_key_out_for_the_next_request(tmp_path: Path) -> None:
    """Issue 13: a client asked for a model the provider's project may not use; the 403 took
    the pool's keys out for everyone. Now the keys stay in, nothing is recorded, and the next
    request for another model is served as before."""
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        model = (await request.json())["model"]
        seen.append((key, model))
        if model == "gpt-4.1":
            return web.json_response({"error": {
                "message": "Project `proj_abc` does not have access to model `gpt-4.1`",
                "type": "invalid_request_error", "param": None, "code": "model_not_found"}},
                status=403)
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        async with serving_http(app) as base:
            providers = {"pool": {"type": "openai-compatible", "base_url": f"{base}/v1",
                                  "models": ["pool-model", "gpt-4.1"],
                                  "api_keys": ["${POOL_KEY_1}", "${POOL_KEY_2}"]}}
            loaded = make_loaded(tmp_path, {"providers": providers}, env=ENV)
            async with running_app(loaded) as client:
                key = await client.create_key("prod-pool-test")
                refused = await client.request("POST", "/v1/chat/completions", key=key,
                                               json_body={**CHAT, "model": "gpt-4.1"})
                assert refused.status >= 400
                assert seen == [(K1, "gpt-4.1"), (K2, "gpt-4.1")]  # each key tried once
                replies = [await client.request("POST", "/v1/chat/completions", key=key,
                                                json_body=CHAT) for _ in range(4)]
                assert {r.status for r in replies} == {200}
                assert {k for k, _ in seen[2:]} == {K1, K2}  # both keys still serve
                view = (await client.admin("GET", "/admin/providers/pool")).json()
                assert [k["state"] for k in view["keys"]] == ["active", "active"]
                assert await client.runtime.store.list_events(10, kind=KEY_DISABLED) == []
                assert await client.runtime.store.list_provider_key_states() == []

    asyncio.run(main())
