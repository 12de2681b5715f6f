"""Anthropic's own API through keystead: the official `anthropic` SDK -> the gateway (served
over real HTTP) -> providers of type anthropic pointed at mock Anthropic upstreams (served over
real HTTP too). Bodies, answers and events pass through; keys, scopes, guardrails, limits,
budgets, routes and the ledger apply as on the OpenAI routes; errors take Anthropic's shape."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from keystead.mocks.anthropic_upstream import (
    AnthropicMock,
    AnthropicMockSettings,
    create_anthropic_mock_app,
)
from keystead.state.records import UsageRecord
from keystead.usage.prices import PriceBook, TokenUsage
from support import AppClient, make_loaded, running_app, serving_asgi

ANTHROPIC_KEY = "sk-ant-test-key-0123456789"
MODEL = "claude-haiku-4-5"
MODELS = (MODEL, "claude-sonnet-4-5")
FAST_RETRY = {"attempts": 3, "base_ms": 1, "cap_ms": 5, "max_retry_after_s": 2,
              "attempt_timeout_s": 2}
WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@dataclass
class Gateway:
    client: AppClient
    sdk: anthropic.AsyncAnthropic
    url: str
    key: str
    mocks: dict[str, AnthropicMock]

    def sdk_with(self, key: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=key, max_retries=0,
                                        timeout=10)

    async def row(self, request_id: str, wait_s: float = 5) -> UsageRecord:
        """The request's ledger row (waiting for it: a cut stream settles when the gateway
        notices the client left)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            await self.client.runtime.ledger.flush()
            rows = [r for r in await self.client.runtime.store.recent_usage(200)
                    if r.request_id == request_id]
            if rows or asyncio.get_running_loop().time() > deadline:
                assert len(rows) == 1, f"no ledger row for {request_id}"
                return rows[0]
            await asyncio.sleep(0.05)


@asynccontextmanager
async def gateway(tmp_path: Path, raw: dict[str, Any] | None = None) -> AsyncIterator[Gateway]:
    """Three mock Anthropic upstreams: `claude` (answers), `claude-busy` (always 529),
    `claude-slow` (20 ms between events); the route `claude-fast` tries busy, then claude."""
    mocks = {
        "claude": create_anthropic_mock_app(AnthropicMockSettings(api_key=ANTHROPIC_KEY,
                                                                  models=MODELS)),
        "claude-busy": create_anthropic_mock_app(AnthropicMockSettings(
            api_key=ANTHROPIC_KEY, models=MODELS, status=529)),
        "claude-slow": create_anthropic_mock_app(AnthropicMockSettings(
            api_key=ANTHROPIC_KEY, models=MODELS, chunk_delay_ms=20)),
    }
    async with AsyncExitStack() as stack:
        providers: dict[str, Any] = {}
        for name, mock in mocks.items():
            url = await stack.enter_async_context(serving_asgi(mock))
            providers[name] = {"type": "anthropic", "base_url": url,
                               "api_key": "${ANTHROPIC_API_KEY}", "models": list(MODELS)}
        config: dict[str, Any] = {
            "providers": providers,
            "routes": {"claude-fast": {"strategy": "ordered", "retry": FAST_RETRY,
                                       "deployments": [
                                           {"provider": "claude-busy", "model": MODEL},
                                           {"provider": "claude", "model": MODEL}]}},
            "routing": {"breaker": {"failures": 5, "window_s": 60, "cooldown_s": 60}},
            **(raw or {}),
        }
        loaded = make_loaded(tmp_path, config, env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY})
        client = await stack.enter_async_context(running_app(loaded))
        key = await client.create_key()
        url = await stack.enter_async_context(serving_asgi(client.app))
        sdk = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=10)
        stack.push_async_callback(sdk.close)
        yield Gateway(client, sdk, url, key, mocks)


Test = Callable[[Gateway], Awaitable[None]]


def run(tmp_path: Path, test: Test, raw: dict[str, Any] | None = None) -> None:
    async def main() -> None:
        async with gateway(tmp_path, raw) as gw:
            await asyncio.wait_for(test(gw), 30)

    asyncio.run(main())


def cost(model: str, usage: TokenUsage) -> Decimal:
    return PriceBook().cost("anthropic", model, usage).usd


# --- messages, streamed or not ----------------------------------------------------------------


