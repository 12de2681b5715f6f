"""The data plane end to end, in process: the real app, the real pipeline, the built-in mock
upstream (or a hand-made one where the mock cannot misbehave the way a test needs).

Every error is OpenAI's envelope; every request leaves exactly one ledger row and one log line;
the client's bytes reach the provider untouched except for the documented rewrites.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keystead.keys.format import generate_key
from keystead.mocks.content import count_tokens, prompt_tokens
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from keystead.pipeline.parse import decode_view
from keystead.providers.base import Endpoint
from keystead.providers.transport import ASGITransport
from keystead.state.records import UsageRecord
from keystead.usage.approx_tokens import text_tokens
from keystead.usage.estimate import estimate_chat
from keystead.usage.prices import PriceBook, TokenUsage
from openapi_schemas import request_schema, validate
from support import AppClient, Reply, make_loaded, run_in_app, running_app

CHAT = "/v1/chat/completions"
PROVIDER_KEY = "sk-gateway-own-provider-key-0123456789abcdef"
PRICES = PriceBook()
UNSET: Any = object()

AppTest = Callable[[AppClient], Awaitable[None]]


# --- helpers ------------------------------------------------------------------------------------


def run_app(tmp_path: Path, test: AppTest, raw: dict[str, Any] | None = None,
            env: dict[str, str] | None = None) -> None:
    run_in_app(tmp_path, test, raw, env, timeout_s=30)


def in_app(raw: dict[str, Any] | None = None, env: dict[str, str] | None = None):
    """Turn `async def test_x(client)` into a sync test running inside a fresh app."""

    def decorate(test: AppTest) -> Callable[[Path], None]:
        def sync_test(tmp_path: Path) -> None:
            run_app(tmp_path, test, raw, env)

        sync_test.__name__, sync_test.__doc__ = test.__name__, test.__doc__
        return sync_test

    return decorate


SharedRunner = Callable[[AppTest], None]
_names = itertools.count(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedRunner]:
    """One app with the default config for the tests that need nothing special (startup is the
    slow part of a test). It lives on one event loop, run in this thread test by test; tests keep
    to their own keys and request ids, and see the mock's `received` emptied before they start.
    """
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    loaded = make_loaded(tmp_path_factory.mktemp("shared-app"))
    client = loop.run_until_complete(stack.enter_async_context(running_app(loaded)))

    def run(test: AppTest) -> None:
        mock_app(client).received.clear()
        loop.run_until_complete(asyncio.wait_for(test(client), 30))

    try:
        yield run
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def on_shared_app(test: AppTest) -> Callable[[SharedRunner], None]:
    """Turn `async def test_x(client)` into a sync test on the shared default app."""

    def sync_test(shared: SharedRunner) -> None:
        shared(test)

    sync_test.__name__, sync_test.__doc__ = test.__name__, test.__doc__
    return sync_test


async def new_key(client: AppClient, **fields: Any) -> str:
    """A key with a name no other test uses (names are unique per app)."""
    return await client.create_key(f"dev-auto{next(_names)}-test", **fields)


def chat_body(text: str = "Say hello", model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def chat(client: AppClient, key: str | None, text: str = "Say hello", *,
               headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    return await client.request("POST", CHAT, json_body=chat_body(text, **extra), key=key,
                                headers=headers)


def mock_app(client: AppClient, provider: str = "mock") -> Any:
    return client.runtime.providers.providers[provider].transport.app  # type: ignore[attr-defined]


def received(client: AppClient, provider: str = "mock") -> list[Any]:
    return list(mock_app(client, provider).received)


def use_upstream(client: AppClient, provider: str, app: Any) -> None:
    """Point a configured provider at a hand-made ASGI upstream."""
    client.runtime.providers.providers[provider].transport = ASGITransport(app)


async def ledger(client: AppClient, limit: int = 100) -> list[UsageRecord]:
    await client.runtime.ledger.flush()
    return list(reversed(await client.runtime.store.recent_usage(limit)))


async def ledger_row(client: AppClient, request_id: str) -> UsageRecord:
    rows = [r for r in await ledger(client, 1000) if r.request_id == request_id]
    assert len(rows) == 1, rows
    return rows[0]


def assert_error(reply: Reply, status: int, code: str, param: Any = UNSET,
                 contains: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAI's envelope, exactly: status, code, param, an actionable message, nothing else."""
    assert reply.status == status, reply.body
    document = reply.json()
    validate(document, "ErrorResponse")
    assert set(document) == {"error"}
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["type"] and error["message"].strip()
    if param is not UNSET:
        assert error["param"] == param
    for fragment in contains:
        assert fragment in error["message"], error["message"]
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-keystead-cost-usd"] == "0"
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", reply.headers["x-request-id"])
    assert b"Traceback" not in reply.body and b'File "' not in reply.body
    return error


def sse_data(reply: Reply) -> list[Any]:
    """The JSON payloads of `data:` events (not [DONE], not comments)."""
    payloads = []
    for event in reply.events():
        lines = [line[6:] for line in event.split(b"\n") if line.startswith(b"data: ")]
        if lines and lines[0] != b"[DONE]":
            payloads.append(json.loads(b"\n".join(lines)))
    return payloads


def cost_of(provider_type: str, model: str, prompt: int, completion: int = 0) -> Decimal:
    cost = PRICES.cost(provider_type, model, TokenUsage(prompt, completion))
    assert cost.known
    return cost.usd


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeUpstream:
    """A provider that answers every request with fixed parts, optionally slowly."""

    def __init__(self, status: int = 200, body: bytes | list[bytes] = b"{}",
                 content_type: bytes = b"application/json", delay_s: float = 0.0,
                 echo_auth: bool = False, cut: bool = False):
        self.status, self.content_type, self.delay_s = status, content_type, delay_s
        self.cut = cut  # drop the connection after the parts, without ending the response
        self.parts = body if isinstance(body, list) else [body]
        self.echo_auth = echo_auth
        self.requests: list[dict[str, str]] = []
        self.cancelled = False
        self.sent_parts = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(headers)
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": [(b"content-type", self.content_type)]})
            parts = self.parts
            if self.echo_auth:  # like api.openai.com, which quotes (part of) the key it refused
                presented = headers.get("authorization", "").removeprefix("Bearer ")
                parts = [json.dumps({"error": {
                    "message": f"Incorrect API key provided: {presented}.",
                    "type": "invalid_request_error", "param": None,
                    "code": "invalid_api_key"}}).encode()]
            for part in parts:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                await send({"type": "http.response.body", "body": part, "more_body": True})
                self.sent_parts += 1
            if self.cut:
                raise ConnectionResetError("the provider went away")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class CountingUpstream:
    """Wraps the mock: counts the events it sends and notices when it is cancelled."""

    def __init__(self, app: Any):
        self.app = app
        self.events = 0
        self.cancelled = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                self.events += 1
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


