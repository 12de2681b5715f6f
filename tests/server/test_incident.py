"""The incident command's service and API: find by leaked text, stop, replace, notify, report."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from keystead.control.incident import forensics
from keystead.state.records import UsageRecord
from support import AppClient, make_loaded, running_app, serving_http

CHAT = "/v1/chat/completions"
NOW = 1_800_000_000.0


def row(ts: float, ip: str = "10.0.0.1", agent: str = "svc/1.0", status: int = 200,
        model: str = "gpt-4o-mini") -> UsageRecord:
    return UsageRecord(request_id=f"r{ts}", ts=ts, endpoint="chat.completions", status=status,
                       key_id="k1", client_ip=ip, user_agent=agent, model_requested=model,
                       cost_usd=Decimal("0.001"))


def test_forensics_groups_and_flags_what_is_new_against_the_history():
    history = [row(NOW - 10 * 86400 + i * 3600) for i in range(48)]  # two quiet days, 1/hour
    burst = [row(NOW - 600 + i, ip="203.0.113.66", agent="curl/8.5") for i in range(60)]
    probes = [row(NOW - 300 + i, ip="203.0.113.66", status=403, model="gpt-4o") for i in range(6)]
    report = forensics([*history, *burst, *probes], NOW, days=30)
    assert report["requests"] == 114
    assert report["by_ip"][0] == {"value": "203.0.113.66", "requests": 66}
    assert report["first_seen"] is not None and report["cost_usd"] == "0.114"
    unusual = " | ".join(report["unusual"])
    assert "new source IP in the last 24 h: 203.0.113.66" in unusual
    assert "new user agent in the last 24 h: curl/8.5" in unusual
    assert "66 requests in the hour" in unusual
    assert "6 requests refused with 401/403" in unusual


def test_forensics_of_a_quiet_or_unused_key_flags_nothing():
    assert forensics([], NOW, days=30)["requests"] == 0
    steady = [row(NOW - i * 3600) for i in range(100)]
    assert forensics(steady, NOW, days=30)["unusual"] == []


def run_app(tmp_path: Path, test: Any, raw: dict[str, Any] | None = None,
            env: dict[str, str] | None = None) -> None:
    loaded = make_loaded(tmp_path, raw=raw, env=env)

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


async def chat(client: AppClient, key: str, ip: str = "192.0.2.7") -> int:
    reply = await client.request("POST", CHAT, key=key, client=(ip, 1), json_body={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    return reply.status


def test_an_incident_from_the_leaked_text_rotates_notifies_and_reports(tmp_path):
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=200)

    async def test(client: AppClient) -> None:
        leaked = await client.create_key("prod-support-bot-01", owner="ana@example.com")
        assert await chat(client, leaked) == 200
        await client.runtime.ledger.flush()
        reply = await client.admin("POST", "/admin/incidents",
                                   {"key": leaked, "reason": "pasted in ticket 4711"})
        assert reply.status == 200, reply.body
        report = reply.json()
        assert report["action"] == "rotated" and report["owner_notified"] is True
        assert report["key"]["name"] == "prod-support-bot-01"
        assert report["forensics"]["by_ip"] == [{"value": "192.0.2.7", "requests": 1}]
        assert report["stop_ms"] < 1000
        assert await chat(client, leaked) == 401
        assert await chat(client, report["new_key"]) == 200
        (message,) = received
        assert message["key_name"] == "prod-support-bot-01" and message["owner"] == \
            "ana@example.com"
        assert "pasted in ticket 4711" in message["text"]
        assert leaked not in json.dumps(message) and report["new_key"] not in json.dumps(message)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        async with serving_http(app) as base:
            loaded = make_loaded(tmp_path, raw={"incidents": {"webhook_url": "${HOOK}"}},
                                 env={"HOOK": f"{base}/hook"})
            async with running_app(loaded) as client:
                await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


def test_incident_by_name_with_revoke_only_and_refusals(tmp_path):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-support-bot-01")
        forged = key[:-10] + "A" * 10
        bad = await client.admin("POST", "/admin/incidents", {"key": forged})
        assert bad.status == 400  # not a whole key: nothing touched
        assert await chat(client, key) == 200
        started = time.time()
        reply = await client.admin("POST", "/admin/incidents",
                                   {"key": "prod-support-bot-01", "replace": False})
        report = reply.json()
        assert report["action"] == "revoked" and report["new_key"] is None
        assert report["owner_notified"] is None  # no webhook configured
        assert report["key"]["status"] == "revoked" and time.time() - started < 5
        assert await chat(client, key) == 401
        again = await client.admin("POST", "/admin/incidents", {"key": "prod-support-bot-01"})
        assert again.status == 400

    run_app(tmp_path, test)


def test_a_webhook_url_must_be_a_reference_not_the_secret(tmp_path):
    import pytest

    from keystead.config.load import ConfigError, parse_config

    with pytest.raises(ConfigError, match="raw secret"):
        parse_config({"incidents": {"webhook_url": "https://hooks.example/T0/B0/xyz"}}, {},
                     source="test")


def test_a_secret_pasted_in_a_reason_is_masked_before_it_is_logged_stored_or_posted(
        tmp_path, caplog):
    """An operator quotes the leak in the reason: the webhook, the log line, the event log and
    the key's revoked_reason get it masked as the scanner prints it, never whole."""
    import logging
    import random

    from scan.synth import synth

    rng = random.Random(4711)
    provider_key, admin_token = synth("openai-project", rng), synth("keystead-admin-token", rng)
    reason = f"pasted {provider_key} and {admin_token} in ticket 4711"
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=200)

    async def test(client: AppClient) -> None:
        await client.create_key("prod-support-bot-01")
        await client.create_key("prod-support-bot-02")
        with caplog.at_level(logging.INFO):
            reply = await client.admin("POST", "/admin/incidents",
                                       {"key": "prod-support-bot-01", "reason": reason,
                                        "replace": False})
        assert reply.status == 200, reply.body
        revoked = await client.admin("POST", "/admin/keys/prod-support-bot-02/revoke",
                                     {"reason": reason})
        events = await client.admin("GET", "/admin/events?limit=50")
        kept = json.dumps([reply.json(), revoked.json(), events.json(), received])
        logged = "\n".join(r.getMessage() for r in caplog.records)
        for text in (kept, logged):
            assert provider_key not in text and admin_token not in text
        masked = f"pasted {provider_key[:6]}…{provider_key[-4:]} and " \
                 f"{admin_token[:6]}…{admin_token[-4:]} in ticket 4711"
        assert reply.json()["key"]["revoked_reason"] == masked
        assert revoked.json()["revoked_reason"] == masked
        assert masked in received[0]["text"] and received[0]["reason"] == masked
        reasons = [e["detail"].get("reason") for e in events.json()]
        assert reasons.count(masked) == 3  # the incident, and the two revocations
        assert f"reason: {masked}" in logged

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        async with serving_http(app) as base:
            loaded = make_loaded(tmp_path, raw={"incidents": {"webhook_url": "${HOOK}"}},
                                 env={"HOOK": f"{base}/hook"})
            async with running_app(loaded) as client:
                await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


