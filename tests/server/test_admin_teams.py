"""The admin API for teams, key limits and updates, and usage filters, through the real app;
every response is checked against the admin OpenAPI document, every error against OpenAI's
error envelope."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_admin import assert_error, documented, in_app, openapi

from keystead.state.records import Limits, UsageRecord
from support import ADMIN_TOKEN, AppClient, Reply, make_loaded, running_app

Runner = Callable[[Callable[[AppClient], Awaitable[None]]], None]

NO_LIMITS = {"rpm": None, "rpd": None, "tpm": None, "tpd": None, "max_parallel": None,
             "budget_usd": None, "budget_period": "month"}


async def call(client: AppClient, method: str, path: str, template: str,
               body: Any = None) -> tuple[Reply, Any]:
    """The reply, and its JSON once checked against the OpenAPI entry of `template`."""
    reply = await client.admin(method, path, body)
    return reply, documented(await openapi(client), method, template, reply)


@pytest.fixture(scope="module")
def errors_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """One app for the tests that only provoke refusals: they leave its store as it was (one
    team, `existing`, made here), which each of them checks."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    loaded = make_loaded(tmp_path_factory.mktemp("admin-teams-errors"))
    client = loop.run_until_complete(stack.enter_async_context(running_app(loaded)))
    created = loop.run_until_complete(client.admin("POST", "/admin/teams", {
        "name": "existing", "limits": {"rpm": 9}}))
    assert created.status == 201
    try:
        yield lambda test: loop.run_until_complete(asyncio.wait_for(test(client), 30))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- teams -------------------------------------------------------------------------------------


@in_app
async def test_teams_are_created_listed_and_shown(client: AppClient) -> None:
    reply, created = await call(client, "POST", "/admin/teams", "/admin/teams", {
        "name": "payments", "description": "checkout", "owner": "ana@example.com",
        "limits": {"rpm": 600, "tpm": 100000, "max_parallel": 8, "budget_usd": "250.10",
                   "budget_period": "day"},
        "ip_allowlist": ["10.1.2.3/8", "2001:db8::/32"]})
    assert reply.status == 201
    assert created == {
        "name": "payments", "description": "checkout", "owner": "ana@example.com",
        "limits": {**NO_LIMITS, "rpm": 600, "tpm": 100000, "max_parallel": 8,
                   "budget_usd": "250.10", "budget_period": "day"},
        "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"], "created_at": created["created_at"]}
    assert created["created_at"] is not None
    reply, search = await call(client, "POST", "/admin/teams", "/admin/teams",
                               {"name": "search"})
    assert reply.status == 201
    assert (search["limits"], search["ip_allowlist"], search["owner"]) == (NO_LIMITS, None,
                                                                           None)

    _, listing = await call(client, "GET", "/admin/teams", "/admin/teams")
    assert listing == [created, search]
    _, shown = await call(client, "GET", "/admin/teams/payments", "/admin/teams/{name}")
    assert shown == created
    stored = await client.runtime.store.get_team("payments")
    assert stored is not None
    assert stored.limits == Limits(rpm=600, tpm=100000, max_parallel=8,
                                   budget_usd=Decimal("250.10"), budget_period="day")

    missing, _ = await call(client, "GET", "/admin/teams/nope", "/admin/teams/{name}")
    assert_error(missing, 404, "not_found", "name", ("No team named 'nope'",
                                                     "keystead teams list"))


@in_app
async def test_a_budget_sent_as_a_number_or_as_text_is_exact(client: AppClient) -> None:
    for name, budget, shown in (("a", 0.1, "0.1"), ("b", "0.10", "0.10"), ("c", 12, "12"),
                                ("d", "0", "0"), ("e", "1234567.123456789", "1234567.123456789")):
        reply, team = await call(client, "POST", "/admin/teams", "/admin/teams",
                                 {"name": name, "limits": {"budget_usd": budget}})
        assert reply.status == 201
        assert team["limits"]["budget_usd"] == shown
        stored = await client.runtime.store.get_team(name)
        assert stored is not None and stored.limits.budget_usd == Decimal(shown)