# --- errors of the request itself ---------------------------------------------------------------

BODY_ERRORS = [
    # (id, path, body, code, param, message fragment)
    ("invalid-json", CHAT, b'{"model": "gpt-4o-mini", "messages": [', "invalid_json", None,
     "could not parse the JSON"),
    ("empty", CHAT, b"", "invalid_json", None, "empty"),
    ("array", CHAT, b'[{"model": "gpt-4o-mini"}]', "invalid_json", None, "JSON object"),
    ("string", CHAT, b'"hello"', "invalid_json", None, "JSON object"),
    ("no-model", CHAT, b'{"messages": [{"role": "user", "content": "hi"}]}',
     "missing_required_parameter", "model", "'model'"),
    ("no-messages", CHAT, b'{"model": "gpt-4o-mini"}', "missing_required_parameter", "messages",
     "'messages'"),
    ("model-type", CHAT, b'{"model": 4, "messages": []}', "invalid_value", "model",
     "Expected `str`"),
    ("stream-type", CHAT, b'{"model": "gpt-4o-mini", "messages": [], "stream": "yes"}',
     "invalid_value", "stream", "Expected `bool"),
    ("max-tokens-type", CHAT, b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": "9"}',
     "invalid_value", "max_tokens", "Expected `int"),
    ("include-usage-type", CHAT,
     b'{"model": "gpt-4o-mini", "messages": [], "stream": true, '
     b'"stream_options": {"include_usage": 1}}',
     "invalid_value", "stream_options.include_usage", "Expected `bool"),
    ("options-without-stream", CHAT,
     b'{"model": "gpt-4o-mini", "messages": [], "stream_options": {"include_usage": true}}',
     "invalid_value", "stream_options", "only allowed when stream is true"),
    ("embeddings-no-input", "/v1/embeddings", b'{"model": "text-embedding-3-small"}',
     "missing_required_parameter", "input", "'input'"),
]


@pytest.mark.parametrize(("path", "body", "code", "param", "fragment"),
                         [case[1:] for case in BODY_ERRORS], ids=[c[0] for c in BODY_ERRORS])
def test_bad_request_bodies_get_openai_400s_naming_the_parameter(
        shared: SharedRunner, path: str, body: bytes, code: str, param: str | None,
        fragment: str):
    async def test(client: AppClient) -> None:
        key = await new_key(client)
        reply = await client.request("POST", path, body=body, key=key)
        assert_error(reply, 400, code, param, (fragment,))
        assert received(client) == []  # nothing went upstream

    shared(test)


# --- authentication ----------------------------------------------------------------------------


