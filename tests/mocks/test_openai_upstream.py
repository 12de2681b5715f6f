"""The mock upstream speaks OpenAI's wire format: every reply is checked against the reference
OpenAPI schemas, driven straight through ASGI (and once over a real socket with the openai SDK).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import Any

import jsonschema
import openai
import pytest
from mock_client import Reply, assert_error, call, served

from keystead.mocks.openai_upstream import (
    MockDisconnect,
    MockSettings,
    MockUpstream,
    create_mock_app,
)
from openapi_schemas import validate

# --- a tiny ASGI client, and a mock served on a socket: mock_client.py -----------------------


def chat(app: MockUpstream, text: str | list[Any] = "Say hello please", **extra: Any) -> Reply:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
    return call(app, "POST", "/v1/chat/completions", payload)


@pytest.fixture
def app() -> MockUpstream:
    return create_mock_app(MockSettings(seed=1))


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "detailed": {"type": "boolean"},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "tags": {"type": "array"}},
                    "required": ["lat", "tags"],
                },
                "optional": {"type": "string"},
            },
            "required": ["city", "unit", "days", "detailed", "where"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}

# --- chat completions -------------------------------------------------------------------------


def test_chat_completion_matches_schema_and_is_deterministic(app: MockUpstream) -> None:
    reply = chat(app)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    validate(body, "CreateChatCompletionResponse")
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o-mini"
    assert body["service_tier"] == "default"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["refusal"] is None
    assert message["annotations"] == []
    assert message["content"].startswith("This is a mock reply to: Say hello please ")
    assert len(message["content"].split()) == 16
    assert body["choices"][0]["finish_reason"] == "stop"
    # "Say hello please": 3 tokens + 3 for the message + 3 for the reply primer.
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        9,
        16,
        25,
    )
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert chat(app).json()["choices"][0]["message"]["content"] == message["content"]


def test_received_requests_are_recorded(app: MockUpstream) -> None:
    call(app, "GET", "/v1/models?limit=2", headers={"X-Trace": "abc"})
    chat(app)
    first, second = app.received
    assert (first.method, first.path, first.query) == ("GET", "/v1/models", "limit=2")
    assert first.headers["x-trace"] == "abc"
    assert second.json()["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_with_finish_reason_length(app: MockUpstream, limit: str) -> None:
    body = chat(app, **{limit: 5}).json()
    validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["message"]["content"] == "This is a mock reply"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_n_choices(app: MockUpstream) -> None:
    body = chat(app, n=2).json()
    validate(body, "CreateChatCompletionResponse")
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 32


def test_message_content_as_parts(app: MockUpstream) -> None:
    parts = [{"type": "text", "text": "Part one."}, {"type": "text", "text": "[[mock:tokens=7]]"}]
    body = chat(app, parts).json()
    assert body["choices"][0]["message"]["content"] == "This is a mock reply to: Part"
    # "Part one." is 3 tokens, the directive 9 ("[", "[", "mock", ":", ...).
    assert body["usage"]["prompt_tokens"] == 3 + 9 + 3 + 3


def test_stream_without_usage(app: MockUpstream) -> None:
    reply = chat(app, stream=True)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.events()[-1] == (None, "[DONE]")
    chunks = reply.chunks()
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert "usage" not in chunk
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert len(chunks) == 1 + 16 + 1
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == chat(app).json()["choices"][0]["message"]["content"]
    assert len({c["id"] for c in chunks}) == 1


def test_stream_with_include_usage(app: MockUpstream) -> None:
    chunks = chat(app, "Hi", stream=True, stream_options={"include_usage": True}, n=2).chunks()
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    *content, last = chunks
    assert all(chunk["usage"] is None for chunk in content)
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 32
    assert last["usage"]["prompt_tokens"] == 7
    assert {c["choices"][0]["index"] for c in content} == {0, 1}


def test_tool_call(app: MockUpstream) -> None:
    body = chat(
        app,
        tools=[TIME_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ).json()
    validate(body, "CreateChatCompletionResponse")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call_,) = choice["message"]["tool_calls"]
    assert call_["id"].startswith("call_")
    assert call_["function"]["name"] == "get_weather"
    arguments = json.loads(call_["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    assert arguments["unit"] == "celsius"
    assert body["usage"]["completion_tokens"] > 0


def test_tool_call_defaults_to_first_tool_and_none_means_text(app: MockUpstream) -> None:
    first = chat(app, tools=[TIME_TOOL, WEATHER_TOOL]).json()["choices"][0]["message"]
    assert first["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}
    text = chat(app, tools=[TIME_TOOL], tool_choice="none").json()["choices"][0]
    assert text["finish_reason"] == "stop"
    assert "tool_calls" not in text["message"]


def test_tool_call_streamed(app: MockUpstream) -> None:
    chunks = chat(app, tools=[WEATHER_TOOL], stream=True).chunks()
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["content"] is None
    header = first["tool_calls"][0]
    assert header["index"] == 0
    assert header["id"].startswith("call_")
    assert header["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]
    assert len(fragments) > 1
    assert all(set(f) == {"index", "function"} for f in fragments)
    arguments = json.loads("".join(f["function"]["arguments"] for f in fragments))
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_json_object_mode(app: MockUpstream) -> None:
    body = chat(app, response_format={"type": "json_object"}).json()
    validate(body, "CreateChatCompletionResponse")
    content = json.loads(body["choices"][0]["message"]["content"])
    assert content["reply"].startswith("This is a mock reply")


def test_json_schema_mode(app: MockUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 6},
            "score": {"type": "number", "exclusiveMinimum": 0},
            "kind": {"anyOf": [{"$ref": "#/$defs/kind"}, {"type": "null"}]},
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "flag": {"type": ["boolean", "null"]},
        },
        "required": ["name", "score", "kind", "items", "flag"],
        "additionalProperties": False,
        "$defs": {"kind": {"type": "string", "enum": ["a", "b"]}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    for reply in (chat(app, response_format=response_format),):
        body = reply.json()
        validate(body, "CreateChatCompletionResponse")
        jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), schema)
    chunks = chat(app, response_format=response_format, stream=True).chunks()
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    jsonschema.validate(json.loads(streamed), schema)


# --- directives -------------------------------------------------------------------------------


def test_directive_status_429(app: MockUpstream) -> None:
    reply = chat(app, "hello [[mock:status=429]]")
    error = assert_error(reply, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    assert reply.headers["retry-after"] == "1"


def test_directive_status_500_and_503(app: MockUpstream) -> None:
    assert assert_error(chat(app, "[[mock:status=500]]"), 500)["type"] == "server_error"
    assert "retry-after" not in chat(app, "[[mock:status=503]]").headers
    assert_error(chat(app, "[[mock:status=503]]", stream=True), 503)


def test_directive_only_in_last_user_message(app: MockUpstream) -> None:
    messages = [
        {"role": "user", "content": "[[mock:status=500]]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ]
    reply = call(app, "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": messages})
    assert reply.status == 200


def test_directive_latency(app: MockUpstream) -> None:
    started = time.perf_counter()
    assert chat(app, "slow [[mock:latency=200]]").status == 200
    assert time.perf_counter() - started >= 0.2


def test_directive_tokens(app: MockUpstream) -> None:
    body = chat(app, "[[mock:tokens=40]] count", max_tokens=100).json()
    assert body["usage"]["completion_tokens"] == 40
    assert len(body["choices"][0]["message"]["content"].split()) == 40
    # The directive text is not echoed.
    assert body["choices"][0]["message"]["content"].startswith("This is a mock reply to: count ")
    capped = chat(app, "[[mock:tokens=40]]", max_tokens=10).json()
    assert capped["usage"]["completion_tokens"] == 10
    assert capped["choices"][0]["finish_reason"] == "length"
    chunks = chat(app, "[[mock:tokens=3]]", stream=True).chunks()
    assert len(chunks) == 1 + 3 + 1


def test_directive_disconnect_after(app: MockUpstream) -> None:
    reply = chat(app, "[[mock:disconnect_after=2]]", stream=True)
    assert isinstance(reply.raised, MockDisconnect)
    assert all(data != "[DONE]" for _, data in reply.events())
    chunks = reply.chunks()
    assert len(chunks) == 1 + 2
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    # K = all the content: it still drops before the finishing chunk.
    late = chat(app, "[[mock:disconnect_after=4]] [[mock:tokens=4]]", stream=True)
    assert isinstance(late.raised, MockDisconnect)
    assert len(late.chunks()) == 1 + 4
    # K beyond the content is never reached.
    assert chat(app, "[[mock:disconnect_after=5]] [[mock:tokens=4]]", stream=True).raised is None


def test_directive_no_usage(app: MockUpstream) -> None:
    body = chat(app, "[[mock:no_usage]]").json()
    validate(body, "CreateChatCompletionResponse")
    assert "usage" not in body
    chunks = chat(
        app, "[[mock:no_usage]]", stream=True, stream_options={"include_usage": True}
    ).chunks()
    assert all(chunk["choices"] for chunk in chunks)
    assert all(chunk.get("usage") is None for chunk in chunks)


# --- auth, failures, routing ------------------------------------------------------------------


def test_api_key_required() -> None:
    app = create_mock_app(MockSettings(api_key="sk-mock"))
    assert_error(chat(app), 401, "invalid_api_key")
    wrong = {"Authorization": "Bearer sk-wrong"}
    assert_error(call(app, "GET", "/v1/models", headers=wrong), 401, "invalid_api_key")
    assert call(app, "GET", "/v1/models", headers={"Authorization": "Bearer sk-mock"}).status == 200
    assert call(app, "GET", "/v1/models", headers={"api-key": "sk-mock"}).status == 200


def test_failure_rate() -> None:
    app = create_mock_app(MockSettings(failure_rate=1, failure_status=503))
    error = assert_error(chat(app), 503)
    assert error["type"] == "server_error"
    assert_error(call(app, "POST", "/v1/embeddings", {"model": "m", "input": "x"}), 503)

    def outcomes(seed: int) -> list[int]:
        flaky = create_mock_app(MockSettings(failure_rate=0.5, seed=seed))
        return [chat(flaky, tokens).status for tokens in ["[[mock:tokens=1]]"] * 12]

    assert outcomes(7) == outcomes(7)
    assert set(outcomes(7)) == {200, 500}


def test_errors_for_bad_requests(app: MockUpstream) -> None:
    assert_error(call(app, "POST", "/v1/chat/completions", raw=b"{nope"), 400, "invalid_json")
    missing = call(app, "POST", "/v1/chat/completions", raw=b'{"messages": []}')
    assert assert_error(missing, 400)["param"] == "model"
    assert_error(call(app, "GET", "/v1/nothing"), 404, "unknown_url")
    assert_error(call(app, "GET", "/v1/chat/completions"), 404)


def test_paths_without_v1_prefix(app: MockUpstream) -> None:
    payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    assert call(app, "POST", "/chat/completions", payload).status == 200
    assert call(app, "GET", "/models").json()["object"] == "list"


def test_azure_deployment_paths(app: MockUpstream) -> None:
    path = "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
    reply = call(app, "POST", path, {"messages": [{"role": "user", "content": "hi"}]})
    validate(reply.json(), "CreateChatCompletionResponse")
    assert reply.json()["model"] == "my-gpt"
    assert app.received[-1].query == "api-version=2024-10-21"
    embed = call(app, "POST", "/openai/deployments/my-embed/embeddings", {"input": "hi"})
    validate(embed.json(), "CreateEmbeddingResponse")
    assert embed.json()["model"] == "my-embed"


# --- embeddings -------------------------------------------------------------------------------


def embed(app: MockUpstream, **extra: Any) -> Reply:
    return call(app, "POST", "/v1/embeddings", {"model": "text-embedding-3-small", **extra})


def test_embeddings_float(app: MockUpstream) -> None:
    body = embed(app, input=["one", "two words"], encoding_format="float").json()
    validate(body, "CreateEmbeddingResponse")
    assert body["object"] == "list"
    assert body["model"] == "text-embedding-3-small"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    first, second = (item["embedding"] for item in body["data"])
    assert len(first) == 1536
    assert math.isclose(math.fsum(x * x for x in first), 1.0)
    assert first != second
    assert embed(app, input="one").json()["data"][0]["embedding"] == first


def test_embeddings_base64(app: MockUpstream) -> None:
    body = embed(app, input="hello", encoding_format="base64", dimensions=256).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    vector = struct.unpack("<256f", raw)
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)
    floats = embed(app, input="hello", dimensions=256).json()["data"][0]["embedding"]
    pairs = zip(vector, floats, strict=True)
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in pairs)


def test_embeddings_token_inputs(app: MockUpstream) -> None:
    single = embed(app, input=[1, 2, 3]).json()
    validate(single, "CreateEmbeddingResponse")
    assert len(single["data"]) == 1
    assert single["usage"]["prompt_tokens"] == 3
    assert len(embed(app, input=[[1, 2], [3]]).json()["data"]) == 2
    assert_error(call(app, "POST", "/v1/embeddings", raw=b'{"model": "m", "input": [1, "a"]}'), 400)


# --- models -----------------------------------------------------------------------------------


def test_models(app: MockUpstream) -> None:
    listing = call(app, "GET", "/v1/models").json()
    validate(listing, "ListModelsResponse")
    assert [m["id"] for m in listing["data"]] == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    one = call(app, "GET", "/v1/models/gpt-4o").json()
    validate(one, "Model")
    assert one["owned_by"] == "keystead-mock"
    assert_error(call(app, "GET", "/v1/models/gpt-5"), 404, "model_not_found")


# --- responses API ----------------------------------------------------------------------------


def respond(app: MockUpstream, **extra: Any) -> Reply:
    return call(app, "POST", "/v1/responses", {"model": "gpt-4o-mini", **extra})


def test_responses_non_stream(app: MockUpstream) -> None:
    body = respond(app, input="Tell me a story", instructions="Be brief.").json()
    validate(body, "Response")
    assert body["id"].startswith("resp_")
    assert body["status"] == "completed"
    (item,) = body["output"]
    assert item["id"].startswith("msg_")
    text = item["content"][0]["text"]
    assert text.startswith("This is a mock reply to: Tell me a story")
    usage = body["usage"]
    assert usage["output_tokens"] == 16
    assert usage["input_tokens"] == (4 + 3) + (3 + 3) + 3
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_responses_message_list_and_max_output_tokens(app: MockUpstream) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    body = respond(app, input=messages, max_output_tokens=16).json()
    validate(body, "Response")
    assert body["output"][0]["content"][0]["text"].startswith("This is a mock reply to: second")
    short = respond(app, input="[[mock:tokens=30]]", max_output_tokens=16).json()
    validate(short, "Response")
    assert short["status"] == "incomplete"
    assert short["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_stream(app: MockUpstream) -> None:
    reply = respond(app, input="Stream it [[mock:tokens=5]]", stream=True)
    events = reply.events()
    for name, data in events:
        event = json.loads(data)
        assert event["type"] == name
        validate(event, "ResponseStreamEvent")
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names.count("response.output_text.delta") == 5
    assert names[-1] == "response.completed"
    payloads = [json.loads(data) for _, data in events]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    deltas = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
    final = payloads[-1]["response"]
    validate(final, "Response")
    assert final["output"][0]["content"][0]["text"] == deltas == "This is a mock reply"
    assert final["usage"]["output_tokens"] == 5


def test_responses_stream_disconnect(app: MockUpstream) -> None:
    reply = respond(app, input="[[mock:disconnect_after=1]]", stream=True)
    assert isinstance(reply.raised, MockDisconnect)
    assert [n for n, _ in reply.events()].count("response.output_text.delta") == 1


def test_responses_can_be_disabled() -> None:
    app = create_mock_app(MockSettings(supports_responses=False))
    assert_error(respond(app, input="hi"), 404)


# --- over a real socket, with the official SDK ------------------------------------------------


def test_official_sdk_against_served_mock() -> None:
    with (
        served(MockSettings(api_key="sk-mock")) as port,
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-mock") as client,
    ):
        completion = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello SDK"}], max_tokens=8
        )
        assert completion.choices[0].message.content == "This is a mock reply to: Hello SDK"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 8

        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hello SDK"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("This is a mock reply to: Hello SDK")
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 16

        embedding = client.embeddings.create(model="text-embedding-3-small", input="hi")
        assert len(embedding.data[0].embedding) == 1536  # decoded from base64 by the SDK
        assert sent_base64(client)

        assert [m.id for m in client.models.list()] == list(MockSettings().models)

        response = client.responses.create(model="gpt-4o", input="Hello SDK")
        assert response.output_text.startswith("This is a mock reply to: Hello SDK")
        with client.responses.stream(model="gpt-4o", input="[[mock:tokens=4]]") as events:
            assert events.get_final_response().output_text == "This is a mock"

        dropped = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "[[mock:disconnect_after=2]]"}],
            stream=True,
        )
        with pytest.raises(openai.APIConnectionError):
            list(dropped)

        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope", max_retries=0)
        with bad, pytest.raises(openai.AuthenticationError):
            bad.models.list()


def sent_base64(client: openai.OpenAI) -> bool:
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
    return isinstance(json.loads(raw.text)["data"][0]["embedding"], str)