def test_a_message_passes_through_and_is_priced(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        raw = await gw.sdk.messages.with_raw_response.create(
            model=MODEL, max_tokens=100, system="be brief", stop_sequences=["mock"],
            messages=user("hello [[mock:tokens=4]] [[mock:cache_read=100]] "
                          "[[mock:cache_write=200]]"),
            extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
        message = await raw.parse()
        assert message.content[0].type == "text" and message.content[0].text == "This is a "
        assert message.stop_reason == "stop_sequence"
        usage = message.usage
        assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 200)
        # What reached Anthropic: the client's body, with the client's version and beta, and
        # the gateway's provider key, never the keystead key.
        sent = gw.mocks["claude"].received[-1]
        assert sent.path == "/v1/messages"
        assert sent.json() == {"model": MODEL, "max_tokens": 100, "system": "be brief",
                               "stop_sequences": ["mock"], "messages": user(
                                   "hello [[mock:tokens=4]] [[mock:cache_read=100]] "
                                   "[[mock:cache_write=200]]")}
        # (anthropic 2.x names a newer version than the 2023-06-01 keystead's translation uses)
        assert sent.headers["anthropic-version"] == raw.http_request.headers["anthropic-version"]
        assert sent.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
        assert sent.headers["x-api-key"] == ANTHROPIC_KEY
        assert gw.key not in json.dumps(sent.headers)
        # keystead's headers, and Anthropic's request id kept.
        assert raw.headers["x-keystead-provider"] == "claude"
        assert raw.headers["request-id"].startswith("req_")
        assert raw.headers["x-upstream-request-id"] == raw.headers["request-id"]
        record = await gw.row(raw.headers["x-request-id"])
        assert (record.endpoint, record.status, record.provider, record.model_served) == (
            "messages", 200, "claude", MODEL)
        prompt = usage.input_tokens + 100 + 200
        assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (
            prompt, usage.output_tokens, 100)
        expected = cost(MODEL, TokenUsage(prompt, usage.output_tokens, cached_tokens=100,
                                          cache_write_tokens=200))
        # Cache writes are priced at their own rate (above the input rate for Claude).
        assert expected > cost(MODEL, TokenUsage(prompt, usage.output_tokens, cached_tokens=100))
        assert record.cost_usd == expected
        assert Decimal(raw.headers["x-keystead-cost-usd"]) == expected
        assert not record.usage_estimated

    run(tmp_path, test)


def test_the_exact_bytes_go_upstream_and_come_back(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        # Odd spacing and field order, an unknown-to-keystead field: forwarded byte for byte.
        body = (b'{ "max_tokens" : 50, "messages": [{"role": "user", "content": "hi"}],'
                b' "temperature": 0.5, "model": "claude-haiku-4-5", "metadata": {"user_id": "u"}}')
        reply = await gw.client.request("POST", "/v1/messages", body=body,
                                        headers={"x-api-key": gw.key})  # older SDKs' header
        assert reply.status == 200, reply.body
        sent = gw.mocks["claude"].received[-1]
        assert sent.body == body
        assert sent.headers["anthropic-version"] == "2023-06-01"  # the default
        assert "anthropic-beta" not in sent.headers
        assert reply.json()["type"] == "message" and reply.json()["id"].startswith("msg_")

        # A `provider/model` name is the one change: the provider gets its own model name.
        reply = await gw.client.request("POST", "/v1/messages", key=gw.key, json_body={
            "model": f"claude-slow/{MODEL}", "max_tokens": 5, "messages": user("hi")})
        assert reply.status == 200
        assert gw.mocks["claude-slow"].received[-1].json()["model"] == MODEL

    run(tmp_path, test)


def test_tool_use_round_trip(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        question = {"role": "user", "content": "weather in Paris?"}
        message = await gw.sdk.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER],
                                               messages=[question])
        assert message.stop_reason == "tool_use"
        assert [b.type for b in message.content] == ["text", "tool_use"]
        call = message.content[1]
        assert call.type == "tool_use" and call.name == "get_weather"
        assert call.input == {"city": "mock"}
        answer = await gw.sdk.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER],
                                              messages=[
            question, {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                          "content": "sunny"}]}])
        assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"

    run(tmp_path, test)