@on_shared_app
async def test_missing_bearer_is_401_missing_api_key(client: AppClient) -> None:
    reply = await chat(client, key=None)
    assert_error(reply, 401, "missing_api_key", None, ("Authorization: Bearer ksk_",))
    assert reply.headers["www-authenticate"] == 'Bearer realm="keystead"'
    reply = await chat(client, key=None, headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert_error(reply, 401, "missing_api_key")


@pytest.mark.parametrize(("presented", "fragment"), [
    ("not-a-key", "keystead keys start with ksk_"),
    ("ksk_abcdefgh" + "x" * 38, "carry a checksum"),
    ("sk-proj-Qw3rTy" + "a" * 40, "looks like a provider key"),
    ("sk-ant-api03-" + "b" * 40, "rotate the provider key"),
], ids=["garbage", "bad-checksum", "openai-key", "anthropic-key"])
def test_malformed_and_provider_keys_are_401_without_echoing_the_key(
        shared: SharedRunner, presented: str, fragment: str):
    async def test(client: AppClient) -> None:
        reply = await chat(client, key=presented)
        assert_error(reply, 401, "invalid_api_key", None, (fragment,))
        assert presented.encode() not in reply.body
        if len(presented) > 20:
            assert presented[8:20].encode() not in reply.body

    shared(test)


@on_shared_app
async def test_unknown_key_is_401_naming_only_its_public_id(client: AppClient) -> None:
    stranger = generate_key()
    reply = await chat(client, key=stranger.text)
    assert_error(reply, 401, "invalid_api_key", None, (stranger.key_id, "ask for a new one"))
    assert stranger.text.encode() not in reply.body


@on_shared_app
async def test_revoking_through_the_admin_api_takes_effect_on_the_very_next_request(
        client: AppClient) -> None:
    key = await client.create_key("prod-billing-bot-01")
    assert (await chat(client, key)).status == 200
    key_id = key[4:12]
    revoked = await client.admin("POST", f"/admin/keys/{key_id}/revoke", {"reason": "leaked"})
    assert revoked.status == 200 and revoked.json()["status"] == "revoked"
    reply = await chat(client, key)
    assert_error(reply, 401, "key_revoked", None,
                 (f"API key {key_id} (prod-billing-bot-01) was revoked on", "replacement"))
    assert key.encode() not in reply.body


@on_shared_app
async def test_expired_key_is_401_key_expired(client: AppClient) -> None:
    key = await client.create_key("dev-report-job", expires="1h")
    assert (await chat(client, key)).status == 200
    key_id = key[4:12]
    await client.runtime.store.update_key(key_id, expires_at=time.time() - 60)
    await client.runtime.reload_keys()
    reply = await chat(client, key)
    assert_error(reply, 401, "key_expired", None, (f"API key {key_id}", "expired on"))
    assert key.encode() not in reply.body


# --- the key's scope ---------------------------------------------------------------------------


@on_shared_app
async def test_model_not_allowed_is_403_and_lists_the_allowed_models(client: AppClient) -> None:
    key = await new_key(client, models=["gpt-4o-mini", "text-embedding-*"])
    reply = await chat(client, key, model="gpt-4o")
    assert_error(reply, 403, "model_not_allowed", "model",
                 ("may not use model 'gpt-4o'", "gpt-4o-mini, text-embedding-*"))
    assert received(client) == []


@on_shared_app
async def test_endpoint_not_allowed_is_403_and_lists_the_allowed_endpoints(
        client: AppClient) -> None:
    key = await new_key(client, endpoints=["embeddings"])
    reply = await chat(client, key)
    assert_error(reply, 403, "endpoint_not_allowed", None,
                 ("may not call chat.completions", "It may call: embeddings"))
    listing = await client.request("GET", "/v1/models", key=key)
    assert_error(listing, 403, "endpoint_not_allowed")


@on_shared_app
async def test_unknown_model_is_404_with_a_hint_of_real_models(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, model="gpt-9-ultra")
    assert_error(reply, 404, "model_not_found", "model",
                 ("'gpt-9-ultra' is not served", "GET /v1/models", "gpt-4o-mini"))


@on_shared_app
async def test_max_tokens_above_the_keys_cap_is_400(client: AppClient) -> None:
    key = await new_key(client, max_tokens=100)
    reply = await chat(client, key, max_tokens=101)
    assert_error(reply, 400, "max_tokens_exceeded", "max_tokens",
                 ("max_tokens=101 is above this key's cap of 100", "at most 100"))
    reply = await chat(client, key, max_completion_tokens=500)
    assert_error(reply, 400, "max_tokens_exceeded", "max_completion_tokens")
    responses = await client.request("POST", "/v1/responses", key=key, json_body={
        "model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 101})
    assert_error(responses, 400, "max_tokens_exceeded", "max_output_tokens")
    assert (await chat(client, key, max_tokens=100)).status == 200


# --- body size ---------------------------------------------------------------------------------


@in_app(raw={"server": {"max_body_bytes": 2048}})
async def test_a_body_over_the_server_limit_is_413(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "x" * 3000)
    assert_error(reply, 413, "request_too_large", None, ("2048 bytes",))
    assert received(client) == []
    assert (await chat(client, key, "x" * 1500)).status == 200


@on_shared_app
async def test_a_body_over_the_keys_own_limit_is_413(client: AppClient) -> None:
    key = await new_key(client, max_body_bytes=1024)
    reply = await chat(client, key, "y" * 1200)
    assert_error(reply, 413, "request_too_large", None, ("1024 bytes", "max_body_bytes"))
    other = await client.create_key("dev-other-app")
    assert (await chat(client, other, "y" * 1200)).status == 200


@in_app(raw={"server": {"max_body_bytes": 2048}})
async def test_without_a_valid_key_a_large_body_is_never_read(client: AppClient) -> None:
    reply = await chat(client, key=None, text="z" * 100_000)
    assert_error(reply, 401, "missing_api_key")


# --- routes ------------------------------------------------------------------------------------


@on_shared_app
async def test_unknown_route_is_404_and_wrong_method_is_405(client: AppClient) -> None:
    key = await new_key(client)
    reply = await client.request("POST", "/v1/completions", json_body={}, key=key)
    assert_error(reply, 404, "unknown_url", None,
                 ("Unknown route POST /v1/completions", "/v1/chat/completions"))
    reply = await client.request("GET", CHAT, key=key)
    assert_error(reply, 405, "method_not_allowed", None,
                 ("/v1/chat/completions accepts POST, not GET",))
    reply = await client.request("DELETE", "/v1/models", key=key)
    assert_error(reply, 405, "method_not_allowed", None, ("accepts GET",))


# --- the provider fails ------------------------------------------------------------------------


@in_app(raw={"providers": {"down": {"type": "openai-compatible",
                                    "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                                    "models": ["local-llama"]}}})
async def test_unreachable_upstream_is_502_upstream_unreachable(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, model="local-llama")
    assert_error(reply, 502, "upstream_unreachable", None,
                 ("Provider down is unreachable", "keystead providers test"))
    assert b"127.0.0.1" not in reply.body  # no internal address leaks


@in_app(raw={"server": {"upstream_timeout_s": 0.1}})
async def test_an_upstream_that_does_not_answer_in_time_is_504(client: AppClient) -> None:
    key = await new_key(client)
    started = time.perf_counter()
    reply = await chat(client, key, "[[mock:latency=5000]] hi")
    assert time.perf_counter() - started < 2.5
    assert_error(reply, 504, "upstream_timeout", None, ("did not answer in time",))


@on_shared_app
async def test_upstream_429_passes_through_with_its_body_and_retry_after(
        client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "[[mock:status=429]] hi")
    error = assert_error(reply, 429, "rate_limit_exceeded")
    assert error["message"] == "Mock error (status 429)."  # the provider's own words
    assert reply.headers["retry-after"] == "1"
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.status, row.error_code, row.cost_usd) == (429, "upstream_http_429", 0)


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_passes_through_as_openai_error(shared: SharedRunner, status: int):
    async def test(client: AppClient) -> None:
        key = await new_key(client)
        reply = await chat(client, key, f"[[mock:status={status}]] hi")
        error = assert_error(reply, status, None)  # type: ignore[arg-type]
        assert error["type"] == "server_error"
        row = await ledger_row(client, reply.headers["x-request-id"])
        assert (row.status, row.error_code) == (status, f"upstream_http_{status}")

    shared(test)


@in_app(raw={"providers": {"proxy": {"type": "openai-compatible",
                                     "base_url": "http://proxy.internal/v1",
                                     "models": ["proxied-model"]}}})
async def test_a_non_openai_error_body_is_wrapped_in_the_envelope(client: AppClient) -> None:
    key = await new_key(client)
    use_upstream(client, "proxy", FakeUpstream(
        502, b"<html><body>502 Bad Gateway</body></html>", b"text/html"))
    reply = await chat(client, key, model="proxied-model")
    assert_error(reply, 502, "upstream_http_502", None,
                 ("Provider proxy answered HTTP 502 without an OpenAI error body",))
    assert b"<html>" not in reply.body


@pytest.mark.parametrize("upstream", ["mock-with-other-key", "echoes-presented-key"])
def test_upstream_401_is_502_upstream_auth_failed_without_the_provider_key(
        tmp_path: Path, upstream: str):
    async def test(client: AppClient) -> None:
        key = await new_key(client)
        if upstream == "mock-with-other-key":
            app: Any = create_mock_app(MockSettings(api_key="the-key-the-provider-expects"))
        else:
            app = FakeUpstream(401, echo_auth=True)
        use_upstream(client, "mock", app)
        reply = await chat(client, key)
        error = assert_error(reply, 502, "upstream_auth_failed", None,
                             ("refused the gateway's own credentials", "not a problem with "
                              "your key", "keystead providers test mock"))
        assert error["type"] == "upstream_error"
        assert PROVIDER_KEY.encode() not in reply.body
        assert PROVIDER_KEY[10:30].encode() not in reply.body
        assert all(PROVIDER_KEY not in value for value in reply.headers.values())
        if isinstance(app, FakeUpstream):  # it was shown the gateway's key, and quoted it
            assert app.requests[0]["authorization"] == f"Bearer {PROVIDER_KEY}"
        row = await ledger_row(client, reply.headers["x-request-id"])
        assert (row.status, row.error_code) == (502, "upstream_auth_failed")

    run_app(tmp_path, test, raw={"providers": {"mock": {
        "type": "mock", "api_key": "${MOCK_PROVIDER_KEY}",
        "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]}}},
        env={"MOCK_PROVIDER_KEY": PROVIDER_KEY})


@in_app(raw={})
async def test_an_internal_failure_is_a_500_envelope_without_details(client: AppClient) -> None:
    key = await new_key(client)
    provider = client.runtime.providers.providers["mock"]

    async def broken_send(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail at /srv/keystead/db.sqlite")

    provider.send = broken_send  # type: ignore[method-assign]
    reply = await chat(client, key, headers={"x-request-id": "trace-500"})
    assert_error(reply, 500, "internal_error", None,
                 ("failed to handle this request", "Quote request id trace-500"))
    assert b"secret internal detail" not in reply.body and b"RuntimeError" not in reply.body
    row = await ledger_row(client, "trace-500")
    assert (row.status, row.error_code) == (500, "internal_error")


# --- headers -----------------------------------------------------------------------------------


@on_shared_app
async def test_a_valid_client_request_id_is_echoed_and_recorded(client: AppClient) -> None:
    key = await new_key(client)
    for request_id in ("my-trace.0001:abc_DEF", "x" * 128):
        reply = await chat(client, key, headers={"x-request-id": request_id})
        assert reply.status == 200
        assert reply.headers["x-request-id"] == request_id
        await ledger_row(client, request_id)
    error = await chat(client, None, headers={"x-request-id": "err-trace-1"})
    assert error.status == 401 and error.headers["x-request-id"] == "err-trace-1"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "semi;colon", "naïve"])
def test_a_missing_or_invalid_request_id_is_replaced_by_a_generated_one(
        shared: SharedRunner, sent: str | None):
    async def test(client: AppClient) -> None:
        key = await new_key(client)
        headers = {} if sent is None else {"x-request-id": sent}
        for reply in (await chat(client, key, headers=headers),
                      await chat(client, None, headers=headers),
                      await client.request("GET", "/v1/nowhere", key=key, headers=headers)):
            generated = reply.headers["x-request-id"]
            assert re.fullmatch(r"req_[0-9a-f]{24}", generated), generated
            await ledger_row(client, generated)

    shared(test)


@on_shared_app
async def test_the_cost_header_equals_the_ledger_and_the_price_table(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "Price this request please", model="gpt-4o")
    assert reply.status == 200
    usage = reply.json()["usage"]
    expected = cost_of("mock", "gpt-4o", usage["prompt_tokens"], usage["completion_tokens"])
    assert expected > 0
    assert Decimal(reply.headers["x-keystead-cost-usd"]) == expected
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert row.cost_usd == expected
    assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"],
                                                          usage["completion_tokens"])
    assert reply.headers["x-keystead-provider"] == "mock"


# --- what reaches the provider -----------------------------------------------------------------

PASSTHROUGH = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": [{"type": "text", "text": "Weather in Zürich? ☂"}]}],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False},
        "strict": True}}],
    "tool_choice": "auto", "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "temperature": 0.25, "top_p": 0.9, "seed": 1234567, "n": 1,
    "presence_penalty": -0.5, "frequency_penalty": 1e-3, "logit_bias": {"50256": -100},
    "metadata": {"team": "payments", "trace": "a,b:c"}, "store": False,
    "user": "user-42", "stop": ["\n\n"], "logprobs": False,
}


@in_app(raw={"providers": {"mock": {"type": "mock", "api_key": "${MOCK_PROVIDER_KEY}",
                                    "models": ["gpt-4o-mini", "gpt-4o"]}}},
        env={"MOCK_PROVIDER_KEY": PROVIDER_KEY})
async def test_the_body_reaches_the_provider_byte_for_byte_with_the_gateways_key(
        client: AppClient) -> None:
    validate(PASSTHROUGH, request_schema(CHAT) or "")
    key = await new_key(client)
    # Unusual but valid formatting: the provider must see exactly these bytes.
    body = json.dumps(PASSTHROUGH, indent=1, ensure_ascii=False).encode() + b"\n"
    reply = await client.request("POST", CHAT, body=body, key=key, headers={
        "x-keystead-feature": "weather", "cookie": "session=abc", "x-custom": "1",
        "openai-organization": "org-client"})
    assert reply.status == 200, reply.body
    validate(reply.json(), "CreateChatCompletionResponse")
    [upstream] = received(client)
    assert upstream.body == body
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert set(upstream.headers) == {"authorization", "accept", "content-type"}
    assert key not in json.dumps(upstream.headers) and key.encode() not in upstream.body
    assert PROVIDER_KEY not in json.dumps(reply.headers)
    assert PROVIDER_KEY.encode() not in reply.body


@on_shared_app
async def test_provider_slash_model_naming_sends_the_providers_own_model_name(
        client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, model="mock/gpt-4o")
    assert reply.status == 200
    [upstream] = received(client)
    sent = upstream.json()
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == chat_body()["messages"]
    assert reply.json()["model"] == "gpt-4o"
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.model_requested, row.model_served, row.provider) == ("mock/gpt-4o", "gpt-4o",
                                                                     "mock")
    usage = reply.json()["usage"]
    assert row.cost_usd == cost_of("mock", "gpt-4o", usage["prompt_tokens"],
                                   usage["completion_tokens"])


@on_shared_app
async def test_the_keys_max_tokens_cap_is_written_in_when_the_request_has_none(
        client: AppClient) -> None:
    key = await new_key(client, max_tokens=5)
    body = json.dumps(chat_body(temperature=0.5, metadata={"a": "b"})).encode()
    reply = await client.request("POST", CHAT, body=body, key=key)
    assert reply.status == 200
    assert reply.json()["choices"][0]["finish_reason"] == "length"
    assert reply.json()["usage"]["completion_tokens"] == 5
    sent = received(client)[-1].json()
    assert sent == {**json.loads(body), "max_tokens": 5}
    # A request with its own limit under the cap is forwarded untouched.
    own = json.dumps(chat_body(max_tokens=3)).encode()
    assert (await client.request("POST", CHAT, body=own, key=key)).status == 200
    assert received(client)[-1].body == own


# --- streaming ---------------------------------------------------------------------------------


def assert_stream_ends_with_cost_then_done(reply: Reply, expected_cost: Decimal) -> None:
    events = reply.events()
    assert events[-1] == b"data: [DONE]"
    comment = events[-2]
    assert comment.startswith(b": x-keystead-cost-usd ")
    assert Decimal(comment.split()[-1].decode()) == expected_cost
    assert sum(1 for e in events if e.startswith(b":")) == 1


@on_shared_app
async def test_a_stream_without_usage_asked_gets_exact_usage_but_no_usage_chunk(
        client: AppClient) -> None:
    key = await new_key(client)
    body = json.dumps(chat_body("Stream me a story [[mock:tokens=9]]", stream=True)).encode()
    reply = await client.request("POST", CHAT, body=body, key=key)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    assert "x-keystead-cost-usd" not in reply.headers  # not known yet: it comes as a comment
    upstream = received(client)[-1]
    assert upstream.body == b'{"stream_options":{"include_usage":true},' + body[1:]
    chunks = sse_data(reply)
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["choices"], "the usage-only chunk reached a client that did not ask for it"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).count(" ") == 8
    row = await ledger_row(client, reply.headers["x-request-id"])
    messages = chat_body("Stream me a story [[mock:tokens=9]]")["messages"]
    assert (row.prompt_tokens, row.completion_tokens) == (prompt_tokens(messages), 9)
    assert row.usage_estimated is False and row.stream is True and row.status == 200
    assert_stream_ends_with_cost_then_done(reply, row.cost_usd)
    assert row.cost_usd == cost_of("mock", "gpt-4o-mini", row.prompt_tokens, 9)


@on_shared_app
async def test_a_stream_that_asked_for_usage_gets_the_usage_chunk(client: AppClient) -> None:
    key = await new_key(client)
    body = json.dumps(chat_body("Count [[mock:tokens=4]]", stream=True,
                                stream_options={"include_usage": True})).encode()
    reply = await client.request("POST", CHAT, body=body, key=key)
    assert reply.status == 200
    assert received(client)[-1].body == body  # nothing to rewrite
    chunks = sse_data(reply)
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0]
    usage = usage_chunks[0]["usage"]
    assert usage["completion_tokens"] == 4
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"], 4)
    assert row.usage_estimated is False
    assert_stream_ends_with_cost_then_done(reply, row.cost_usd)


