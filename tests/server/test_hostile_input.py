"""Hostile values on the data plane (issue 13): each is refused where it enters with an
OpenAI-format 4xx, nothing reaches the provider or the limiter, and the request is recorded.

Every case here was a 500, a dropped connection or a way around a limit before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openapi_schemas import validate
from support import AppClient, Reply, run_in_app

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"

AppTest = Callable[[AppClient], Awaitable[None]]


def run_app(tmp_path: Path, test: AppTest, raw: dict[str, Any] | None = None,
            env: dict[str, str] | None = None) -> None:
    run_in_app(tmp_path, test, raw, env)


def received(client: AppClient, provider: str = "mock") -> list[Any]:
    return list(client.runtime.providers.providers[provider].transport.app.received)


def assert_error(reply: Reply, status: int, code: str, param: str | None = None) -> None:
    assert reply.status == status, reply.body
    document = reply.json()
    validate(document, "ErrorResponse")
    assert document["error"]["code"] == code, document
    if param is not None:
        assert document["error"]["param"] == param, document
    assert document["error"]["message"].strip()


async def raw_request(client: AppClient, method: str, path: str,
                      headers: list[tuple[bytes, bytes]], chunks: list[bytes],
                      delay_s: float = 0.0) -> Reply:
    """The app called with raw header bytes and a body in `chunks`, `delay_s` between them."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80), "headers": headers}
    pending = list(chunks)
    status = 0
    out_headers: dict[str, str] = {}
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not pending:
            await asyncio.sleep(3600)
        if delay_s:
            await asyncio.sleep(delay_s)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update((k.decode(), v.decode()) for k, v in message["headers"])
        elif message.get("body"):
            body.append(message["body"])

    await client.app(scope, receive, send)
    return Reply(status, out_headers, b"".join(body))


async def rows(client: AppClient) -> list[Any]:
    await client.runtime.ledger.flush()
    return list(reversed(await client.runtime.store.recent_usage(100)))


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields}


# --- output caps: zero, negative, huge ----------------------------------------------------------

CAPS = [
    (CHAT, "max_tokens", {}), (CHAT, "max_completion_tokens", {}),
    (CHAT, "max_tokens", {"stream": True}),
    (RESPONSES, "max_output_tokens", {"input": "hi"}),
    (RESPONSES, "max_output_tokens", {"input": "hi", "stream": True}),
]


@pytest.mark.parametrize("value", [0, -1, -1_000_000_000, 2**63, 10**30])
@pytest.mark.parametrize(("path", "field", "extra"), CAPS)
def test_an_output_cap_below_one_or_absurdly_high_is_refused_before_the_limiter(
        tmp_path: Path, path: str, field: str, extra: dict[str, Any], value: int) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-caps-test", limits={"tpm": 1000})
        body = {"model": "gpt-4o-mini", field: value, **extra}
        if path == CHAT:
            body["messages"] = [{"role": "user", "content": "hi"}]
        reply = await client.request("POST", path, json_body=body, key=key)
        assert_error(reply, 400, "invalid_value", field)
        assert received(client) == []
        # The token limit was not charged (a negative charge locked teams out for a week).
        for _ in range(3):
            ok = await client.request("POST", CHAT, json_body=chat_body(max_tokens=100), key=key)
            assert ok.status == 200, ok.body

    run_app(tmp_path, test)