def test_a_stream_passes_through_event_by_event_and_is_priced(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        async with gw.sdk.messages.stream(
                model=MODEL, max_tokens=100,
                messages=user("stream please [[mock:tokens=6]] [[mock:cache_read=50]] "
                              "[[mock:cache_write=30]]")) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
            assert stream.response.headers["x-keystead-provider"] == "claude"
        assert text == "This is a mock reply to:"
        assert final.content[0].type == "text" and final.content[0].text == text
        assert final.stop_reason == "end_turn"
        assert (final.usage.output_tokens, final.usage.cache_read_input_tokens,
                final.usage.cache_creation_input_tokens) == (6, 50, 30)
        record = await gw.row(request_id)
        prompt = final.usage.input_tokens + 50 + 30
        assert (record.endpoint, record.stream, record.status) == ("messages", True, 200)
        assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (
            prompt, 6, 50)
        assert record.cost_usd == cost(MODEL, TokenUsage(prompt, 6, cached_tokens=50,
                                                         cache_write_tokens=30))
        assert not record.usage_estimated

        # The raw stream: Anthropic's events in order, then the cost as an SSE comment
        # (which SSE clients, the SDK's included, skip).
        reply = await gw.client.request("POST", "/v1/messages", key=gw.key, json_body={
            "model": MODEL, "max_tokens": 100, "stream": True,
            "messages": user("[[mock:tokens=3]] hi")})
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = reply.events()
        names = [e.split(b"\n", 1)[0] for e in events]
        assert names == [b"event: message_start", b"event: content_block_start", b"event: ping",
                         *[b"event: content_block_delta"] * 3, b"event: content_block_stop",
                         b"event: message_delta", b"event: message_stop",
                         b": x-keystead-cost-usd " + reply.events()[-1].split(b" ")[-1]]
        assert Decimal(events[-1].split(b" ")[-1].decode()) > 0

        # Tool use streams too.
        async with gw.sdk.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER],
                                          tool_choice={"type": "any"},
                                          messages=user("look it up")) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "mock"}

    run(tmp_path, test)