@on_shared_app
async def test_a_stream_with_include_usage_false_is_rewritten_and_the_chunk_dropped(
        client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "[[mock:tokens=3]]", stream=True,
                       stream_options={"include_usage": False})
    sent = received(client)[-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    assert all(chunk["choices"] for chunk in sse_data(reply))
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert row.completion_tokens == 3 and not row.usage_estimated


@in_app(raw={"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"],
                                    "mock": {"chunk_delay_ms": 25}}}})
async def test_a_client_leaving_mid_stream_cancels_the_upstream_call(client: AppClient) -> None:
    key = await new_key(client)
    upstream = CountingUpstream(mock_app(client))
    client.runtime.providers.providers["mock"].transport.app = upstream  # type: ignore[attr-defined]
    full = 120  # ~3 s of stream at 25 ms per event
    started = time.perf_counter()
    reply = await asyncio.wait_for(client.request(
        "POST", CHAT, key=key, disconnect_after_chunks=3,
        json_body=chat_body(f"Tell me everything [[mock:tokens={full}]]", stream=True)), 5)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5, f"the request took {elapsed:.2f} s: the stream was not cut"
    assert upstream.cancelled
    events_at_cut = upstream.events
    assert events_at_cut < 10
    await asyncio.sleep(0.1)
    assert upstream.events == events_at_cut  # the mock's generator stopped
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.status, row.error_code, row.stream) == (499, "client_disconnected", True)
    assert row.usage_estimated is True
    assert 0 < row.completion_tokens < full
    assert row.prompt_tokens > 0
    assert row.cost_usd > 0