def test_a_negative_max_tokens_on_anthropic_messages_is_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-caps-test")
        reply = await client.request("POST", MESSAGES, key=key, json_body={
            "model": "claude-3-5-haiku-latest", "max_tokens": -5,
            "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status == 400, reply.body
        document = reply.json()
        assert document["type"] == "error"  # Anthropic's envelope on Anthropic's route
        assert document["error"]["type"] == "invalid_request_error"

    run_app(tmp_path, test, raw={"providers": {"claude": {
        "type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "${ANTHROPIC_KEY}",
        "models": ["claude-*"]}}}, env={"ANTHROPIC_KEY": "sk-ant-test"})


def test_negative_max_tokens_cannot_walk_around_a_tiny_budget(tmp_path: Path) -> None:
    """The attack: 200 concurrent requests with max_tokens -10^9 on a $0.0005 budget let 25x
    the budget through. Now every one is refused and nothing is spent."""
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-budget-test", limits={"budget_usd": "0.0005"})
        replies = await asyncio.gather(*(
            client.request("POST", CHAT, key=key, json_body=chat_body(max_tokens=-10**9))
            for _ in range(200)))
        assert {r.status for r in replies} == {400}
        assert received(client) == []
        assert sum(row.cost_usd for row in await rows(client)) == 0

    run_app(tmp_path, test)


def test_n_outside_one_to_128_is_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-n-test")
        for n in (0, -3, 129):
            reply = await client.request("POST", CHAT, json_body=chat_body(n=n), key=key)
            assert_error(reply, 400, "invalid_value", "n")
        assert received(client) == []

    run_app(tmp_path, test)


def test_a_tokens_cap_is_narrowed_when_its_key_is_narrowed(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-token-test", max_tokens=500)
        minted = await client.request("POST", "/v1/keystead/tokens", key=key,
                                      json_body={"ttl": "5m", "max_tokens": 400})
        assert minted.status in (200, 201), minted.body
        token = minted.json()["token"]
        key_id = key.split("_")[1][:8]
        assert (await client.admin("PATCH", f"/admin/keys/{key_id}",
                                   {"max_tokens": 100})).status == 200
        reply = await client.request("POST", CHAT, json_body=chat_body(max_tokens=300),
                                     key=token)
        assert_error(reply, 400, "max_tokens_exceeded", "max_tokens")
        ok = await client.request("POST", CHAT, json_body=chat_body(max_tokens=100), key=token)
        assert ok.status == 200, ok.body

    run_app(tmp_path, test)


def test_both_cap_fields_are_checked_and_the_larger_one_counts(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-both-test", max_tokens=100)
        reply = await client.request("POST", CHAT, key=key, json_body=chat_body(
            max_completion_tokens=50, max_tokens=100_000))
        assert_error(reply, 400, "max_tokens_exceeded", "max_tokens")
        assert received(client) == []

    run_app(tmp_path, test)


# --- model names --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [
    "gpt\u0000mini", "gpt-4o\r\nx-injected: 1", "gpt 4o", "gpt-4o?x=1", "gpt-4o#frag",
    "gpt-4o%2f..%2fx", "gpt-4o-x/../../expensive-dep/chat/completions?x=", "../etc",
    "m" * 257, "", "gpt-4ö", "a/./b",
])
def test_model_names_that_no_model_has_are_refused_and_recorded(tmp_path: Path,
                                                                model: str) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-model-test")
        reply = await client.request("POST", CHAT, json_body=chat_body(model=model), key=key)
        assert_error(reply, 400, "invalid_model_name", "model")
        assert received(client) == []
        recorded = await rows(client)
        assert [(r.status, r.error_code) for r in recorded] == [(400, "invalid_model_name")]

    run_app(tmp_path, test)


def test_a_model_field_sent_twice_is_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-dup-test", models=["gpt-4o-mini"])
        body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],' \
               b'"model":"gpt-4o"}'
        reply = await client.request("POST", CHAT, body=body, key=key)
        assert_error(reply, 400, "duplicate_field", "model")
        capped = await client.create_key("dev-dup2-test", max_tokens=10)
        for body in (b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[],"max_tokens":9000}',
                     b'{"model":"gpt-4o-mini","max_tokens":9000,"messages":[],"max_tokens":5}'):
            assert_error(await client.request("POST", CHAT, body=body, key=capped), 400,
                         "duplicate_field", "max_tokens")
        assert received(client) == []
        # The same name inside messages is no duplicate.
        ok = await client.request("POST", CHAT, key=key, json_body=chat_body(
            messages=[{"role": "user", "content": "model"}, {"role": "user", "content": "n"}]))
        assert ok.status == 200, ok.body

    run_app(tmp_path, test)


# --- structure and encoding ---------------------------------------------------------------------

