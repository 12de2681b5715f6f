"""Anthropic behind the OpenAI route: the mock Anthropic upstream, the adapter, end to end.

The translator's pure functions have their own tests, one file per module
(test_anthropic_request, test_anthropic_answer, test_anthropic_stream, test_anthropic_errors).

1. The adapter in process: Anthropic's headers, retry-after, streams, refusals; Claude prices.
2. The mock speaks Anthropic's real wire format: the official `anthropic` SDK parses its
   messages, streams and errors over real HTTP.
3. End to end: the gateway under uvicorn with a provider of type anthropic pointed at the
   served mock, and the official `openai` SDK as the client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from e2e.harness import free_port, http, wait_for_rows
from keystead.errors import InvalidField
from keystead.mocks.anthropic_upstream import AnthropicMockSettings, create_anthropic_mock_app
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from keystead.providers.anthropic import AnthropicProvider
from keystead.providers.base import Endpoint
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport
from keystead.server.app import create_app
from keystead.usage.prices import PriceBook, TokenUsage
from openapi_schemas import validate
from providers.anthropic_fixtures import MODEL, WEATHER, openai_events, user
from support import ADMIN_TOKEN, make_loaded

ANTHROPIC_KEY = "sk-ant-test-key-0123456789"
GEMINI_KEY = "gemini-test-key-0123456789"


# --- prices ---------------------------------------------------------------------------------


def test_claude_models_are_priced_with_cache_reads_and_writes():
    book = PriceBook()
    # claude-haiku-4-5: $1 / MTok in, $5 out, $0.10 cache read, $1.25 cache write.
    cost = book.cost("anthropic", "claude-haiku-4-5",
                     TokenUsage(prompt_tokens=1000, completion_tokens=100, cached_tokens=100,
                                cache_write_tokens=500))
    assert cost.known
    assert cost.usd == Decimal("0.001535000")  # (400 x 1 + 100 x 0.1 + 500 x 1.25 + 100 x 5) / M
    dated = book.cost("anthropic", "claude-sonnet-4-5-20250929", TokenUsage(1000, 100))
    assert dated.known and dated.usd == Decimal("0.004500000")  # 1000 x 3 + 100 x 15, per MTok


# --- the adapter, in process ----------------------------------------------------------------


def make_provider(**settings: Any) -> tuple[AnthropicProvider, Any]:
    mock = create_anthropic_mock_app(AnthropicMockSettings(api_key=ANTHROPIC_KEY, **settings))
    spec = ProviderSpec(name="claude", type="anthropic", base_url="http://anthropic.test",
                        source="config", models=(MODEL,))
    provider = build_provider(spec, ANTHROPIC_KEY, ASGITransport(mock), read_timeout=10)
    assert isinstance(provider, AnthropicProvider)
    return provider, mock


def test_the_adapter_sends_a_messages_request_with_anthropics_headers():
    async def main() -> None:
        provider, mock = make_provider()
        assert provider.capabilities.supports(Endpoint.CHAT)
        assert not provider.capabilities.supports(Endpoint.EMBEDDINGS)
        assert not provider.capabilities.supports(Endpoint.RESPONSES)
        body = orjson.dumps({"model": "claude", "messages": user("hi [[mock:tokens=3]]"),
                             "max_tokens": 20})
        response = await provider.send(Endpoint.CHAT, MODEL, body, stream=False)
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"].startswith("req_")
        completion = orjson.loads(await response.read())
        assert completion["choices"][0]["message"]["content"] == "This is a"
        sent = mock.received[-1]
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == ANTHROPIC_KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in sent.headers
        assert sent.json()["max_tokens"] == 20 and sent.json()["model"] == MODEL

        listed = await provider.send(Endpoint.MODELS, "", None, stream=False)
        document = orjson.loads(await listed.read())
        assert document["object"] == "list"
        assert [m["id"] for m in document["data"]] == list(AnthropicMockSettings().models)
        assert mock.received[-1].path == "/v1/models"

    asyncio.run(main())


def test_the_adapter_passes_retry_after_and_maps_overload():
    async def main() -> None:
        provider, _ = make_provider()
        for directive, status in (("[[mock:status=429]]", 429), ("[[mock:status=529]]", 503)):
            body = orjson.dumps({"model": MODEL, "messages": user(f"x {directive}"),
                                 "stream": True})
            response = await provider.send(Endpoint.CHAT, MODEL, body, stream=True)
            assert response.status == status
            assert response.headers["content-type"] == "application/json"
            if status == 429:
                assert response.headers["retry-after"] == "1"
            validate(orjson.loads(await response.read()), "ErrorResponse")

    asyncio.run(main())


def test_the_adapter_streams_openai_chunks():
    async def main() -> None:
        provider, _ = make_provider()
        body = orjson.dumps({"model": MODEL, "stream": True,
                             "stream_options": {"include_usage": True},
                             "messages": user("hi [[mock:tokens=5]] [[mock:cache_write=7]]")})
        response = await provider.send(Endpoint.CHAT, MODEL, body, stream=True)
        assert response.headers["content-type"] == "text/event-stream"
        data = b"".join([chunk async for chunk in response.iter_chunks()])
        events = openai_events(data)
        assert events[-1] == b"[DONE]"
        usage = events[-2]["usage"]
        assert usage["completion_tokens"] == 5
        assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 7}

    asyncio.run(main())


def test_a_refused_request_never_reaches_anthropic():
    async def main() -> None:
        provider, mock = make_provider()
        body = orjson.dumps({"model": MODEL, "messages": user("hi"), "n": 3})
        with pytest.raises(InvalidField):
            await provider.send(Endpoint.CHAT, MODEL, body, stream=False)
        assert not mock.received

    asyncio.run(main())


# --- 2. the mock speaks Anthropic: the official SDK over real HTTP --------------------------


def serve_in_thread(app: Any, lifespan: str = "off") -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    yield from serve_in_thread(create_anthropic_mock_app(AnthropicMockSettings(
        api_key=ANTHROPIC_KEY, models=(MODEL, "claude-sonnet-4-5"))))


@pytest.fixture(scope="module")
def sdk(mock_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock_url, api_key=ANTHROPIC_KEY, max_retries=0,
                             timeout=20) as client:
        yield client


def test_sdk_parses_a_message(sdk: anthropic.Anthropic):
    message = sdk.messages.create(model=MODEL, max_tokens=100, system="be brief",
                                  messages=[{"role": "user", "content": "hello [[mock:tokens=4]]"}],
                                  stop_sequences=["mock"])
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "mock"
    assert message.content[0].type == "text"
    assert message.content[0].text == "This is a "
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3
    capped = sdk.messages.create(model=MODEL, max_tokens=2, messages=[
        {"role": "user", "content": "hello"}])
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 2


def test_sdk_parses_tool_use_and_takes_the_result_back(sdk: anthropic.Anthropic):
    tool = {"name": "get_weather", "description": "Weather.",
            "input_schema": WEATHER["function"]["parameters"]}
    question = {"role": "user", "content": "weather in Paris?"}
    message = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool],
                                  messages=[question])
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    call = message.content[1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "mock"}
    answer = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool], messages=[
        question, {"role": "assistant", "content": [b.model_dump() for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "sunny"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    forced = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool],
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[question])
    assert [b.type for b in forced.content] == ["tool_use"]


def test_sdk_streams(sdk: anthropic.Anthropic):
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=[
            {"role": "user", "content": "stream please [[mock:tokens=6]] "
                                        "[[mock:cache_read=50]]"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "This is a mock reply to:"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6 and final.usage.cache_read_input_tokens == 50
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {
        "q": {"type": "string"}, "n": {"type": "integer", "minimum": 3}}, "required": ["q", "n"]}}
    with sdk.messages.stream(model=MODEL, max_tokens=100, tools=[tool],
                             tool_choice={"type": "any"},
                             messages=[{"role": "user", "content": "look it up"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"q": "mock", "n": 3}


def test_sdk_raises_the_right_errors(sdk: anthropic.Anthropic, mock_url: str):
    def ask(text: str) -> Any:
        return sdk.messages.create(model=MODEL, max_tokens=10,
                                   messages=[{"role": "user", "content": text}])

    with pytest.raises(anthropic.RateLimitError) as limited:
        ask("[[mock:status=429]]")
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError):
        ask("[[mock:status=529]]")
    with pytest.raises(anthropic.BadRequestError) as too_long:
        ask("[[mock:prompt_too_long]]")
    assert "prompt is too long" in too_long.value.message
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-nope", max_tokens=10,
                            messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as extra:
        sdk.messages.create(model=MODEL, max_tokens=10, extra_body={"n": 2},
                            messages=[{"role": "user", "content": "x"}])
    assert "Extra inputs are not permitted" in extra.value.message
    with pytest.raises(anthropic.BadRequestError) as orphan:
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x",
                                          "content": "?"}]}])
    assert "tool_use_id" in orphan.value.message
    with anthropic.Anthropic(base_url=mock_url, api_key="wrong", max_retries=0) as other, \
            pytest.raises(anthropic.AuthenticationError):
        other.messages.create(model=MODEL, max_tokens=10,
                              messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as mid_stream, sdk.messages.stream(
            model=MODEL, max_tokens=100,
            messages=[{"role": "user", "content": "x [[mock:stream_error=2]]"}]) as stream:
        for _ in stream.text_stream:
            pass
    assert "overloaded_error" in str(mid_stream.value)


def test_sdk_lists_models_and_counts_tokens(sdk: anthropic.Anthropic):
    assert [m.id for m in sdk.models.list()] == [MODEL, "claude-sonnet-4-5"]
    assert sdk.models.retrieve(MODEL).id == MODEL
    counted = sdk.messages.count_tokens(model=MODEL, messages=[
        {"role": "user", "content": "one two three"}])
    assert counted.input_tokens == 3 + 3 + 3


# --- 3. end to end: the openai SDK -> keystead -> Anthropic (the mock, over HTTP) --------------


class Gateway:
    def __init__(self, url: str, db: Path, key: str):
        self.url, self.db, self.key = url, db, key

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0,
                             timeout=20)

    def ledger(self, request_id: str) -> Any:
        return wait_for_rows(self.db, "request_id = ?", (request_id,), 1)[0]


@pytest.fixture(scope="module")
def openai_mock_url() -> Iterator[str]:
    """An OpenAI-compatible server standing in for Gemini's OpenAI endpoint."""
    yield from serve_in_thread(create_mock_app(MockSettings(api_key=GEMINI_KEY)))


