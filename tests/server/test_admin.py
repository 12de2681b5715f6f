"""The admin API through the real app: the token guard, keys, providers, usage, and its own
OpenAPI document, which every response here is checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from jsonschema import Draft202012Validator

from keystead.config.load import LoadedConfig
from keystead.config.model import AdminConfig
from keystead.keys.format import KEY_PATTERN
from keystead.vault.envelope import VaultError
from openapi_schemas import validate
from support import ADMIN_TOKEN, AppClient, Reply, make_loaded, running_app

AppTest = Callable[[AppClient], Awaitable[None]]
PROVIDER_SECRET = "sk-extra-provider-secret-0123456789abcdef"


def run_app(loaded: LoadedConfig, test: AppTest) -> None:
    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


SharedRunner = Callable[[AppTest], None]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedRunner]:
    """One app with the default config, for the tests that only provoke errors (no key or
    provider is ever created on it). One event loop, run in this thread test by test."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    loaded = make_loaded(tmp_path_factory.mktemp("shared-admin"))
    client = loop.run_until_complete(stack.enter_async_context(running_app(loaded)))
    try:
        yield lambda test: loop.run_until_complete(asyncio.wait_for(test(client), 30))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def in_app(test: AppTest) -> Callable[[Path], None]:
    def sync_test(tmp_path: Path) -> None:
        run_app(make_loaded(tmp_path), test)

    sync_test.__name__, sync_test.__doc__ = test.__name__, test.__doc__
    return sync_test


_DOC: dict[str, Any] = {}


async def openapi(client: AppClient) -> dict[str, Any]:
    """The admin OpenAPI document (the same for every app: built once, it is slow to build)."""
    if not _DOC:
        reply = await client.request("GET", "/admin/openapi.json")
        assert reply.status == 200
        _DOC.update(reply.json())
    return _DOC


def documented(doc: dict[str, Any], method: str, template: str, reply: Reply) -> Any:
    """The reply's JSON, after checking it against the schema the document gives its status."""
    operation = doc["paths"][template][method.lower()]
    assert str(reply.status) in operation["responses"], (
        f"{method} {template} answered {reply.status}, which its OpenAPI entry does not list")
    content = operation["responses"][str(reply.status)].get("content")
    if not content:
        assert reply.body == b""
        return None
    schema = content["application/json"]["schema"]
    body = reply.json()
    Draft202012Validator({"components": doc["components"], **schema}).validate(body)
    return body


def assert_error(reply: Reply, status: int, code: str, param: Any = ...,
                 contains: tuple[str, ...] = ()) -> dict[str, Any]:
    assert reply.status == status, reply.body
    document = reply.json()
    validate(document, "ErrorResponse")
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    if param is not ...:
        assert error["param"] == param
    for fragment in contains:
        assert fragment in error["message"], error["message"]
    assert b"Traceback" not in reply.body
    return error


# --- the guard ---------------------------------------------------------------------------------


def api_routes(client: AppClient) -> list[Any]:
    """The admin API's routes as served (routers included, with their prefixes), not its docs.
    FastAPI keeps an included router whole: iter_route_contexts walks into it."""
    return [r for r in iter_route_contexts(client.app.admin_app().routes)
            if isinstance(r.original_route, APIRoute) and r.include_in_schema]


def admin_operations(client: AppClient) -> list[tuple[str, str, str]]:
    """Every (method, route template, concrete path) the admin API serves (not its docs)."""
    routes = api_routes(client)
    assert routes
    return sorted((method, r.path, r.path.replace("{key}", "somekey").replace("{name}", "mock"))
                  for r in routes for method in r.methods)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Bearer ",
                                           f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x"],
                         ids=["none", "wrong", "empty", "basic", "longer"])
def test_every_admin_route_needs_the_admin_token(shared: SharedRunner,
                                                 authorization: str | None):
    async def test(client: AppClient) -> None:
        headers = {} if authorization is None else {"authorization": authorization}
        doc = await openapi(client)
        for method, template, path in admin_operations(client):
            reply = await client.request(method, path, headers=headers, json_body={})
            error = assert_error(reply, 401, "invalid_api_key", None,
                                 ("admin token", "Authorization: Bearer"))
            assert ADMIN_TOKEN not in error["message"]
            assert reply.headers["www-authenticate"] == 'Bearer realm="keystead"'
            documented(doc, method, template, reply)

    shared(test)