@in_app(raw={"providers": {"slow": {"type": "openai-compatible",
                                    "base_url": "http://slow.internal/v1",
                                    "models": ["slow-model"]}}})
async def test_a_client_leaving_while_a_plain_body_is_still_coming_is_499(
        client: AppClient) -> None:
    key = await new_key(client)
    upstream = FakeUpstream(200, [b'{"object":"chat.completion",', b'"choices":[]}'],
                            delay_s=3.0)
    use_upstream(client, "slow", upstream)
    body = json.dumps(chat_body(model="slow-model")).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5),
             "server": ("testserver", 80),
             "headers": [(b"authorization", f"Bearer {key}".encode()),
                         (b"x-request-id", b"leaver-1")]}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.1)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started = time.perf_counter()
    await asyncio.wait_for(client.app(scope, receive, send), 5)
    assert time.perf_counter() - started < 1.5
    assert upstream.cancelled and upstream.sent_parts == 0
    row = await ledger_row(client, "leaver-1")
    assert (row.status, row.error_code) == (499, "client_disconnected")


@on_shared_app
async def test_a_client_leaving_before_the_provider_answers_stops_the_wait(
        client: AppClient) -> None:
    key = await new_key(client)
    started = time.perf_counter()
    reply = await asyncio.wait_for(client.request(
        "POST", CHAT, key=key, disconnect_after_s=0.2,
        headers={"x-request-id": "early-leaver-1"},
        json_body=chat_body("Think long [[mock:latency=3000]]")), 5)
    assert time.perf_counter() - started < 1.5, "the gateway waited for the provider"
    assert reply.status == 0  # nothing was sent to a client that had gone
    row = await ledger_row(client, "early-leaver-1")
    assert (row.status, row.error_code) == (499, "client_disconnected")
    assert (row.prompt_tokens, row.completion_tokens) == (0, 0)