@pytest.fixture(scope="module")
def gateway(mock_url: str, openai_mock_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("anthropic-gateway")
    loaded = make_loaded(tmp, {"providers": {
        "claude": {"type": "anthropic", "base_url": mock_url, "api_key": "${ANTHROPIC_API_KEY}",
                   "models": [MODEL, "claude-sonnet-4-5"]},
        "gem": {"type": "gemini", "base_url": openai_mock_url + "/v1",
                "api_key": "${GEMINI_API_KEY}", "models": ["gemini-2.5-flash"]},
    }}, env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "GEMINI_API_KEY": GEMINI_KEY})
    for url in serve_in_thread(create_app(loaded), lifespan="on"):
        status, _, created = http("POST", url + "/admin/keys", body={"name": "dev-claude-app"},
                                  headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 201, created
        yield Gateway(url, tmp / "keystead.db", json.loads(created)["key"])


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with gateway.client() as c:
        yield c


def test_e2e_chat(client: openai.OpenAI, gateway: Gateway):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "be brief"},
                               {"role": "user", "content": "hello claude [[mock:tokens=5]]"}],
        max_tokens=50, extra_headers={"x-request-id": "e2e-claude-chat"})
    validate(json.loads(raw.text), "CreateChatCompletionResponse")
    assert raw.headers["x-keystead-provider"] == "claude"
    assert raw.headers["x-upstream-request-id"].startswith("req_")
    assert Decimal(raw.headers["x-keystead-cost-usd"]) > 0  # claude-haiku-4-5 is priced
    completion = raw.parse()
    assert completion.choices[0].message.content == "This is a mock reply"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    row = gateway.ledger("e2e-claude-chat")
    assert row["provider"] == "claude" and row["status"] == 200
    assert row["completion_tokens"] == 5 and row["cost_nanousd"] > 0