def test_a_secret_typed_into_a_description_or_a_key_lookup_is_never_echoed(tmp_path):
    import random

    from scan.synth import synth

    leaked = synth("anthropic", random.Random(9))

    async def test(client: AppClient) -> None:
        created = await client.admin("POST", "/admin/keys", {
            "name": "prod-support-bot-01", "description": f"uses {leaked}"})
        assert created.status == 201, created.body
        updated = await client.admin("PATCH", "/admin/keys/prod-support-bot-01",
                                     {"description": f"was {leaked}", "owner": leaked})
        team = await client.admin("POST", "/admin/teams",
                                  {"name": "support", "description": f"key {leaked}"})
        missing = await client.admin("GET", f"/admin/keys/{leaked}")
        assert missing.status == 404
        for reply in (created, updated, team, missing):
            assert leaked not in reply.body.decode()
        assert updated.json()["description"] == f"was {leaked[:6]}…{leaked[-4:]}"

    run_app(tmp_path, test)


def test_refused_key_texts_naming_the_key_are_not_its_use():
    """A 401 row names the key its refused text claimed (for the auth_failures alert): whoever
    knows the key's public id can write one. The forensics must not count them as the key's
    requests, sources or last use; they are listed apart."""
    uses = [row(NOW - 5 * 86400 + i * 3600) for i in range(10)]
    forged = [UsageRecord(request_id=f"x{i}", ts=NOW - 60 + i, endpoint="chat.completions",
                          status=401, key_id="k1", client_ip="198.51.100.9", user_agent="evil/1",
                          error_code="invalid_api_key") for i in range(200)]
    report = forensics([*uses, *forged], NOW, days=30)
    assert report["requests"] == 10
    assert report["last_seen"] == forensics(uses, NOW, days=30)["last_seen"]
    assert [v["value"] for v in report["by_ip"]] == ["10.0.0.1"]
    assert [v["value"] for v in report["by_user_agent"]] == ["svc/1.0"]
    assert report["refused_texts"]["count"] == 200
    assert report["refused_texts"]["by_ip"] == [{"value": "198.51.100.9", "requests": 200}]
    unusual = " | ".join(report["unusual"])
    assert "new source IP" not in unusual and "requests in the hour" not in unusual
    assert "200 key texts naming this key were refused" in unusual
    only_forged = forensics(forged, NOW, days=30)
    assert only_forged["requests"] == 0 and only_forged["last_seen"] is None


def test_the_incident_webhook_escapes_slack_marks_and_refuses_a_redirect(tmp_path):
    """The owner is operator text: `<!channel>` in it reaches Slack as text. A webhook that
    redirects (to an internal address, say) is a failed notification, not followed."""
    received: list[dict[str, Any]] = []
    internal: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=200)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/internal")

    async def inside(request: web.Request) -> web.Response:
        internal.append(await request.read())
        return web.Response(status=200)

    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-support-bot-01", owner="<!channel> ana")
        reply = await client.admin("POST", "/admin/incidents",
                                   {"key": key, "reason": "<@U0123> pinged"})
        assert reply.status == 200 and reply.json()["owner_notified"] is True
        (message,) = received
        assert "&lt;!channel&gt; ana" in message["text"] and "<!" not in message["text"]
        assert "&lt;@U0123&gt; pinged" in message["text"]
        assert message["owner"] == "<!channel> ana"  # the JSON fields stay as they are

    async def redirected(client: AppClient) -> None:
        key = await client.create_key("prod-support-bot-02")
        reply = await client.admin("POST", "/admin/incidents", {"key": key})
        assert reply.status == 200 and reply.json()["owner_notified"] is False
        assert internal == []

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_post("/moved", moved)
        app.router.add_post("/internal", inside)
        async with serving_http(app) as base:
            for path, body in (("/hook", test), ("/moved", redirected)):
                (tmp_path / path.strip("/")).mkdir()
                loaded = make_loaded(tmp_path / path.strip("/"),
                                     raw={"incidents": {"webhook_url": "${HOOK}"}},
                                     env={"HOOK": f"{base}{path}"})
                async with running_app(loaded) as client:
                    await asyncio.wait_for(body(client), 30)

    asyncio.run(main())