def test_without_a_configured_admin_token_the_admin_api_is_disabled(tmp_path: Path):
    loaded = make_loaded(tmp_path)
    config = loaded.config.model_copy(update={"admin": AdminConfig()})
    assert config.admin.token is None

    async def test(client: AppClient) -> None:
        for method, _, path in admin_operations(client):
            reply = await client.admin(method, path)
            assert_error(reply, 403, "permission_denied", None,
                         ("admin API is disabled", "KEYSTEAD_ADMIN_TOKEN"))

    run_app(LoadedConfig(config, None, tmp_path), test)


# --- keys ----------------------------------------------------------------------------------------


@in_app
async def test_a_created_key_is_shown_once_and_never_again(client: AppClient) -> None:
    doc = await openapi(client)
    assert (await client.admin("POST", "/admin/teams", {"name": "payments"})).status == 201
    created = await client.admin("POST", "/admin/keys", {
        "name": "prod-webhook-bot-01", "team": "payments", "owner": "ana@example.com",
        "description": "webhooks", "models": ["gpt-4o-mini"], "endpoints": ["chat.completions"],
        "max_tokens": 500, "max_body_bytes": 4096, "expires": "30d"})
    body = documented(doc, "POST", "/admin/keys", created)
    assert created.status == 201
    text = body["key"]
    assert KEY_PATTERN.fullmatch(text)
    assert body["id"] == text[4:12]
    assert {k: body[k] for k in ("name", "status", "env", "team", "owner", "models", "endpoints",
                                 "max_tokens", "max_body_bytes", "revoked_at")} == {
        "name": "prod-webhook-bot-01", "status": "active", "env": "prod", "team": "payments",
        "owner": "ana@example.com", "models": ["gpt-4o-mini"], "endpoints": ["chat.completions"],
        "max_tokens": 500, "max_body_bytes": 4096, "revoked_at": None}
    assert body["expires_at"] > body["created_at"]
    # The key works...
    chat = await client.request("POST", "/v1/chat/completions", key=text, json_body={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 200
    # ...and no later read shows it, nor its hash.
    record = await client.runtime.store.get_key(body["id"])
    assert record is not None
    reads = [("GET", "/admin/keys", "/admin/keys"),
             ("GET", f"/admin/keys/{body['id']}", "/admin/keys/{key}"),
             ("GET", "/admin/keys/prod-webhook-bot-01", "/admin/keys/{key}"),
             ("POST", f"/admin/keys/{body['id']}/revoke", "/admin/keys/{key}/revoke"),
             ("GET", "/admin/usage?by=key", "/admin/usage"),
             ("GET", "/admin/status", "/admin/status")]
    for method, path, template in reads:
        reply = await client.admin(method, path)
        assert reply.status == 200, (path, reply.body)
        documented(doc, method, template, reply)
        assert text.encode() not in reply.body and text[12:44].encode() not in reply.body
        assert record.key_hash.encode() not in reply.body and b"key_hash" not in reply.body
        if template.startswith("/admin/keys"):
            views = reply.json() if isinstance(reply.json(), list) else [reply.json()]
            assert all("key" not in view for view in views)


@in_app
async def test_keys_are_listed_shown_by_id_or_name_and_revoked(client: AppClient) -> None:
    doc = await openapi(client)
    first = (await client.admin("POST", "/admin/keys", {"name": "dev-search-indexer"})).json()
    assert (await client.admin("POST", "/admin/teams", {"name": "search"})).status == 201
    second = (await client.admin("POST", "/admin/keys", {"name": "staging-search-api-02",
                                                         "team": "search"})).json()
    listing = documented(doc, "GET", "/admin/keys", await client.admin("GET", "/admin/keys"))
    assert sorted(k["name"] for k in listing) == ["dev-search-indexer", "staging-search-api-02"]
    assert {k["env"] for k in listing} == {"dev", "staging"}
    by_id = await client.admin("GET", f"/admin/keys/{second['id']}")
    by_name = await client.admin("GET", "/admin/keys/staging-search-api-02")
    assert documented(doc, "GET", "/admin/keys/{key}", by_id) == by_name.json()
    assert by_id.json()["team"] == "search"

    before = time.time()
    revoked = await client.admin("POST", f"/admin/keys/{first['id']}/revoke",
                                 {"reason": "rotated"})
    body = documented(doc, "POST", "/admin/keys/{key}/revoke", revoked)
    assert (body["status"], body["revoked_reason"]) == ("revoked", "rotated")
    assert body["revoked_at"] is not None
    again = await client.admin("POST", "/admin/keys/dev-search-indexer/revoke",
                               {"reason": "second time"})
    assert again.status == 200
    assert (again.json()["revoked_at"], again.json()["revoked_reason"]) == (body["revoked_at"],
                                                                           "rotated")
    no_body = await client.admin("POST", f"/admin/keys/{second['id']}/revoke")
    assert no_body.json()["status"] == "revoked" and no_body.json()["revoked_reason"] is None
    statuses = {k["name"]: k["status"] for k in (await client.admin("GET", "/admin/keys")).json()}
    assert statuses == {"dev-search-indexer": "revoked", "staging-search-api-02": "revoked"}
    record = await client.runtime.store.get_key(first["id"])
    assert record is not None and record.revoked_at is not None
    assert record.revoked_at >= before - 1

    missing = await client.admin("GET", "/admin/keys/prod-nobody-here")
    documented(doc, "GET", "/admin/keys/{key}", missing)
    assert_error(missing, 404, "not_found", "key", ("prod-nobody-here", "keystead keys list"))
    missing_revoke = await client.admin("POST", "/admin/keys/nope/revoke")
    assert_error(missing_revoke, 404, "not_found", "key")


@pytest.mark.parametrize(("payload", "code", "param", "fragments"), [
    ({"name": "Billing Bot"}, "invalid_key_name", "name",
     ("does not follow the naming rule", "<env>-<service>-<purpose>[-NN]",
      "e.g. prod-webhook-bot-01")),
    ({"name": "prod_webhook_bot"}, "invalid_key_name", "name", ("naming rule",)),
    ({"name": "qa-webhook-bot"}, "invalid_key_name", "name",
     ("environment 'qa'", "dev, staging, prod", "keys.environments")),
    ({"name": "prod-webhook-bot", "env": "dev"}, "invalid_key_name", "env",
     ("says environment 'prod' but --env is 'dev'",)),
    ({"name": "dev-a-b", "endpoints": ["chat.completions", "images"]}, "invalid_value",
     "endpoints", ("Unknown endpoint(s): images", "Choose from")),
    ({"name": "dev-a-b", "expires": "forever"}, "invalid_value", "expires",
     ("'forever' is not a duration", "30d")),
    ({"name": "dev-a-b", "expires": "0s"}, "invalid_value", "expires", ("in the future",)),
], ids=["spaces", "underscores", "unknown-env", "env-mismatch", "endpoint", "expires",
        "expires-zero"])
def test_key_rules_are_explained_in_openai_shaped_400s(
        shared: SharedRunner, payload: dict[str, Any], code: str, param: str,
        fragments: tuple[str, ...]):
    async def test(client: AppClient) -> None:
        reply = await client.admin("POST", "/admin/keys", payload)
        documented(await openapi(client), "POST", "/admin/keys", reply)
        assert_error(reply, 400, code, param, fragments)
        assert await client.runtime.store.list_keys() == []

    shared(test)


@in_app
async def test_a_duplicate_key_name_is_refused(client: AppClient) -> None:
    await client.create_key("prod-mailer-bot")
    reply = await client.admin("POST", "/admin/keys", {"name": "prod-mailer-bot"})
    assert_error(reply, 400, "duplicate_name", "name", ("exists already", "-NN suffix"))


@pytest.mark.parametrize(("method", "path", "payload", "param", "fragment"), [
    ("POST", "/admin/keys", {"name": "dev-a-b", "colour": "red"}, "colour",
     "Extra inputs are not permitted"),
    ("POST", "/admin/keys", {"name": "dev-a-b", "max_tokens": 0}, "max_tokens",
     "greater than or equal to 1"),
    ("POST", "/admin/keys", {"name": "dev-a-b", "max_body_bytes": 10}, "max_body_bytes",
     "greater than or equal to 1024"),
    ("POST", "/admin/keys", {"name": "dev-a-b", "models": "gpt-4o"}, "models", "valid list"),
    ("POST", "/admin/keys", {"team": "x"}, "name", "Field required"),
    ("POST", "/admin/keys/some/revoke", {"reason": "x", "when": "now"}, "when",
     "Extra inputs"),
    ("POST", "/admin/providers", {"name": "x", "type": "bedrock"}, "type", "Input should be"),
    ("GET", "/admin/usage?by=colour", None, "by", "'key', 'team', 'env'"),
    ("GET", "/admin/usage?since=forever", None, "since", "is not a duration"),
], ids=["extra-field", "max-tokens", "max-body", "models-type", "no-name", "revoke-extra",
        "provider-type", "usage-by", "usage-since"])
def test_validation_errors_are_openai_shaped_400s_naming_the_parameter(
        shared: SharedRunner, method: str, path: str, payload: Any, param: str, fragment: str):
    async def test(client: AppClient) -> None:
        reply = await client.admin(method, path, payload)
        documented(await openapi(client), method, path.split("?")[0]
                   .replace("/some/", "/{key}/"), reply)
        assert_error(reply, 400, "invalid_value", param, (fragment,))

    shared(test)


@in_app
async def test_a_body_that_is_not_json_is_an_invalid_json_400(client: AppClient) -> None:
    reply = await client.request("POST", "/admin/keys", body=b'{"name": "dev-a-b",',
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_error(reply, 400, "invalid_json", None, ("JSON",))


@in_app
async def test_an_unknown_admin_route_is_an_openai_shaped_404(client: AppClient) -> None:
    reply = await client.admin("GET", "/admin/nothing-here")
    assert_error(reply, 404, "unknown_url", None, ("/admin/nothing-here",))
    wrong_method = await client.admin("PUT", "/admin/keys")
    assert_error(wrong_method, 405, "method_not_allowed")


# --- providers ---------------------------------------------------------------------------------


@in_app
async def test_a_provider_key_goes_into_the_vault_and_never_comes_back_out(
        client: AppClient) -> None:
    doc = await openapi(client)
    added = await client.admin("POST", "/admin/providers", {
        "name": "extra", "type": "mock", "api_key": PROVIDER_SECRET, "models": ["extra-model"]})
    body = documented(doc, "POST", "/admin/providers", added)
    assert added.status == 201
    (key,) = body.pop("keys")
    assert body == {"name": "extra", "type": "mock", "base_url": None, "source": "store",
                    "api_key": "vault", "models": ["extra-model"], "deployments": {},
                    "api_version": None, "status": "ok", "error": None}
    assert key == {"label": "#1", "source": "vault", "state": "active", "since": None,
                   "until": None, "reason": None,
                   "fingerprint": hashlib.sha256(PROVIDER_SECRET.encode()).hexdigest()[:12]}
    assert await client.runtime.vault.get("provider:extra") == PROVIDER_SECRET.encode()
    record = next(r for r in await client.runtime.store.list_providers() if r.name == "extra")
    assert record.api_key_ref == "vault:provider:extra"
    assert PROVIDER_SECRET not in repr(record)

    listing = await client.admin("GET", "/admin/providers")
    providers = {p["name"]: p for p in documented(doc, "GET", "/admin/providers", listing)}
    assert set(providers) == {"mock", "extra"}
    assert providers["extra"]["api_key"] == "vault"
    assert providers["mock"]["source"] == "config" and providers["mock"]["api_key"] is None
    # The mock provider demands the key it was given: a passing test proves the vault's key
    # is the one sent.
    tested = await client.admin("POST", "/admin/providers/extra/test")
    result = documented(doc, "POST", "/admin/providers/{name}/test", tested)
    assert (result["ok"], result["status"], result["detail"]) == (True, 200, "ok")
    key = await client.create_key()
    chat = await client.request("POST", "/v1/chat/completions", key=key, json_body={
        "model": "extra-model", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 200 and chat.headers["x-keystead-provider"] == "extra"
    for reply in (added, listing, tested, chat):
        assert PROVIDER_SECRET.encode() not in reply.body
        assert PROVIDER_SECRET[10:30].encode() not in reply.body

    removed = await client.admin("DELETE", "/admin/providers/extra")
    assert removed.status == 204
    documented(doc, "DELETE", "/admin/providers/{name}", removed)
    names = [p["name"] for p in (await client.admin("GET", "/admin/providers")).json()]
    assert names == ["mock"]
    with pytest.raises(VaultError):
        await client.runtime.vault.get("provider:extra")
    gone = await client.request("POST", "/v1/chat/completions", key=key, json_body={
        "model": "extra-model", "messages": [{"role": "user", "content": "hi"}]})
    assert gone.status == 404


@in_app
async def test_testing_providers_reports_what_happened(client: AppClient) -> None:
    doc = await openapi(client)
    ok = await client.admin("POST", "/admin/providers/mock/test")
    body = documented(doc, "POST", "/admin/providers/{name}/test", ok)
    assert (body["name"], body["ok"], body["status"]) == ("mock", True, 200)
    assert body["latency_ms"] >= 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    added = await client.admin("POST", "/admin/providers", {
        "name": "local", "type": "openai-compatible", "base_url": f"http://127.0.0.1:{port}/v1",
        "models": ["llama-3"]})
    assert added.status == 201 and added.json()["api_key"] is None
    down = await client.admin("POST", "/admin/providers/local/test")
    body = documented(doc, "POST", "/admin/providers/{name}/test", down)
    assert (body["ok"], body["status"]) == (False, None)
    assert f"connection refused by 127.0.0.1:{port}: nothing listens there" in body["detail"]
    unknown = await client.admin("POST", "/admin/providers/nope/test")
    documented(doc, "POST", "/admin/providers/{name}/test", unknown)
    assert_error(unknown, 404, "not_found", "name", ("No provider named 'nope'",))


@pytest.mark.parametrize(("payload", "code", "param", "fragment"), [
    ({"name": "Bad Name", "type": "mock"}, "invalid_value", "name", "lowercase letters"),
    ({"name": "vllm", "type": "openai-compatible"}, "invalid_value", "base_url", "needs"),
    ({"name": "vllm", "type": "openai-compatible", "base_url": "localhost:8000"},
     "invalid_value", "base_url", "http:// or https://"),
    ({"name": "oai", "type": "openai", "base_url": "https://api.openai.com/v1"},
     "invalid_value", "api_key", "needs a key"),
    ({"name": "oai", "type": "openai", "base_url": "https://api.openai.com/v1",
      "api_key": "sk-x", "api_key_env": "OPENAI_API_KEY"}, "invalid_value", "api_key",
     "one way"),
    ({"name": "oai", "type": "openai", "base_url": "https://api.openai.com/v1",
      "api_key_env": "not a var"}, "invalid_value", "api_key_env", "environment variable"),
    ({"name": "mock", "type": "mock"}, "duplicate_name", "name", "defined in the config"),
], ids=["name", "no-base-url", "base-url-scheme", "no-key", "two-keys", "env-name",
        "config-name"])
def test_provider_rules_are_explained_in_openai_shaped_400s(
        shared: SharedRunner, payload: dict[str, Any], code: str, param: str, fragment: str):
    async def test(client: AppClient) -> None:
        reply = await client.admin("POST", "/admin/providers", payload)
        documented(await openapi(client), "POST", "/admin/providers", reply)
        error = assert_error(reply, 400, code, param, (fragment,))
        assert "sk-x" not in error["message"]
        assert await client.runtime.store.list_providers() == []

    shared(test)


@in_app
async def test_providers_are_removed_only_from_the_store(client: AppClient) -> None:
    first = await client.admin("POST", "/admin/providers", {"name": "twice", "type": "mock"})
    assert first.status == 201
    second = await client.admin("POST", "/admin/providers", {"name": "twice", "type": "mock"})
    assert_error(second, 400, "duplicate_name", "name", ("exists already",))
    from_config = await client.admin("DELETE", "/admin/providers/mock")
    assert_error(from_config, 400, "invalid_value", "name", ("defined in the config file",))
    unknown = await client.admin("DELETE", "/admin/providers/nope")
    assert_error(unknown, 404, "not_found", "name", ("No provider named 'nope'",))
    assert (await client.admin("DELETE", "/admin/providers/twice")).status == 204
    assert (await client.admin("DELETE", "/admin/providers/twice")).status == 404


# --- usage ------------------------------------------------------------------------------------


@in_app
async def test_the_usage_report_groups_requests_tokens_errors_and_cost(
        client: AppClient) -> None:
    doc = await openapi(client)
    for team in ("alpha", "beta"):
        assert (await client.admin("POST", "/admin/teams", {"name": team})).status == 201
    alpha = await client.create_key("prod-alpha-api", team="alpha")
    beta = await client.create_key("prod-beta-api", team="beta")

    async def chat(key: str, text: str, feature: str) -> Reply:
        return await client.request("POST", "/v1/chat/completions", key=key, json_body={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
            headers={"x-keystead-feature": feature})

    replies = [await chat(alpha, "one [[mock:tokens=3]]", "search"),
               await chat(alpha, "two [[mock:tokens=5]]", "summary"),
               await chat(alpha, "bad [[mock:status=500]]", "summary"),
               await chat(beta, "three [[mock:tokens=7]]", "search")]
    assert [r.status for r in replies] == [200, 200, 500, 200]
    costs = [Decimal(r.headers["x-keystead-cost-usd"]) for r in replies]
    usage = [r.json().get("usage") or {"prompt_tokens": 0, "completion_tokens": 0}
             for r in replies]

    by_key = documented(doc, "GET", "/admin/usage", await client.admin("GET", "/admin/usage"))
    assert (by_key["by"], by_key["since"]) == ("key", "7d")
    rows = {row["group"]: row for row in by_key["rows"]}
    assert set(rows) == {"prod-alpha-api", "prod-beta-api"}
    assert (rows["prod-alpha-api"]["requests"], rows["prod-alpha-api"]["errors"]) == (3, 1)
    assert (rows["prod-beta-api"]["requests"], rows["prod-beta-api"]["errors"]) == (1, 0)
    assert rows["prod-alpha-api"]["completion_tokens"] == 3 + 5
    assert rows["prod-alpha-api"]["prompt_tokens"] == sum(u["prompt_tokens"]
                                                          for u in usage[:3])
    assert Decimal(rows["prod-alpha-api"]["cost_usd"]) == sum(costs[:3])
    assert Decimal(rows["prod-beta-api"]["cost_usd"]) == costs[3]
    assert by_key["rows"][0]["group"] == max(rows, key=lambda g: Decimal(rows[g]["cost_usd"]))

    by_feature = await client.admin("GET", "/admin/usage?by=feature&since=1h")
    features = {row["group"]: row for row in
                documented(doc, "GET", "/admin/usage", by_feature)["rows"]}
    assert {g: (r["requests"], r["completion_tokens"]) for g, r in features.items()} == {
        "search": (2, 10), "summary": (2, 5)}
    by_team = (await client.admin("GET", "/admin/usage?by=team")).json()
    assert {row["group"]: row["requests"] for row in by_team["rows"]} == {"alpha": 3, "beta": 1}
    by_model = (await client.admin("GET", "/admin/usage?by=model")).json()
    assert {row["group"]: row["requests"] for row in by_model["rows"]} == {"gpt-4o-mini": 4}
    by_day = (await client.admin("GET", "/admin/usage?by=day")).json()
    assert [row["requests"] for row in by_day["rows"]] == [4]
    assert by_day["rows"][0]["group"] == time.strftime("%Y-%m-%d", time.gmtime())


# --- the OpenAPI document ------------------------------------------------------------------


@in_app
async def test_the_openapi_document_describes_every_admin_route(client: AppClient) -> None:
    reply = await client.request("GET", "/admin/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "keystead admin API"
    Draft202012Validator.check_schema({"components": doc["components"]})
    served = {(method.lower(), route.path) for route in api_routes(client)
              for method in route.methods}
    listed = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert listed == served
    assert all(path.startswith("/admin/") for path in doc["paths"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status in ("401", "403"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method)
    key_created = doc["components"]["schemas"]["KeyCreated"]
    assert "key" in key_created["required"]
    assert "key" not in doc["components"]["schemas"]["KeyOut"]["properties"]
    create = doc["paths"]["/admin/keys"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreate"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreated"}


def test_disable_and_enable_a_key_through_the_admin_api(tmp_path) -> None:
    import asyncio

    from support import make_loaded, running_app

    async def run() -> None:
        async with running_app(make_loaded(tmp_path)) as client:
            key = await client.create_key("dev-pause-me")
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            ok = await client.request("POST", "/v1/chat/completions", key=key, json_body=chat)
            assert ok.status == 200
            paused = await client.admin("POST", "/admin/keys/dev-pause-me/disable")
            assert paused.status == 200 and paused.json()["status"] == "disabled"
            refused = await client.request("POST", "/v1/chat/completions", key=key,
                                           json_body=chat)
            assert refused.status == 401 and refused.json()["error"]["code"] == "key_disabled"
            enabled = await client.admin("POST", "/admin/keys/dev-pause-me/enable")
            assert enabled.json()["status"] == "active" and enabled.json()["disabled_at"] is None
            again = await client.request("POST", "/v1/chat/completions", key=key, json_body=chat)
            assert again.status == 200
            await client.admin("POST", "/admin/keys/dev-pause-me/revoke")
            final = await client.admin("POST", "/admin/keys/dev-pause-me/enable")
            assert final.status == 400 and "revocation is final" in final.json()["error"]["message"]

    asyncio.run(run())