@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_a_body_nested_too_deeply_is_400_not_a_500(tmp_path: Path, depth: int) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-deep-test")
        for field in ("messages", "tools", "extra"):
            nested = b"[" * depth + b"]" * depth
            body = b'{"model":"gpt-4o-mini","messages":[],"' + field.encode() + b'":' + \
                nested + b"}"
            if field == "messages":
                body = b'{"model":"gpt-4o-mini","messages":' + nested + b"}"
            reply = await client.request("POST", CHAT, body=body, key=key)
            assert_error(reply, 400, "invalid_json")
        assert received(client) == []

    run_app(tmp_path, test)


def test_deep_but_reasonable_bodies_and_brackets_in_strings_pass(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-deep-test")
        schema: dict[str, Any] = {"type": "string"}
        for _ in range(12):  # OpenAI allows ten levels of nesting in a structured-output schema
            schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
        text = "[[[[{{{{" * 100 + '\\"]]]]' * 50
        reply = await client.request("POST", CHAT, key=key, json_body=chat_body(
            messages=[{"role": "user", "content": text}] * 60,
            response_format={"type": "json_schema", "json_schema": {
                "name": "deep", "schema": schema}}))
        assert reply.status == 200, reply.body

    run_app(tmp_path, test)


def test_invalid_utf8_in_the_model_or_anywhere_is_400(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-utf8-test")
        for body in (b'{"model":"gpt\xff\xfe","messages":[]}',
                     b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xc3"}]}'):
            reply = await client.request("POST", CHAT, body=body, key=key)
            assert_error(reply, 400, "invalid_json")
        assert received(client) == []

    run_app(tmp_path, test)


# --- headers ------------------------------------------------------------------------------------

def test_a_non_ascii_bearer_token_is_401_not_a_500(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        for token in ("kst_é.x".encode(), b"kst_\xff\xfe.abc", "ksk_ünïcode".encode(),
                      b"kst_" + b"a" * 5000 + b".b", b"ksk_\x00\x01"):
            reply = await raw_request(client, "POST", CHAT, [
                (b"authorization", b"Bearer " + token),
                (b"content-type", b"application/json")], [b"{}"])
            assert_error(reply, 401, "invalid_api_key")

    run_app(tmp_path, test)


def test_a_feature_tag_that_is_not_printable_ascii_is_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-feature-test")
        body = json.dumps(chat_body()).encode()
        for tag in (b"support\x00chat", b"caf\xe9", b"x" * 129, b"\t"):
            reply = await raw_request(client, "POST", CHAT, [
                (b"authorization", f"Bearer {key}".encode()), (b"x-keystead-feature", tag)],
                [body])
            assert_error(reply, 400, "invalid_header", "x-keystead-feature")
        reply = await raw_request(client, "POST", CHAT, [
            (b"authorization", f"Bearer {key}".encode()),
            (b"x-keystead-feature", b"support-chat v2"), (b"user-agent", b"bot\x01\xff/1")],
            [body])
        assert reply.status == 200, reply.body
        recorded = await rows(client)
        assert recorded[-1].feature == "support-chat v2"
        assert recorded[-1].user_agent == "bot?\xff/1"  # control characters replaced

    run_app(tmp_path, test)


def test_a_content_length_above_the_limit_is_413_before_any_byte_is_read(
        tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-length-test")
        reply = await asyncio.wait_for(raw_request(client, "POST", CHAT, [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-length", b"100000000000")], []), 5)  # receive() would wait an hour
        assert_error(reply, 413, "request_too_large")

    run_app(tmp_path, test)


def test_a_body_cut_off_by_the_protocol_is_a_recorded_408(tmp_path: Path) -> None:
    """The HTTP protocol (server/protocol.py) cuts a body that does not arrive within
    server.body_timeout_s: it marks the request's scope, then closes the connection. The data
    plane records that disconnect as the 408 it is; any other disconnect is a client that left.
    (tests/e2e/test_hostile_clients.py proves the deadline itself on a real server.)"""
    from keystead.pipeline.parse import BODY_TIMED_OUT

    async def request(client: AppClient, key: str, timed_out: bool) -> Reply:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
                 "server": ("testserver", 80),
                 "headers": [(b"authorization", f"Bearer {key}".encode())]}
        messages = [{"type": "http.request", "body": b'{"model":', "more_body": True}]
        status = 0
        body: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            if timed_out:
                scope[BODY_TIMED_OUT] = True
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message.get("body"):
                body.append(message["body"])

        await client.app(scope, receive, send)
        return Reply(status, {}, b"".join(body))

    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-slow-test")
        assert_error(await request(client, key, timed_out=True), 408, "request_timeout")
        assert_error(await request(client, key, timed_out=False), 400, "invalid_json")
        assert [(r.status, r.error_code) for r in await rows(client)] == [
            (408, "request_timeout"), (400, "invalid_json")]

    run_app(tmp_path, test)


# --- paths and methods --------------------------------------------------------------------------

def test_unknown_paths_are_recorded_under_their_own_endpoint(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-paths-test")
        reply = await client.request("POST", "/v1/completions", json_body={}, key=key)
        assert_error(reply, 404, "unknown_url")
        recorded = await rows(client)
        assert [(r.endpoint, r.status) for r in recorded] == [("unknown", 404)]

    run_app(tmp_path, test)


def test_a_doubled_v1_gets_a_hint_to_drop_it(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-paths-test")
        reply = await client.request("POST", "/v1/v1/messages", key=key, json_body={})
        assert reply.status == 404
        document = reply.json()
        assert document["type"] == "error"  # Anthropic's SDK made it: Anthropic's envelope
        assert "without /v1" in document["error"]["message"]
        reply = await client.request("POST", "/v1/v1/chat/completions", key=key, json_body={})
        assert_error(reply, 404, "unknown_url")
        assert "without /v1" in reply.json()["error"]["message"]

    run_app(tmp_path, test)


def test_a_405_names_the_allowed_method(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-paths-test")
        reply = await client.request("GET", CHAT, key=key)
        assert_error(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == "POST"
        reply = await client.request("POST", "/v1/models", key=key)
        assert reply.headers["allow"] == "GET"

    run_app(tmp_path, test)


def test_models_lists_routes_as_models_within_the_keys_scope(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-models-test")
        listed = (await client.request("GET", "/v1/models", key=key)).json()
        validate(listed, "ListModelsResponse")
        owners = {m["id"]: m["owned_by"] for m in listed["data"]}
        assert owners["support-default"] == "keystead"
        assert owners["gpt-4o-mini"] == "mock"
        one = await client.request("GET", "/v1/models/support-default", key=key)
        assert one.json()["id"] == "support-default"
        scoped = await client.create_key("dev-scoped-test", models=["gpt-*"])
        listed = (await client.request("GET", "/v1/models", key=scoped)).json()
        assert "support-default" not in {m["id"] for m in listed["data"]}

    run_app(tmp_path, test, raw={"routes": {"support-default": {
        "deployments": [{"provider": "mock", "model": "gpt-4o-mini"}]}}})


def test_costs_stay_exact_decimal(tmp_path: Path) -> None:
    """Guard for the helpers above: rows carry nano-dollars as integers."""
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-cost-test")
        reply = await client.request("POST", CHAT, json_body=chat_body(), key=key)
        recorded = await rows(client)
        assert Decimal(reply.headers["x-keystead-cost-usd"]) == recorded[0].cost_usd

    run_app(tmp_path, test)


@pytest.mark.parametrize("messages", [True, 1, "hi", None, {"role": "user"}, [[1, [2]]]])
def test_the_guardrail_reads_any_json_shape_without_failing(tmp_path: Path,
                                                            messages: Any) -> None:
    """Found by the data plane's property test: `messages: true` with a guardrail on was a
    500 (the guard iterated whatever `messages` held)."""
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-guard-test")
        for path, extra in ((CHAT, {}), (MESSAGES, {"max_tokens": 5})):
            model = "gpt-4o-mini" if path == CHAT else "claude-3-5-haiku-latest"
            reply = await client.request("POST", path, key=key, json_body={
                "model": model, "messages": messages, "system": messages, **extra})
            assert reply.status < 500, reply.body

    run_app(tmp_path, test, raw={
        "guardrails": {"default": {"secrets": "mask", "pii": "block"}},
        "providers": {"claude": {"type": "mock", "models": ["claude-*"],
                                 "mock": {"flavor": "anthropic"}}}})


# --- found in review --------------------------------------------------------------------------

CLAUDE = {"providers": {"claude": {"type": "mock", "models": ["claude-*"],
                                   "mock": {"flavor": "anthropic"}}}}


@pytest.mark.parametrize("body", [
    b'{"model":"gpt-4o-mini","messages":[],"max\\u005ftokens":5000,"max_tokens":50}',
    b'{"model":"gpt-4o-mini","messages":[],"max_tokens":50,"max\\u005Ftokens":5000}',
    b'{"mod\\u0065l":"gpt-4o","messages":[],"model":"gpt-4o-mini"}',
])
def test_a_policed_field_written_with_an_escape_is_a_duplicate(tmp_path: Path,
                                                               body: bytes) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-escape-test", max_tokens=100)
        assert_error(await client.request("POST", CHAT, body=body, key=key), 400,
                     "duplicate_field")
        assert received(client) == []

    run_app(tmp_path, test)


@pytest.mark.parametrize("field", ["n_predict", "max_new_tokens"])
def test_llama_cpp_and_tgi_caps_are_caps_too(tmp_path: Path, field: str) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-npredict-test", max_tokens=100)
        reply = await client.request("POST", CHAT, key=key,
                                     json_body=chat_body(max_tokens=50, **{field: 100_000}))
        assert_error(reply, 400, "max_tokens_exceeded", field)
        assert_error(await client.request("POST", CHAT, key=key, json_body=chat_body(
            **{field: -1})), 400, "invalid_value", field)
        assert received(client) == []

    run_app(tmp_path, test)


def test_a_background_response_is_refused(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-bg-test")
        reply = await client.request("POST", RESPONSES, key=key, json_body={
            "model": "gpt-4o-mini", "input": "hi", "background": True})
        assert_error(reply, 400, "unsupported_parameter", "background")
        ok = await client.request("POST", RESPONSES, key=key, json_body={
            "model": "gpt-4o-mini", "input": "hi", "background": False})
        assert ok.status == 200, ok.body

    run_app(tmp_path, test)


def test_an_integer_past_4300_digits_is_a_400_not_a_500(tmp_path: Path) -> None:
    huge = b"9" * 5000
    async def test(client: AppClient) -> None:
        capped = await client.create_key("dev-bigint-test", max_tokens=100)  # a rewrite
        body = b'{"model":"gpt-4o-mini","messages":[],"seed":' + huge + b"}"
        assert_error(await client.request("POST", CHAT, body=body, key=capped), 400,
                     "invalid_value")
        # ... and when a policed name appears twice (the duplicate check reads the body)
        body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"model"}],'
                b'"x":' + huge + b',"tools":[{"type":"function","function":{"name":"model"}}]}')
        reply = await client.request("POST", CHAT, body=body, key=capped)
        assert reply.status == 400, reply.body

    run_app(tmp_path, test)


def test_a_model_name_with_a_trailing_newline_is_refused_where_it_enters(
        tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-newline-test")
        assert_error(await client.request("POST", CHAT, key=key, json_body=chat_body(
            model="gpt-4o-mini\n")), 400, "invalid_model_name")
        assert (await client.request("GET", "/v1/models/gpt-4o-mini\n", key=key)).status == 404

    run_app(tmp_path, test)


@pytest.mark.parametrize("tools", [5, True, -1e308, "a", {"type": "function"}])
def test_tools_that_are_not_a_list_are_a_400_for_claude(tmp_path: Path, tools: Any) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("dev-tools-test")
        reply = await client.request("POST", CHAT, key=key, json_body=chat_body(
            model="claude-3-5-haiku-latest", tools=tools))
        assert_error(reply, 400, "invalid_value", "tools")

    run_app(tmp_path, test, raw=CLAUDE)