@on_shared_app
async def test_a_stream_the_provider_cuts_ends_with_an_error_event(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "Go on [[mock:disconnect_after=3]]", stream=True)
    assert reply.status == 200  # the status line had gone out already
    events = reply.events()
    assert b"data: [DONE]" not in events
    last = json.loads(events[-1].removeprefix(b"data: "))
    validate(last, "ErrorResponse")
    assert last["error"]["code"] == "upstream_unreachable"
    assert "closed the connection mid-response" in last["error"]["message"]
    content = [c for c in sse_data(reply)[:-1] if c["choices"][0]["delta"].get("content")]
    assert len(content) == 3
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.status, row.error_code, row.stream) == (502, "upstream_unreachable", True)
    assert row.usage_estimated is True
    assert 0 < row.completion_tokens < 16
    assert row.prompt_tokens > 0


@in_app(raw={"providers": {"flaky": {"type": "openai-compatible",
                                     "base_url": "http://flaky.internal/v1",
                                     "models": ["gpt-4o-mini"]}}})
async def test_a_stream_cut_after_its_usage_chunk_is_recorded_with_that_usage_and_its_cost(
        client: AppClient) -> None:
    key = await new_key(client)
    usage = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
    frames = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
              {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [], "usage": usage}]
    use_upstream(client, "flaky", FakeUpstream(
        200, [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames],
        b"text/event-stream", cut=True))
    reply = await chat(client, key, model="flaky/gpt-4o-mini", stream=True)
    assert json.loads(reply.events()[-1].removeprefix(b"data: "))["error"]["code"] == \
        "upstream_unreachable"
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.status, row.prompt_tokens, row.completion_tokens) == (502, 1200, 300)
    assert row.usage_estimated is False
    assert row.cost_usd == cost_of("openai-compatible", "gpt-4o-mini", 1200, 300) > 0


@on_shared_app
async def test_a_reply_without_usage_is_counted_offline_and_flagged(client: AppClient) -> None:
    key = await new_key(client)
    body = json.dumps(chat_body("Estimate me [[mock:no_usage]]")).encode()
    reply = await client.request("POST", CHAT, body=body, key=key)
    assert reply.status == 200 and "usage" not in reply.json()
    view = decode_view(Endpoint.CHAT, body)
    expected = estimate_chat("gpt-4o-mini", bytes(view.messages), None, reply.body)
    assert expected.prompt_tokens > 0 and expected.completion_tokens > 0
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert row.usage_estimated is True
    assert (row.prompt_tokens, row.completion_tokens) == (expected.prompt_tokens,
                                                          expected.completion_tokens)
    price = cost_of("mock", "gpt-4o-mini", expected.prompt_tokens, expected.completion_tokens)
    assert row.cost_usd == price == Decimal(reply.headers["x-keystead-cost-usd"])


@on_shared_app
async def test_a_stream_without_usage_is_counted_offline_and_flagged(client: AppClient) -> None:
    key = await new_key(client)
    reply = await chat(client, key, "Estimate [[mock:no_usage]] [[mock:tokens=7]]", stream=True)
    assert reply.status == 200
    assert reply.events()[-1] == b"data: [DONE]"
    assert not any(e.startswith(b":") for e in reply.events())  # no usage, no cost comment
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert row.usage_estimated is True
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_data(reply))
    assert row.completion_tokens == text_tokens(text)
    assert row.prompt_tokens > 0


# --- models ------------------------------------------------------------------------------------


@on_shared_app
async def test_models_lists_only_what_the_key_may_use(client: AppClient) -> None:
    everything = await client.create_key("dev-all-models")
    some = await client.create_key("dev-some-models", models=["gpt-4o*"])
    full = await client.request("GET", "/v1/models", key=everything)
    assert full.status == 200
    validate(full.json(), "ListModelsResponse")
    assert [m["id"] for m in full.json()["data"]] == ["gpt-4o", "gpt-4o-mini",
                                                      "text-embedding-3-small"]
    limited = await client.request("GET", "/v1/models", key=some)
    validate(limited.json(), "ListModelsResponse")
    assert [m["id"] for m in limited.json()["data"]] == ["gpt-4o", "gpt-4o-mini"]
    assert all(m["owned_by"] == "mock" for m in limited.json()["data"])
    assert limited.headers["x-keystead-cost-usd"] == "0"


@on_shared_app
async def test_one_model_is_shown_only_to_a_key_that_may_use_it(client: AppClient) -> None:
    key = await new_key(client, models=["gpt-4o-mini"])
    one = await client.request("GET", "/v1/models/gpt-4o-mini", key=key)
    assert one.status == 200
    validate(one.json(), "Model")
    assert one.json()["id"] == "gpt-4o-mini"
    hidden = await client.request("GET", "/v1/models/gpt-4o", key=key)
    assert_error(hidden, 404, "model_not_found", "model", ("'gpt-4o' does not exist",))
    missing = await client.request("GET", "/v1/models/nope", key=key)
    assert_error(missing, 404, "model_not_found", "model")
    assert received(client) == []  # the listing is the gateway's own