@in_app
async def test_patch_changes_only_what_is_sent_and_null_clears(client: AppClient) -> None:
    await client.admin("POST", "/admin/teams", {
        "name": "payments", "description": "checkout", "owner": "ana@example.com",
        "limits": {"rpm": 60, "tpm": 1000, "budget_usd": "10"}, "ip_allowlist": ["10.0.0.0/8"]})
    template = "/admin/teams/{name}"

    _, same = await call(client, "PATCH", "/admin/teams/payments", template, {})
    _, before = await call(client, "GET", "/admin/teams/payments", template)
    assert same == before

    _, one = await call(client, "PATCH", "/admin/teams/payments", template,
                        {"limits": {"rpm": 120}})
    assert one["limits"] == {**NO_LIMITS, "rpm": 120, "tpm": 1000, "budget_usd": "10"}
    assert (one["owner"], one["description"], one["ip_allowlist"]) == (
        "ana@example.com", "checkout", ["10.0.0.0/8"])

    _, cleared = await call(client, "PATCH", "/admin/teams/payments", template, {
        "limits": {"tpm": None, "budget_period": "day", "max_parallel": 3},
        "owner": None, "ip_allowlist": None})
    assert cleared["limits"] == {**NO_LIMITS, "rpm": 120, "max_parallel": 3,
                                 "budget_usd": "10", "budget_period": "day"}
    assert (cleared["owner"], cleared["ip_allowlist"], cleared["description"]) == (
        None, None, "checkout")

    _, period = await call(client, "PATCH", "/admin/teams/payments", template,
                           {"limits": {"budget_period": None}})
    assert period["limits"]["budget_period"] == "month"  # null: back to the default

    _, none = await call(client, "PATCH", "/admin/teams/payments", template, {"limits": None})
    assert none["limits"] == NO_LIMITS
    _, shown = await call(client, "GET", "/admin/teams/payments", template)
    assert shown == none

    missing, _ = await call(client, "PATCH", "/admin/teams/nope", template,
                            {"limits": {"rpm": 1}})
    assert_error(missing, 404, "not_found", "name", ("No team named 'nope'",))


@in_app
async def test_a_team_change_reaches_the_serving_runtime_at_once(client: AppClient) -> None:
    await client.admin("POST", "/admin/teams", {"name": "payments"})
    version = await client.runtime.store.get_version("keys")
    await client.admin("PATCH", "/admin/teams/payments", {"limits": {"rpm": 5}})
    # Teams ride on the keys version, so every replica reloads them with the keys.
    assert await client.runtime.store.get_version("keys") == version + 1
    assert client.runtime.teams["payments"].limits == Limits(rpm=5)
    unchanged = await client.admin("PATCH", "/admin/teams/payments", {"limits": {"rpm": 5}})
    assert unchanged.status == 200
    assert await client.runtime.store.get_version("keys") == version + 1  # nothing changed


