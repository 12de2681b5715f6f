"""Short-lived tokens (P7) through the real app: minted by a backend with its key, used by a
browser; narrower than the key, gone with it; CORS for the browser."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from backends import BACKENDS, backend_config
from keystead.keys.format import parse_key
from keystead.keys.tokens import TokenClaims
from support import AppClient, make_loaded, running_app

CHAT = "/v1/chat/completions"
MINT = "/v1/keystead/tokens"
APP = "https://app.example.com"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest):
    with backend_config(request.param) as raw:
        yield raw


def run_app(tmp_path: Path, test: Any, backend: dict[str, Any] | None = None) -> None:
    loaded = make_loaded(tmp_path, raw={**(backend or {}),
                                        "server": {"cors_origins": [APP]}})

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 60)

    asyncio.run(main())


async def chat(client: AppClient, key: str, model: str = "gpt-4o-mini", **fields: Any) -> Any:
    return await client.request("POST", CHAT, key=key, json_body={
        "model": model, "messages": [{"role": "user", "content": "hi"}], **fields})


async def mint(client: AppClient, key: str, **fields: Any) -> Any:
    reply = await client.request("POST", MINT, key=key, json_body=fields)
    return reply


def test_a_backend_mints_a_token_that_is_narrower_than_its_key(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-app", models=["gpt-4o-mini", "gpt-4o"])
        reply = await mint(client, key, ttl="10m", models=["gpt-4o-mini"], rpm=2,
                           max_tokens=5, user="user-42")
        assert reply.status == 201, reply.body
        assert reply.headers["cache-control"] == "no-store"
        minted = reply.json()
        token = minted["token"]
        assert token.startswith("kst_") and 590 <= minted["expires_in"] <= 600
        assert minted["key_id"] == parse_key(key).key_id  # type: ignore[union-attr]
        ok = await chat(client, token)
        assert ok.status == 200 and ok.json()["usage"]["completion_tokens"] <= 5
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        refused = await chat(client, token, model="gpt-4o")
        assert (refused.status, refused.json()["error"]["code"]) == (403, "model_not_allowed")
        capped = await chat(client, token, max_tokens=50)
        assert (capped.status, capped.json()["error"]["code"]) == (400, "max_tokens_exceeded")
        assert (await chat(client, token)).status == 200
        limited = await chat(client, token)
        assert (limited.status, limited.json()["error"]["code"]) == (429, "rate_limit_exceeded")
        assert (await chat(client, key)).status == 200  # the key's own calls are not limited
        # A token cannot mint tokens, nor widen its key.
        assert (await mint(client, token)).status == 403
        wider = await mint(client, key, models=["gpt-4.1"])
        assert wider.status == 403
        assert (await mint(client, key, ttl="30d")).status == 400
        assert (await mint(client, key, colour="red")).status == 400
        for bad in ({"models": "gpt-4o-mini"}, {"rpm": "5"}, {"rpm": True}, {"ttl": 60},
                    {"max_tokens": 0}):
            refused = await mint(client, key, **bad)
            assert refused.status == 400, bad
            assert refused.json()["error"]["param"] == next(iter(bad))
        await client.runtime.ledger.flush()
        rows = await client.runtime.store.recent_usage(100)
        assert {r.key_id for r in rows} == {minted["key_id"]}  # usage lands on the key

    run_app(tmp_path, test, backend)


def test_a_token_dies_with_its_key(tmp_path, backend):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-app")
        token = (await mint(client, key)).json()["token"]
        assert (await chat(client, token)).status == 200
        await client.admin("POST", "/admin/keys/prod-web-app/disable")
        assert (await chat(client, token)).json()["error"]["code"] == "key_disabled"
        await client.admin("POST", "/admin/keys/prod-web-app/enable")
        assert (await chat(client, token)).status == 200
        await client.admin("POST", "/admin/keys/prod-web-app/rotate", {"grace": "0s"})
        assert (await chat(client, token)).json()["error"]["code"] == "key_rotated"
        fresh = (await client.admin("POST", "/admin/tokens", {"key": "prod-web-app"})).json()
        assert (await chat(client, fresh["token"])).status == 200
        await client.admin("POST", "/admin/keys/prod-web-app/revoke", {})
        assert (await chat(client, fresh["token"])).json()["error"]["code"] == "key_revoked"

    run_app(tmp_path, test, backend)


def test_expired_forged_and_tampered_tokens_are_refused(tmp_path):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-app")
        rt = client.runtime
        assert rt.signer is not None
        record = await rt.store.find_key_by_name("prod-web-app")
        assert record is not None
        now = time.time()
        expired = rt.signer.mint(TokenClaims("t1", record.id, record.current_credential,
                                             now - 120, now - 60))
        reply = await chat(client, expired)
        assert (reply.status, reply.json()["error"]["code"]) == (401, "key_expired")
        token = (await mint(client, key)).json()["token"]
        payload, signature = token.split(".")
        tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." \
            + signature
        for bad in (tampered, token[:-3] + "xyz", "kst_nonsense"):
            refused = await chat(client, bad)
            assert (refused.status, refused.json()["error"]["code"]) == (401,
                                                                         "invalid_api_key")

    run_app(tmp_path, test)


def test_cors_for_allowed_browser_origins_only(tmp_path):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-app")
        token = (await mint(client, key)).json()["token"]
        preflight = await client.request("OPTIONS", CHAT, headers={
            "origin": APP, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type"})
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        reply = await client.request("POST", CHAT, key=token, headers={"origin": APP},
                                     json_body={"model": "gpt-4o-mini", "messages": [
                                         {"role": "user", "content": "hi"}]})
        assert reply.status == 200
        assert reply.headers["access-control-allow-origin"] == APP
        exposed = reply.headers["access-control-expose-headers"]
        for header in ("x-request-id", "x-keystead-route", "x-keystead-cache",
                       "x-keystead-degraded", "retry-after-ms"):
            assert header in exposed, header
        other = await client.request("POST", CHAT, key=token,
                                     headers={"origin": "https://evil.example"},
                                     json_body={"model": "gpt-4o-mini", "messages": [
                                         {"role": "user", "content": "hi"}]})
        assert "access-control-allow-origin" not in other.headers
        refused = await client.request("OPTIONS", CHAT,
                                       headers={"origin": "https://evil.example"})
        assert refused.status == 405

    run_app(tmp_path, test)