# --- embeddings and responses ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_pass_through_and_are_priced(shared: SharedRunner, encoding: str):
    async def test(client: AppClient) -> None:
        key = await new_key(client)
        payload = {"model": "text-embedding-3-small", "input": ["first text", "second one"],
                   "encoding_format": encoding, "dimensions": 8}
        validate(payload, request_schema("/v1/embeddings") or "")
        body = json.dumps(payload).encode()
        reply = await client.request("POST", "/v1/embeddings", body=body, key=key)
        assert reply.status == 200
        assert received(client)[-1].body == body
        document = reply.json()
        vectors = [item["embedding"] for item in document["data"]]
        if encoding == "float":
            validate(document, "CreateEmbeddingResponse")
            assert [len(v) for v in vectors] == [8, 8]
        else:
            assert [len(base64.b64decode(v)) for v in vectors] == [32, 32]
        tokens = count_tokens("first text") + count_tokens("second one")
        assert document["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
        expected = cost_of("mock", "text-embedding-3-small", tokens)
        assert Decimal(reply.headers["x-keystead-cost-usd"]) == expected > 0
        row = await ledger_row(client, reply.headers["x-request-id"])
        assert (row.endpoint, row.prompt_tokens, row.completion_tokens) == ("embeddings",
                                                                            tokens, 0)
        assert row.cost_usd == expected

    shared(test)


@on_shared_app
async def test_responses_pass_through_and_are_priced(client: AppClient) -> None:
    key = await new_key(client)
    payload = {"model": "gpt-4o-mini", "input": "Write a haiku [[mock:tokens=6]]",
               "instructions": "Be brief.", "temperature": 0.3}
    body = json.dumps(payload).encode()
    reply = await client.request("POST", "/v1/responses", body=body, key=key)
    assert reply.status == 200
    assert received(client)[-1].body == body
    assert received(client)[-1].path == "/v1/responses"
    document = reply.json()
    validate(document, "Response")
    usage = document["usage"]
    assert usage["output_tokens"] == 6
    expected = cost_of("mock", "gpt-4o-mini", usage["input_tokens"], usage["output_tokens"])
    assert Decimal(reply.headers["x-keystead-cost-usd"]) == expected
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.endpoint, row.prompt_tokens, row.completion_tokens) == (
        "responses", usage["input_tokens"], 6)
    assert row.cost_usd == expected


@on_shared_app
async def test_a_streamed_response_passes_through_and_its_usage_is_recorded(
        client: AppClient) -> None:
    key = await new_key(client)
    reply = await client.request("POST", "/v1/responses", key=key, json_body={
        "model": "gpt-4o-mini", "input": "Stream [[mock:tokens=5]]", "stream": True})
    assert reply.status == 200
    events = reply.events()
    assert events[0].startswith(b"event: response.created\ndata: ")
    payloads = sse_data(reply)
    for event in payloads:
        validate(event, "ResponseStreamEvent")
    assert payloads[-1]["type"] == "response.completed"
    usage = payloads[-1]["response"]["usage"]
    row = await ledger_row(client, reply.headers["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (usage["input_tokens"], 5)
    assert not row.usage_estimated and row.stream
    assert events[-1] == b": x-keystead-cost-usd " + format(row.cost_usd, "f").encode()


@in_app(raw={"providers": {"plain": {"type": "mock", "models": ["plain-model"],
                                     "supports_responses": False}}})
async def test_a_provider_without_responses_support_gives_a_clear_error(
        client: AppClient) -> None:
    key = await new_key(client)
    reply = await client.request("POST", "/v1/responses", key=key,
                                 json_body={"model": "plain-model", "input": "hi"})
    assert_error(reply, 404, "model_not_found", "model",
                 ("served by provider plain", "does not offer /v1/responses"))
    assert received(client, "plain") == []
    assert (await chat(client, key, model="plain-model")).status == 200


# --- the ledger and the log line ---------------------------------------------------------------


@on_shared_app
async def test_a_success_records_every_field(client: AppClient) -> None:
    assert (await client.admin("POST", "/admin/teams", {"name": "payments"})).status == 201
    key = await client.create_key("prod-checkout-api-01", team="payments")
    reply = await client.request(
        "POST", CHAT, key=key, json_body=chat_body("Record me [[mock:tokens=5]]"),
        headers={"x-keystead-feature": "cart-summary", "user-agent": "OpenAI/Python 1.99",
                 "x-request-id": "full-row-1"}, client=("10.1.2.3", 43210))
    assert reply.status == 200
    usage = reply.json()["usage"]
    row = await ledger_row(client, "full-row-1")
    assert row.key_id == key[4:12]
    assert (row.key_name, row.team, row.env) == ("prod-checkout-api-01", "payments", "prod")
    assert (row.feature, row.endpoint, row.status, row.error_code) == (
        "cart-summary", "chat.completions", 200, None)
    assert (row.model_requested, row.model_served, row.provider) == ("gpt-4o-mini",
                                                                     "gpt-4o-mini", "mock")
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (
        usage["prompt_tokens"], 5, 0)
    assert row.cost_usd == Decimal(reply.headers["x-keystead-cost-usd"]) > 0
    assert row.latency_ms > 0 and row.ttft_ms is not None and 0 < row.ttft_ms <= row.latency_ms
    assert (row.client_ip, row.user_agent, row.stream) == ("10.1.2.3", "OpenAI/Python 1.99",
                                                           False)
    assert row.usage_estimated is False


@in_app(raw={"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"],
                                    "mock": {"chunk_delay_ms": 5}}}})