@pytest.mark.parametrize(("method", "path", "payload", "code", "param", "fragments"), [
    ("POST", "/admin/teams", {"name": "Payments"}, "invalid_value", "name",
     ("'Payments' is not a valid team name", "lowercase letters, digits or '-'")),
    ("POST", "/admin/teams", {"name": "x" * 65}, "invalid_value", "name", ("1 to 64",)),
    ("POST", "/admin/teams", {"name": ""}, "invalid_value", "name", ("valid team name",)),
    ("POST", "/admin/teams", {"description": "x"}, "invalid_value", "name",
     ("Field required",)),
    ("POST", "/admin/teams", {"name": "t", "colour": "red"}, "invalid_value", "colour",
     ("Extra inputs are not permitted",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"rpm": 0}}, "invalid_value",
     "limits.rpm", ("greater than or equal to 1",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"rpx": 1}}, "invalid_value",
     "limits.rpx", ("Extra inputs",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"tpm": 1.5}}, "invalid_value",
     "limits.tpm", ("valid integer",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"budget_usd": "-1"}}, "invalid_value",
     "limits.budget_usd", ("greater than or equal to 0",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"budget_usd": "ten"}}, "invalid_value",
     "limits.budget_usd", ("decimal",)),
    ("POST", "/admin/teams", {"name": "t", "limits": {"budget_period": "week"}},
     "invalid_value", "limits.budget_period", ("'day' or 'month'",)),
    ("POST", "/admin/teams", {"name": "t", "ip_allowlist": ["10.0.0.0/8", "10.0.0.256"]},
     "invalid_value", "ip_allowlist",
     ("'10.0.0.256' is not an IPv4 or IPv6 address or CIDR", "2001:db8::/32")),
    ("POST", "/admin/teams", {"name": "t", "ip_allowlist": []}, "invalid_value",
     "ip_allowlist", ("empty IP allowlist", "null in the admin API")),
    ("POST", "/admin/teams", {"name": "t", "ip_allowlist": "10.0.0.0/8"}, "invalid_value",
     "ip_allowlist", ("valid list",)),
    ("PATCH", "/admin/teams/existing", {"name": "renamed"}, "invalid_value", "name",
     ("Extra inputs",)),
    ("PATCH", "/admin/teams/existing", {"limits": {"max_parallel": 0}}, "invalid_value",
     "limits.max_parallel", ("greater than or equal to 1",)),
    ("PATCH", "/admin/teams/existing", {"ip_allowlist": ["fe80::/129"]}, "invalid_value",
     "ip_allowlist", ("'fe80::/129'",)),
    ("POST", "/admin/teams", {"name": "existing"}, "duplicate_name", "name",
     ("A team named 'existing' exists already", "keystead teams update")),
], ids=["uppercase", "too-long", "empty", "no-name", "extra", "rpm-zero", "unknown-limit",
        "tpm-float", "budget-negative", "budget-word", "period", "cidr", "empty-allowlist",
        "allowlist-string", "patch-name", "patch-parallel", "patch-cidr", "duplicate"])
def test_team_errors_are_openai_shaped_400s(errors_app: Runner, method: str, path: str,
                                            payload: Any, code: str, param: str,
                                            fragments: tuple[str, ...]) -> None:
    async def test(client: AppClient) -> None:
        template = "/admin/teams/{name}" if path.count("/") == 3 else path
        reply, _ = await call(client, method, path, template, payload)
        assert_error(reply, 400, code, param, fragments)
        teams = await client.runtime.store.list_teams()
        assert [(t.name, t.limits, t.ip_allowlist) for t in teams] == [
            ("existing", Limits(rpm=9), None)]

    errors_app(test)


# --- keys --------------------------------------------------------------------------------------


@in_app
async def test_a_key_is_created_with_limits_and_an_allowlist(client: AppClient) -> None:
    refused, _ = await call(client, "POST", "/admin/keys", "/admin/keys",
                            {"name": "prod-pay-api", "team": "payments"})
    assert_error(refused, 400, "invalid_value", "team", (
        "No team named 'payments'.", "Create it first: keystead teams create NAME"))
    assert await client.runtime.store.list_keys() == []

    await client.admin("POST", "/admin/teams", {"name": "payments"})
    reply, created = await call(client, "POST", "/admin/keys", "/admin/keys", {
        "name": "prod-pay-api", "team": "payments",
        "limits": {"rpm": 30, "tpd": 50000, "budget_usd": "3.50"},
        "ip_allowlist": ["203.0.113.9", "2001:db8::/48"]})
    assert reply.status == 201
    assert created["team"] == "payments"
    assert created["limits"] == {**NO_LIMITS, "rpm": 30, "tpd": 50000, "budget_usd": "3.50"}
    assert created["ip_allowlist"] == ["203.0.113.9/32", "2001:db8::/48"]
    _, shown = await call(client, "GET", "/admin/keys/prod-pay-api", "/admin/keys/{key}")
    assert shown == {k: v for k, v in created.items() if k != "key"}
    record = client.runtime.keys.identify(b"Bearer " + created["key"].encode())
    assert record.limits == Limits(rpm=30, tpd=50000, budget_usd=Decimal("3.50"))
    assert record.ip_allowlist == ("203.0.113.9/32", "2001:db8::/48")

    plain = (await client.admin("POST", "/admin/keys", {"name": "dev-plain-app"})).json()
    assert (plain["limits"], plain["ip_allowlist"], plain["team"]) == (NO_LIMITS, None, None)