def test_a_client_that_leaves_mid_stream_stops_it_and_is_charged(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        started = asyncio.get_running_loop().time()
        seen = 0
        async with gw.sdk.messages.stream(
                model=f"claude-slow/{MODEL}", max_tokens=1000,
                messages=user("[[mock:tokens=400]] a long one"),
                extra_headers={"x-request-id": "native-cut-1"}) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    seen += 1
                    if seen == 5:
                        break
        record = await gw.row("native-cut-1")
        # The gateway cut its own connection to the provider, which stopped generating long
        # before the 400 deltas x 20 ms the whole answer takes.
        slow = gw.mocks["claude-slow"]
        for _ in range(200):
            if slow.abandoned:
                break
            await asyncio.sleep(0.02)
        assert slow.abandoned == 1
        assert asyncio.get_running_loop().time() - started < 4
        assert (record.status, record.error_code) == (499, "client_disconnected")
        assert record.usage_estimated and record.stream
        # Anthropic's own input count (message_start) is kept; the output is what was relayed.
        assert record.prompt_tokens > 0
        assert 5 <= record.completion_tokens < 400
        assert record.cost_usd == cost(MODEL, TokenUsage(record.prompt_tokens,
                                                         record.completion_tokens))
        assert record.cost_usd > 0

    run(tmp_path, test)


def test_an_error_event_mid_stream_is_passed_on_and_what_was_used_recorded(
        tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        with pytest.raises(anthropic.APIStatusError) as raised:
            async with gw.sdk.messages.stream(
                    model=MODEL, max_tokens=100, messages=user("x [[mock:stream_error=2]]"),
                    extra_headers={"x-request-id": "native-error-event"}) as stream:
                async for _ in stream.text_stream:
                    pass
        assert "overloaded_error" in str(raised.value)
        record = await gw.row("native-error-event")
        assert record.usage_estimated and record.completion_tokens >= 2
        assert record.prompt_tokens > 0

        # The provider drops the connection mid-stream: keystead ends the stream with
        # Anthropic's error event, which the SDK raises.
        with pytest.raises(anthropic.APIStatusError) as broken:
            async with gw.sdk.messages.stream(
                    model=MODEL, max_tokens=100, messages=user("x [[mock:disconnect_after=2]]"),
                    extra_headers={"x-request-id": "native-broken"}) as stream:
                async for _ in stream.text_stream:
                    pass
        assert broken.value.body["error"]["code"] == "upstream_unreachable"
        record = await gw.row("native-broken")
        assert (record.status, record.error_code) == (502, "upstream_unreachable")
        assert record.usage_estimated and record.completion_tokens >= 2

    run(tmp_path, test)


def test_count_tokens_passes_through_and_costs_nothing(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        raw = await gw.sdk.messages.with_raw_response.count_tokens(
            model=MODEL, messages=user("one two three"))
        assert (await raw.parse()).input_tokens == 9
        assert gw.mocks["claude"].received[-1].path == "/v1/messages/count_tokens"
        record = await gw.row(raw.headers["x-request-id"])
        assert (record.endpoint, record.status, record.cost_usd) == (
            "messages.count_tokens", 200, Decimal(0))

    run(tmp_path, test)


# --- policy: keys, scopes, guardrails, budgets -------------------------------------------------


def test_keys_and_scopes_are_checked_with_anthropic_errors(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        def ask(sdk: anthropic.AsyncAnthropic, model: str = MODEL) -> Any:
            return sdk.messages.create(model=model, max_tokens=10, messages=user("hi"))

        bad = gw.sdk_with("ksk_not_a_real_key")
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await ask(bad)
        assert denied.value.body == {"type": "error", "error": {
            "type": "authentication_error", "message": denied.value.body["error"]["message"],
            "code": "invalid_api_key"}, "request_id": denied.value.response.headers[
                "x-request-id"]}
        await bad.close()
        missing = await gw.client.request("POST", "/v1/messages", json_body={
            "model": MODEL, "max_tokens": 5, "messages": user("hi")})
        assert missing.status == 401
        assert missing.json()["error"]["type"] == "authentication_error"

        chat_only = gw.sdk_with(await gw.client.create_key(
            "dev-chat-only-01", endpoints=["chat.completions"]))
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await ask(chat_only)
        assert refused.value.body["error"]["code"] == "endpoint_not_allowed"
        assert "may not call messages" in refused.value.message
        await chat_only.close()
        messages_only = gw.sdk_with(await gw.client.create_key(
            "dev-claude-only-01", endpoints=["messages"], models=["claude-sonnet-*"]))
        assert (await messages_only.messages.count_tokens(
            model="claude-sonnet-4-5", messages=user("hi"))).input_tokens > 0
        with pytest.raises(anthropic.PermissionDeniedError) as model_refused:
            await ask(messages_only)
        assert model_refused.value.body["error"]["code"] == "model_not_allowed"
        await messages_only.close()

        capped = gw.sdk_with(await gw.client.create_key("dev-capped-app-01", max_tokens=50))
        with pytest.raises(anthropic.BadRequestError) as too_many:
            await capped.messages.create(model=MODEL, max_tokens=51, messages=user("hi"))
        assert too_many.value.body["error"]["code"] == "max_tokens_exceeded"
        await capped.close()
        # Messages requires max_tokens, keystead too (its worst case bounds budgets).
        reply = await gw.client.request("POST", "/v1/messages", key=gw.key, json_body={
            "model": MODEL, "messages": user("hi")})
        assert reply.status == 400
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in reply.json()["error"]["message"]

    run(tmp_path, test)


def test_a_budget_refusal_is_anthropics_rate_limit_error(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        poor = gw.sdk_with(await gw.client.create_key(
            "dev-poor-app-01", limits={"budget_usd": "0.001", "budget_period": "day"}))
        with pytest.raises(anthropic.RateLimitError) as refused:
            # 1000 output tokens of haiku may cost $0.005: more than the budget.
            await poor.messages.create(model=MODEL, max_tokens=1000, messages=user("hi"))
        body = refused.value.body
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "budget_exceeded"
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert refused.value.response.headers["retry-after"]
        # A request within it passes, and is charged to it.
        message = await poor.messages.create(model=MODEL, max_tokens=5, messages=user("hi"))
        assert message.usage.output_tokens == 5
        await poor.close()

    run(tmp_path, test)


def test_guardrails_read_the_messages_shape(tmp_path: Path) -> None:
    alphabet = string.ascii_letters + string.digits + "_-"
    leaked = "sk-proj-" + "".join(secrets.choice(alphabet) for _ in range(100))

    async def test(gw: Gateway) -> None:
        prod = gw.sdk_with(await gw.client.create_key("prod-claude-bot-01"))
        with pytest.raises(anthropic.BadRequestError) as blocked:
            await prod.messages.create(model=MODEL, max_tokens=10, system=f"use {leaked}",
                                       messages=user("hi"))
        assert blocked.value.body["error"]["code"] == "content_blocked"
        assert leaked not in json.dumps(blocked.value.body)
        message = await prod.messages.create(model=MODEL, max_tokens=60, messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "mail ana@example.com [[mock:tokens=40]]"}]}])
        assert message.content[0].type == "text"
        assert "ana@example.com" not in message.content[0].text
        assert "REDACTED" in message.content[0].text
        assert "ana@example.com" not in gw.mocks["claude"].received[-1].body.decode()
        await prod.close()

    run(tmp_path, test, {"guardrails": {"environments": {
        "prod": {"secrets": "block", "pii": "mask"}}}})


# --- models that are not Anthropic's, provider errors, routes ----------------------------------


def test_a_model_of_another_provider_is_a_404_pointing_to_chat(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        with pytest.raises(anthropic.NotFoundError) as raised:
            await gw.sdk.messages.create(model="gpt-4o-mini", max_tokens=10,
                                         messages=user("hi"))
        error = raised.value.body["error"]
        assert error["type"] == "not_found_error" and error["code"] == "model_not_found"
        assert "serves only Anthropic models" in error["message"]
        assert "/v1/chat/completions" in error["message"]
        with pytest.raises(anthropic.NotFoundError):
            await gw.sdk.messages.create(model="no-such-model", max_tokens=10,
                                         messages=user("hi"))
        reply = await gw.client.request("POST", "/v1/messages/batches", key=gw.key,
                                        json_body={})
        assert reply.status == 404 and reply.json()["error"]["type"] == "not_found_error"
        reply = await gw.client.request("GET", "/v1/messages", key=gw.key)
        assert reply.status == 405 and reply.json()["type"] == "error"

    run(tmp_path, test)


def test_provider_errors_pass_through_as_anthropic_wrote_them(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        with pytest.raises(anthropic.RateLimitError) as limited:
            await gw.sdk.messages.create(model=MODEL, max_tokens=10,
                                         messages=user("[[mock:status=429]]"))
        assert limited.value.response.headers["retry-after"] == "1"
        assert limited.value.body["error"] == {
            "type": "rate_limit_error",
            "message": "This request would exceed your organization's rate limit."}
        record = await gw.row(limited.value.response.headers["x-request-id"])
        assert (record.status, record.error_code, record.provider) == (
            429, "upstream_http_429", "claude")
        with pytest.raises(anthropic.OverloadedError):  # 529 as it is: the SDK knows it
            await gw.sdk.messages.create(model=f"claude-busy/{MODEL}", max_tokens=10,
                                         messages=user("hi"))
        with pytest.raises(anthropic.BadRequestError) as too_long:
            await gw.sdk.messages.create(model=MODEL, max_tokens=10,
                                         messages=user("[[mock:prompt_too_long]]"))
        assert "prompt is too long" in too_long.value.message
        # Anthropic checks what it checks; its 400 comes back as it wrote it.
        with pytest.raises(anthropic.BadRequestError) as extra:
            await gw.sdk.messages.create(model=MODEL, max_tokens=10, messages=user("hi"),
                                         extra_body={"n": 2})
        assert "Extra inputs are not permitted" in extra.value.message

    run(tmp_path, test)


def test_a_route_over_two_anthropic_deployments_retries_a_529(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        raw = await gw.sdk.messages.with_raw_response.create(
            model="claude-fast", max_tokens=20, messages=user("hello [[mock:tokens=3]]"))
        message = await raw.parse()
        assert message.content[0].type == "text" and message.model == MODEL
        assert raw.headers["x-keystead-route"] == "claude-fast"
        assert raw.headers["x-keystead-deployment"] == f"claude/{MODEL}"
        assert raw.headers["x-keystead-attempts"] == "2"
        assert len(gw.mocks["claude-busy"].received) == 1
        # The alias was replaced by each deployment's model name.
        assert gw.mocks["claude"].received[-1].json()["model"] == MODEL
        record = await gw.row(raw.headers["x-request-id"])
        assert (record.route, record.provider, record.attempts, record.status) == (
            "claude-fast", "claude", 2, 200)
        assert record.cost_usd > 0

        # Streams too: retried before their first event.
        async with gw.sdk.messages.stream(model="claude-fast", max_tokens=20,
                                          messages=user("[[mock:tokens=3]] s")) as stream:
            final = await stream.get_final_message()
            assert stream.response.headers["x-keystead-attempts"] == "2"
        assert final.usage.output_tokens == 3

    run(tmp_path, test)


def test_the_chat_route_prices_cache_writes_of_the_translated_provider(tmp_path: Path) -> None:
    async def test(gw: Gateway) -> None:
        reply = await gw.client.request("POST", "/v1/chat/completions", key=gw.key, json_body={
            "model": MODEL, "messages": user("hi [[mock:cache_write=500]] [[mock:tokens=2]]")})
        assert reply.status == 200
        usage = reply.json()["usage"]
        assert usage["prompt_tokens_details"]["cache_write_tokens"] == 500
        record = await gw.row(reply.headers["x-request-id"])
        assert record.cost_usd == cost(MODEL, TokenUsage(
            usage["prompt_tokens"], 2, cache_write_tokens=500))

    run(tmp_path, test)