async def test_every_request_leaves_exactly_one_ledger_row(client: AppClient) -> None:
    assert (await client.admin("POST", "/admin/teams", {"name": "core"})).status == 201
    key = await client.create_key("dev-ledger-app", team="core")
    outcomes: dict[str, int] = {}

    async def call(request_id: str, **kwargs: Any) -> None:
        headers = {"x-request-id": request_id, "x-keystead-feature": "ledger"}
        method = kwargs.pop("method", "POST")
        path = kwargs.pop("path", CHAT)
        reply = await client.request(method, path, headers=headers, **kwargs)
        outcomes[request_id] = reply.status

    await call("ok", key=key, json_body=chat_body())
    await call("ok-stream", key=key, json_body=chat_body(stream=True))
    await call("bad-json", key=key, body=b"{")
    await call("no-key", json_body=chat_body())
    await call("not-found", key=key, json_body=chat_body(model="nope"))
    await call("route", key=key, path="/v1/audio/speech", json_body={})
    await call("method", key=key, method="PUT", path="/v1/embeddings", json_body={})
    await call("models", key=key, method="GET", path="/v1/models")
    await call("upstream-429", key=key, json_body=chat_body("[[mock:status=429]]"))
    await call("upstream-500", key=key, json_body=chat_body("[[mock:status=500]]"))
    await call("cut", key=key, json_body=chat_body("[[mock:disconnect_after=2]]", stream=True))
    await call("gone", key=key, json_body=chat_body(stream=True), disconnect_after_chunks=2)
    assert await client.admin("GET", "/admin/keys")  # the admin API is not metered
    rows = await ledger(client)
    counts = Counter(row.request_id for row in rows)
    assert counts == Counter(outcomes.keys())  # each request once, and nothing else
    by_id = {row.request_id: row for row in rows}
    expected_status = {"ok": 200, "ok-stream": 200, "bad-json": 400, "no-key": 401,
                       "not-found": 404, "route": 404, "method": 405, "models": 200,
                       "upstream-429": 429, "upstream-500": 500, "cut": 502, "gone": 499}
    assert {rid: row.status for rid, row in by_id.items()} == expected_status
    for rid, row in by_id.items():
        assert row.feature == "ledger"
        assert row.client_ip == "127.0.0.1"
        # The route and the method are checked before the key: those rows have no key.
        assert (row.key_name, row.team) == ((None, None) if rid in ("no-key", "route", "method")
                                            else ("dev-ledger-app", "core"))
        assert row.stream == (rid in ("ok-stream", "cut", "gone"))
        assert (row.status >= 400) == (row.error_code is not None)
        if row.status >= 400 and rid not in ("cut", "gone"):
            assert row.cost_usd == 0 and row.prompt_tokens == 0


@in_app(env={"MOCK_PROVIDER_KEY": PROVIDER_KEY},
        raw={"providers": {"mock": {"type": "mock", "api_key": "${MOCK_PROVIDER_KEY}",
                                    "models": ["gpt-4o-mini"]}}})
async def test_one_json_log_line_per_request_with_the_ledgers_fields_and_no_secrets(
        client: AppClient) -> None:
    assert (await client.admin("POST", "/admin/teams", {"name": "obs"})).status == 201
    key = await client.create_key("prod-logged-app", team="obs")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.INFO)
    logger = logging.getLogger("keystead.request")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        secret_prompt = "zebra-quartz-confidential-prompt"
        ok = await chat(client, key, secret_prompt, headers={"x-keystead-feature": "logs"})
        bad = await chat(client, key, secret_prompt, model="gpt-4o-nonexistent")
        anonymous = await chat(client, None, secret_prompt)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    assert len(records) == 3
    lines = [record.msg for record in records]
    assert all(isinstance(line, bytes) for line in lines)
    for line in lines:
        assert key.encode() not in line and key[12:].encode() not in line
        assert PROVIDER_KEY.encode() not in line
        assert secret_prompt.encode() not in line
    parsed = [json.loads(line) for line in lines]
    for reply, line in zip((ok, bad, anonymous), parsed, strict=True):
        row = await ledger_row(client, reply.headers["x-request-id"])
        assert line["event"] == "request"
        assert line["request_id"] == row.request_id
        assert (line["status"], line["error_code"]) == (row.status, row.error_code)
        assert (line["key_id"], line["key_name"], line["team"], line["env"]) == (
            row.key_id, row.key_name, row.team, row.env)
        assert (line["model"], line["model_served"], line["provider"]) == (
            row.model_requested, row.model_served, row.provider)
        assert (line["prompt_tokens"], line["completion_tokens"]) == (row.prompt_tokens,
                                                                      row.completion_tokens)
        assert Decimal(line["cost_usd"]) == row.cost_usd
        assert (line["latency_ms"], line["ttft_ms"]) == (row.latency_ms, row.ttft_ms)
        assert (line["stream"], line["usage_estimated"]) == (row.stream, row.usage_estimated)
        assert (line["feature"], line["client_ip"]) == (row.feature, row.client_ip)
    assert parsed[0]["feature"] == "logs" and parsed[0]["level"] == "info"
    assert (parsed[1]["status"], parsed[2]["status"]) == (404, 401)


@in_app(raw={"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"],
                                    "mock": {"latency_ms": 300}}}})
async def test_requests_in_flight_are_counted_per_key_and_released(client: AppClient) -> None:
    key = await new_key(client)
    key_id = key[4:12]
    calls = [asyncio.create_task(chat(client, key, "hi")) for _ in range(3)]
    await asyncio.sleep(0.1)
    status = (await client.admin("GET", "/admin/status")).json()
    assert status["in_flight"] == {key_id: 3}
    pools = await client.runtime.counters.pools("pool:inflight:key:")
    assert pools["pool:inflight:key:" + key_id].holders == 3
    await asyncio.gather(*calls)
    assert (await client.admin("GET", "/admin/status")).json()["in_flight"] == {}
    # errors release the gauge too: the provider's, and a client that leaves
    assert (await chat(client, key, "[[mock:status=500]]")).status == 500
    await client.request("POST", CHAT, key=key, disconnect_after_s=0.05,
                         json_body=chat_body("hi"))
    assert await client.runtime.counters.pools("pool:inflight:key:") == {}


@in_app(raw={"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"],
                                    "mock": {"latency_ms": 2000}}}})
async def test_a_request_the_server_cancels_is_still_recorded(client: AppClient) -> None:
    key = await new_key(client)
    call = asyncio.create_task(client.request(
        "POST", CHAT, key=key, headers={"x-request-id": "cancelled-1"},
        json_body=chat_body("slow")))
    await asyncio.sleep(0.2)
    call.cancel()  # what uvicorn does when the shutdown grace period runs out
    with pytest.raises(asyncio.CancelledError):
        await call
    row = await ledger_row(client, "cancelled-1")
    assert (row.status, row.error_code) == (503, "cancelled")