@in_app
async def test_patch_a_key(client: AppClient) -> None:
    for team in ("payments", "search"):
        await client.admin("POST", "/admin/teams", {"name": team})
    created = (await client.admin("POST", "/admin/keys", {
        "name": "prod-pay-api", "team": "payments", "owner": "ana", "models": ["gpt-4o-mini"],
        "max_tokens": 100, "expires": "1d", "limits": {"rpm": 30, "budget_usd": "5"},
        "ip_allowlist": ["10.0.0.0/8"]})).json()
    text = created["key"]
    template = "/admin/keys/{key}"

    before = time.time()
    _, updated = await call(client, "PATCH", f"/admin/keys/{created['id']}", template, {
        "team": "search", "limits": {"rpm": None, "tpm": 4000}, "expires": "7d",
        "endpoints": ["chat.completions"], "max_body_bytes": 2048})
    assert "key" not in updated
    assert (updated["team"], updated["owner"], updated["models"], updated["max_tokens"]) == (
        "search", "ana", ["gpt-4o-mini"], 100)
    assert (updated["endpoints"], updated["max_body_bytes"]) == (["chat.completions"], 2048)
    assert updated["limits"] == {**NO_LIMITS, "tpm": 4000, "budget_usd": "5"}
    assert updated["ip_allowlist"] == ["10.0.0.0/8"]
    record = client.runtime.keys.identify(b"Bearer " + text.encode())  # at once, same text
    assert record.team == "search" and record.limits.tpm == 4000
    assert record.expires_at is not None
    assert before + 7 * 86400 - 5 <= record.expires_at <= time.time() + 7 * 86400 + 5

    _, cleared = await call(client, "PATCH", "/admin/keys/prod-pay-api", template, {
        "models": None, "max_tokens": None, "expires": None, "ip_allowlist": None,
        "owner": None, "limits": None})
    assert (cleared["models"], cleared["max_tokens"], cleared["expires_at"],
            cleared["ip_allowlist"], cleared["owner"], cleared["limits"]) == (
        None, None, None, None, None, NO_LIMITS)
    assert cleared["endpoints"] == ["chat.completions"]  # not sent: unchanged
    _, same = await call(client, "PATCH", "/admin/keys/prod-pay-api", template, {})
    assert same == cleared

    # A key on its own team can be taken off it: null, like every other field.
    _, no_team = await call(client, "PATCH", "/admin/keys/prod-pay-api", template,
                            {"team": None})
    assert no_team["team"] is None

    await client.admin("POST", "/admin/keys/prod-pay-api/disable")
    _, paused = await call(client, "PATCH", "/admin/keys/prod-pay-api", template,
                           {"limits": {"max_parallel": 1}})
    assert (paused["status"], paused["limits"]["max_parallel"]) == ("disabled", 1)