def test_e2e_stream_with_usage_is_priced(client: openai.OpenAI, gateway: Gateway):
    stream = client.chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream [[mock:tokens=7]] [[mock:cache_read=1000]]"}],
        extra_headers={"x-request-id": "e2e-claude-stream"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a mock reply to: stream"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 7
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1000
    row = gateway.ledger("e2e-claude-stream")
    assert row["stream"] and not row["usage_estimated"]
    assert row["prompt_tokens"] == usage.prompt_tokens and row["cached_tokens"] == 1000
    assert row["completion_tokens"] == 7 and row["cost_nanousd"] > 0


def test_e2e_stream_without_usage_hides_it_but_records_it(client: openai.OpenAI,
                                                         gateway: Gateway):
    stream = client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "hi [[mock:tokens=3]]"}],
        extra_headers={"x-request-id": "e2e-claude-stream-2"})
    chunks = list(stream)
    assert all(c.usage is None and c.choices for c in chunks)
    row = gateway.ledger("e2e-claude-stream-2")
    assert row["completion_tokens"] == 3 and not row["usage_estimated"]


def test_e2e_tools_round_trip(client: openai.OpenAI):
    question = {"role": "user", "content": "weather in Paris?"}
    first = client.chat.completions.create(model=MODEL, messages=[question], tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I will use get_weather."
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    second = client.chat.completions.create(model=MODEL, tools=[WEATHER], messages=[
        question, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("This is a mock reply to: sunny")

    stream = client.chat.completions.create(model=MODEL, messages=[question], tools=[WEATHER],
                                            tool_choice="required", stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    calls = [t for d in deltas for t in d.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in calls)) == {"city": "mock"}


def test_e2e_errors(client: openai.OpenAI, gateway: Gateway):
    def ask(text: str, **extra: Any) -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], **extra)

    with pytest.raises(openai.RateLimitError) as limited:
        ask("[[mock:status=429]]")
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.BadRequestError) as too_long:
        ask("[[mock:prompt_too_long]]")
    assert too_long.value.code == "context_length_exceeded"
    assert "prompt is too long" in too_long.value.message
    with pytest.raises(openai.InternalServerError) as overloaded:
        ask("[[mock:status=529]]")
    assert overloaded.value.status_code == 503 and overloaded.value.code == "overloaded"
    with pytest.raises(openai.BadRequestError) as refused:
        ask("x", n=2)
    assert refused.value.code == "invalid_value" and refused.value.param == "n"
    with pytest.raises(openai.APIError) as mid_stream:
        for _ in ask("x [[mock:stream_error=2]]", stream=True,
                     extra_headers={"x-request-id": "e2e-claude-broken"}):
            pass
    assert "Overloaded" in str(mid_stream.value)
    row = gateway.ledger("e2e-claude-broken")  # what was spent before the error is recorded
    assert row["prompt_tokens"] > 0 and not row["usage_estimated"]
    with pytest.raises(openai.NotFoundError) as embeddings:  # declared: chat only
        client.embeddings.create(model=MODEL, input="x")
    assert embeddings.value.code == "model_not_found"


def test_e2e_gemini_through_its_openai_endpoint_is_priced(client: openai.OpenAI,
                                                          gateway: Gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi [[mock:tokens=4]]"}],
        extra_headers={"x-request-id": "e2e-gemini-chat"})
    assert raw.headers["x-keystead-provider"] == "gem"
    assert Decimal(raw.headers["x-keystead-cost-usd"]) > 0  # Google's table knows the model
    assert raw.parse().usage.completion_tokens == 4
    row = gateway.ledger("e2e-gemini-chat")
    assert row["provider"] == "gem" and row["cost_nanousd"] > 0