@in_app
async def test_patch_key_errors(client: AppClient) -> None:
    await client.admin("POST", "/admin/keys", {"name": "dev-app-chat",
                                               "limits": {"rpm": 5}})
    await client.admin("POST", "/admin/keys", {"name": "dev-app-gone"})
    await client.admin("POST", "/admin/keys/dev-app-gone/revoke")
    template = "/admin/keys/{key}"
    cases: list[tuple[str, dict[str, Any], int, str, str | None, tuple[str, ...]]] = [
        ("dev-app-chat", {"team": "nope"}, 400, "invalid_value", "team",
         ("No team named 'nope'.", "keystead teams create NAME")),
        ("dev-app-chat", {"ip_allowlist": ["10.0.0.0/8", "10.0.0.0/99"]}, 400,
         "invalid_value", "ip_allowlist", ("'10.0.0.0/99'",)),
        ("dev-app-chat", {"ip_allowlist": []}, 400, "invalid_value", "ip_allowlist",
         ("empty IP allowlist",)),
        ("dev-app-chat", {"limits": {"rpd": 0}}, 400, "invalid_value", "limits.rpd",
         ("greater than or equal to 1",)),
        ("dev-app-chat", {"limits": {"budget_usd": -2}}, 400, "invalid_value",
         "limits.budget_usd", ("greater than or equal to 0",)),
        ("dev-app-chat", {"expires": "someday"}, 400, "invalid_value", "expires",
         ("'someday' is not a duration",)),
        ("dev-app-chat", {"expires": "0s"}, 400, "invalid_value", "expires",
         ("in the future",)),
        ("dev-app-chat", {"endpoints": ["images"]}, 400, "invalid_value", "endpoints",
         ("Unknown endpoint(s): images",)),
        ("dev-app-chat", {"max_tokens": 0}, 400, "invalid_value", "max_tokens",
         ("greater than or equal to 1",)),
        ("dev-app-chat", {"name": "dev-app-renamed"}, 400, "invalid_value", "name",
         ("Extra inputs",)),
        ("dev-app-chat", {"env": "prod"}, 400, "invalid_value", "env", ("Extra inputs",)),
        ("dev-app-gone", {"limits": {"rpm": 1}}, 400, "invalid_value", "key",
         ("revoked; revocation is final", "Create a new key instead")),
        ("dev-app-none", {"limits": {"rpm": 1}}, 404, "not_found", "key",
         ("No key with id or name 'dev-app-none'",)),
    ]
    for key, payload, status, code, param, fragments in cases:
        reply, _ = await call(client, "PATCH", f"/admin/keys/{key}", template, payload)
        assert_error(reply, status, code, param, fragments)
    record = await client.runtime.store.find_key_by_name("dev-app-chat")
    assert record is not None
    assert (record.limits, record.ip_allowlist, record.team, record.expires_at) == (
        Limits(rpm=5), None, None, None)
    body = await client.request("PATCH", "/admin/keys/dev-app-chat", body=b'{"limits": ',
                                headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_error(body, 400, "invalid_json", None, ("JSON",))


@in_app
async def test_key_create_refuses_bad_limits(client: AppClient) -> None:
    for payload, param, fragment in (
            ({"limits": {"max_parallel": 0}}, "limits.max_parallel", "greater than or equal"),
            ({"limits": {"budget_usd": "NaN"}}, "limits.budget_usd", ""),
            ({"ip_allowlist": ["not-an-ip"]}, "ip_allowlist", "'not-an-ip'"),
            ({"ip_allowlist": ["10.0.0.0/8"], "team": "ghost"}, "team", "No team named")):
        reply, _ = await call(client, "POST", "/admin/keys", "/admin/keys",
                              {"name": "dev-app-chat", **payload})
        assert_error(reply, 400, "invalid_value", param, (fragment,))
    assert await client.runtime.store.list_keys() == []


# --- usage filters -----------------------------------------------------------------------------


@in_app
async def test_usage_groups_by_route_and_hour_and_filters(client: AppClient) -> None:
    now = time.time()

    def row(i: int, key: tuple[str, str], team: str, route: str, model: str, env: str = "prod",
            feature: str = "chat", cost: str = "0.002", provider: str = "mock",
            endpoint: str = "chat.completions") -> UsageRecord:
        return UsageRecord(request_id=f"r{i}", ts=now - 60, endpoint=endpoint, status=200,
                           key_id=key[0], key_name=key[1], team=team, env=env, feature=feature,
                           route=route, model_requested=model, model_served=model,
                           provider=provider, prompt_tokens=3, completion_tokens=2,
                           cost_usd=Decimal(cost), latency_ms=5.0)

    pay, search = ("payid001", "prod-pay-api"), ("srchid01", "dev-search-api")
    await client.runtime.store.insert_usage([
        row(0, pay, "payments", "checkout", "gpt-4o"),
        row(1, pay, "payments", "checkout", "gpt-4o-mini", feature="summary"),
        row(2, pay, "payments", "refunds", "gpt-4o", cost="0.01"),
        row(3, search, "search", "query", "text-embedding-3-small", env="dev",
            endpoint="embeddings", provider="other"),
    ])
    template = "/admin/usage"

    async def groups(query: str) -> dict[str | None, int]:
        reply, body = await call(client, "GET", f"/admin/usage?{query}", template)
        assert reply.status == 200
        return {r["group"]: r["requests"] for r in body["rows"]}

    assert await groups("by=route") == {"checkout": 2, "refunds": 1, "query": 1}
    assert await groups("by=route&team=payments") == {"checkout": 2, "refunds": 1}
    assert await groups("by=model&route=checkout") == {"gpt-4o": 1, "gpt-4o-mini": 1}
    assert await groups("by=team&env=dev") == {"search": 1}
    assert await groups("by=feature&key=payid001") == {"chat": 2, "summary": 1}
    assert await groups("by=feature&key=prod-pay-api&model=gpt-4o") == {"chat": 2}
    assert await groups("by=key&provider=other") == {"dev-search-api": 1}
    assert await groups("by=env&endpoint=embeddings") == {"dev": 1}
    assert await groups("by=team&team=nobody") == {}
    hours = await groups("by=hour&team=payments")
    assert sum(hours.values()) == 3 and len(hours) in (1, 2)

    _, body = await call(client, "GET", "/admin/usage?by=route&team=payments&since=1d",
                         template)
    assert (body["by"], body["since"], body["filters"]) == ("route", "1d",
                                                             {"team": "payments"})
    assert Decimal(next(r for r in body["rows"] if r["group"] == "refunds")["cost_usd"]) == \
        Decimal("0.01")
    _, unfiltered = await call(client, "GET", "/admin/usage", template)
    assert unfiltered["filters"] == {}

    bad, _ = await call(client, "GET", "/admin/usage?by=week", template)
    assert_error(bad, 400, "invalid_value", "by", ("'route'", "'hour'"))


# --- the OpenAPI document ----------------------------------------------------------------------


@in_app
async def test_the_openapi_document_describes_the_new_routes(client: AppClient) -> None:
    doc = await openapi(client)
    Draft202012Validator.check_schema({"components": doc["components"]})
    paths = doc["paths"]
    assert set(paths["/admin/teams"]) == {"get", "post"}
    assert set(paths["/admin/teams/{name}"]) == {"get", "patch"}
    assert "patch" in paths["/admin/keys/{key}"]
    schemas = doc["components"]["schemas"]

    def body_of(path: str, method: str) -> str:
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        return str(ref["$ref"]).rsplit("/", 1)[-1]

    assert body_of("/admin/teams", "post") == "TeamCreate"
    assert body_of("/admin/teams/{name}", "patch") == "TeamUpdate"
    assert body_of("/admin/keys/{key}", "patch") == "KeyUpdate"
    for name in ("TeamUpdate", "KeyUpdate", "LimitsPatch"):
        assert "required" not in schemas[name], name  # PATCH: every field optional
    assert "budget_usd" in schemas["LimitsIn"]["properties"]
    assert "limits" in schemas["KeyOut"]["required"]
    assert "ip_allowlist" in schemas["KeyCreate"]["properties"]
    for path, method in (("/admin/teams/{name}", "patch"), ("/admin/keys/{key}", "patch"),
                         ("/admin/teams", "post")):
        responses = paths[path][method]["responses"]
        for status in ("400", "404"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"}
        assert "422" not in responses
    usage_params = {p["name"] for p in paths["/admin/usage"]["get"]["parameters"]
                    if p["in"] == "query"}
    assert usage_params == {"by", "since", "key", "team", "env", "feature", "route", "model",
                            "provider", "endpoint"}


@in_app
async def test_text_longer_than_the_store_keeps_is_a_400_not_a_500(client: AppClient) -> None:
    reply = await client.admin("POST", "/admin/keys", {"name": "dev-long-owner",
                                                       "owner": "o" * 300})
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "owner"
    reply = await client.admin("POST", "/admin/teams", {"name": "long", "owner": "o" * 300})
    assert reply.status == 400
