"""The official OpenAI SDK against a running gateway: what application teams will actually do.

Raw JSON is validated against OpenAI's published OpenAPI schemas, so a reply the SDK happens to
tolerate but the API would never send still fails here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Iterator
from decimal import Decimal
from http.client import HTTPConnection
from typing import Any

import jsonschema
import openai
import pytest

from e2e.harness import Gateway, http
from openapi_schemas import validate

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "hello gateway"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with _client(gateway, gateway.keys["app"]) as c:
        yield c


@pytest.fixture(scope="module")
def restricted(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with _client(gateway, gateway.keys["restricted"]) as c:
        yield c


def assert_gateway_headers(headers: Any, request_id: str | None = None) -> Decimal:
    """x-request-id is set (echoed when we chose it); the cost header is a decimal; returns it."""
    if request_id is not None:
        assert headers["x-request-id"] == request_id
    else:
        assert headers["x-request-id"].startswith("req_")
    cost = Decimal(headers["x-keystead-cost-usd"])
    assert cost >= 0
    return cost


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The OpenAI-shaped error body, validated against the reference schema."""
    body = exc.response.json()
    validate(body, "ErrorResponse")
    assert exc.response.headers["x-request-id"]
    return dict(body["error"])


# --- chat completions ---------------------------------------------------------------------------


def test_sync_chat_matches_the_reference_schema(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("hello gateway [[mock:tokens=8]]"),
        extra_headers={"x-request-id": "e2e-sync-chat-1"})
    assert raw.status_code == 200
    validate(json.loads(raw.text), "CreateChatCompletionResponse")
    cost = assert_gateway_headers(raw.headers, "e2e-sync-chat-1")
    assert cost > 0  # gpt-4o-mini is in the price book
    assert raw.headers["x-keystead-provider"] == "mock"
    completion = raw.parse()
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "This is a mock reply to: hello gateway"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)


def test_plain_create_returns_typed_objects(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith("This is a mock reply to: hello")
    assert completion.usage is not None and completion.usage.completion_tokens == 16


def test_async_chat(gateway: Gateway) -> None:
    async def main() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=gateway.keys["app"],
                                      max_retries=0, timeout=20) as aclient:
            return await asyncio.gather(*(
                aclient.chat.completions.create(
                    model="gpt-4o-mini", messages=ask(f"async {i} [[mock:tokens={i + 2}]]"))
                for i in range(4)))

    completions = asyncio.run(main())
    assert [c.usage.completion_tokens for c in completions] == [2, 3, 4, 5]
    assert len({c.id for c in completions}) == 4
    for i, completion in enumerate(completions):
        words = f"This is a mock reply to: async {i}".split()[: i + 2]
        assert completion.choices[0].message.content == " ".join(words)


def test_stream_without_include_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    # The gateway asks the provider for usage anyway (to bill it) and must drop that chunk.
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("stream me [[mock:tokens=8]]"), stream=True)
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "a choices=[] usage chunk reached the client"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "This is a mock reply to: stream me"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_with_include_usage_has_exactly_one_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("count [[mock:tokens=7]]"), stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1
    assert with_usage[0] is chunks[-1]
    assert with_usage[0].choices == []
    assert with_usage[0].usage.completion_tokens == 7
    assert with_usage[0].usage.prompt_tokens > 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_chunks_match_the_reference_schema(client: openai.OpenAI,
                                                  include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=ask("raw stream [[mock:tokens=4]]"), stream=True,
            extra_headers={"x-request-id": f"e2e-raw-stream-{include_usage}"},
            **options) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"] == f"e2e-raw-stream-{include_usage}"
        lines = list(response.iter_lines())
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    frames = [json.loads(d) for d in data[:-1]]
    for frame in frames:
        validate(frame, "CreateChatCompletionStreamResponse")
    usage_frames = [f for f in frames if f.get("usage")]
    assert len(usage_frames) == (1 if include_usage else 0)
    # The cost of a stream travels as an SSE comment (headers left before usage was known).
    comments = [line for line in lines if line.startswith(": x-keystead-cost-usd ")]
    assert len(comments) == 1
    assert Decimal(comments[0].rsplit(" ", 1)[1]) > 0


def test_tool_calls_non_stream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("weather in Paris?"), tools=[WEATHER_TOOL])
    validate(json.loads(raw.text), "CreateChatCompletionResponse")
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments),
                        WEATHER_TOOL["function"]["parameters"])


def test_tool_calls_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("weather in Oslo?"), tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    name, arguments, finish, call_ids = "", "", None, set()
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                if call.id:
                    call_ids.add(call.id)
                if call.function and call.function.name:
                    name += call.function.name
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
    assert finish == "tool_calls"
    assert name == "get_weather"
    assert len(call_ids) == 1
    jsonschema.validate(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["person", "robot"]},
        },
        "required": ["name", "age", "tags", "kind"],
        "additionalProperties": False,
    }
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("describe someone"),
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": schema, "strict": True}})
    validate(json.loads(raw.text), "CreateChatCompletionResponse")
    content = raw.parse().choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), schema)


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_default_base64_and_float_agree(client: openai.OpenAI) -> None:
    texts = ["first text", "second text"]
    # The SDK asks for base64 by default and decodes it.
    default = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert [d.index for d in default.data] == [0, 1]
    assert all(len(d.embedding) == 1536 for d in default.data)
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=texts, encoding_format="float")
    document = json.loads(raw.text)
    validate(document, "CreateEmbeddingResponse")
    assert assert_gateway_headers(raw.headers) > 0
    for decoded, floats in zip(default.data, document["data"], strict=True):
        assert decoded.embedding == pytest.approx(floats["embedding"], abs=1e-6)
    assert document["usage"]["prompt_tokens"] == default.usage.prompt_tokens > 0


def test_embeddings_base64_on_the_wire(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="wire", encoding_format="base64")
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    assert isinstance(encoded, str)
    floats = struct.unpack(f"<{1536}f", base64.b64decode(encoded))
    assert len(floats) == 1536


def test_embeddings_dimensions(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input="short",
                                      dimensions=256, encoding_format="float")
    assert len(result.data[0].embedding) == 256


# --- models -------------------------------------------------------------------------------------


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    document = json.loads(raw.text)
    validate(document, "ListModelsResponse")
    assert_gateway_headers(raw.headers)
    assert {m["id"] for m in document["data"]} == {"gpt-4o-mini", "gpt-4o",
                                                   "text-embedding-3-small"}
    assert {m.id for m in client.models.list()} == {m["id"] for m in document["data"]}
    one = client.models.with_raw_response.retrieve("gpt-4o")
    validate(json.loads(one.text), "Model")
    assert one.parse().id == "gpt-4o"


def test_models_list_for_a_restricted_key(restricted: openai.OpenAI) -> None:
    assert [m.id for m in restricted.models.list()] == ["gpt-4o-mini"]
    assert restricted.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as caught:
        restricted.models.retrieve("gpt-4o")
    assert error_of(caught.value)["code"] == "model_not_found"


# --- responses API ------------------------------------------------------------------------------


def test_responses_non_stream(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="respond please [[mock:tokens=8]]",
        instructions="be brief", extra_headers={"x-request-id": "e2e-responses-1"})
    validate(json.loads(raw.text), "Response")
    assert assert_gateway_headers(raw.headers, "e2e-responses-1") > 0
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "This is a mock reply to: respond please"
    assert response.usage is not None and response.usage.output_tokens == 8


def test_responses_stream(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="gpt-4o-mini", input="stream a response", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas == final.output_text
    assert final.output_text.startswith("This is a mock reply to: stream a response")
    validate(final.model_dump(mode="json", exclude_unset=True), "Response")


def test_responses_stream_raw_events(client: openai.OpenAI) -> None:
    with client.responses.with_streaming_response.create(
            model="gpt-4o-mini", input="raw events [[mock:tokens=3]]", stream=True) as response:
        lines = list(response.iter_lines())
    events = [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]
    names = [line[len("event: "):] for line in lines if line.startswith("event: ")]
    assert names == [e["type"] for e in events]
    for event in events:
        validate(event, "ResponseStreamEvent")
    validate(events[-1]["response"], "Response")


# --- errors as the SDK raises them --------------------------------------------------------------


def test_bad_key_is_authentication_error(gateway: Gateway) -> None:
    with _client(gateway, "ksk_this-is-not-a-key") as bad, \
            pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = error_of(caught.value)
    assert caught.value.status_code == 401
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")


def test_well_formed_unknown_key_is_authentication_error(gateway: Gateway) -> None:
    from keystead.keys.format import generate_key

    unknown = generate_key()
    with _client(gateway, unknown.text) as bad, \
            pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    error = error_of(caught.value)
    assert error["code"] == "invalid_api_key"
    assert unknown.key_id in error["message"]
    assert unknown.text not in caught.value.response.text


def test_missing_key_is_authentication_error(gateway: Gateway) -> None:
    status, headers, body = http("POST", gateway.v1 + "/chat/completions",
                                 body={"model": "gpt-4o-mini", "messages": HELLO})
    assert status == 401
    assert json.loads(body)["error"]["code"] == "missing_api_key"
    assert headers["www-authenticate"].startswith("Bearer")
    # The SDK refuses an empty api_key itself; without the header it gets the same answer.
    with _client(gateway, "unused") as sdk, pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                    extra_headers={"Authorization": openai.Omit()})
    assert error_of(caught.value)["code"] == "missing_api_key"


def test_provider_key_is_refused_with_a_hint(gateway: Gateway) -> None:
    provider_key = "sk-proj-" + "A1b2C3d4" * 6
    with _client(gateway, provider_key) as bad, \
            pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = error_of(caught.value)
    assert "provider key" in error["message"]
    assert provider_key not in caught.value.response.text


def test_model_not_allowed_is_permission_denied(restricted: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        restricted.chat.completions.create(model="gpt-4o", messages=HELLO)
    error = error_of(caught.value)
    assert caught.value.status_code == 403
    assert (error["type"], error["code"], error["param"]) == (
        "permission_error", "model_not_allowed", "model")
    assert "gpt-4o-mini" in error["message"]  # tells what the key may use


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9-imaginary", messages=HELLO)
    error = error_of(caught.value)
    assert (error["code"], error["param"]) == ("model_not_found", "model")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_over_the_cap_is_bad_request(restricted: openai.OpenAI, field: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        restricted.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                           **{field: 500})  # type: ignore[arg-type]
    error = error_of(caught.value)
    assert (error["code"], error["param"]) == ("max_tokens_exceeded", field)
    assert "50" in error["message"]


def test_cap_is_applied_when_the_client_sets_none(restricted: openai.OpenAI) -> None:
    completion = restricted.chat.completions.create(
        model="gpt-4o-mini", messages=ask("long please [[mock:tokens=200]]"))
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 50
    assert completion.choices[0].finish_reason == "length"


def test_bad_parameter_type_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                       max_tokens="plenty")  # type: ignore[arg-type]
    error = error_of(caught.value)
    assert (error["type"], error["param"]) == ("invalid_request_error", "max_tokens")


def test_upstream_429_passes_through_as_rate_limit_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=ask("slow down [[mock:status=429]]"))
    error = error_of(caught.value)
    assert caught.value.status_code == 429
    assert error["code"] == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_is_internal_server_error(client: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=ask(f"break [[mock:status={status}]]"))
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == status
    error = error_of(caught.value)
    assert error["type"] == "server_error"
    assert Decimal(caught.value.response.headers["x-keystead-cost-usd"]) == 0


# --- raw HTTP -----------------------------------------------------------------------------------


def _raw(gateway: Gateway, method: str, path: str, body: bytes | None,
         headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_bad_json_is_400_invalid_json(gateway: Gateway) -> None:
    status, headers, body = _raw(
        gateway, "POST", "/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [',
        {"authorization": f"Bearer {gateway.keys['app']}", "content-type": "application/json",
         "x-request-id": "e2e-bad-json-1"})
    assert status == 400
    document = json.loads(body)
    validate(document, "ErrorResponse")
    assert document["error"]["code"] == "invalid_json"
    assert headers["x-request-id"] == "e2e-bad-json-1"
    assert headers["content-type"] == "application/json"


def test_request_id_is_echoed_or_generated(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {gateway.keys['app']}", "content-type": "application/json"}
    body = json.dumps({"model": "gpt-4o-mini", "messages": HELLO}).encode()
    status, headers, _ = _raw(gateway, "POST", "/v1/chat/completions", body,
                              {**auth, "x-request-id": "trace-abc.123:x"})
    assert status == 200
    assert headers["x-request-id"] == "trace-abc.123:x"
    # An unusable id (spaces, too long) is replaced, not echoed into logs and headers.
    for bad in ("has spaces in it", "x" * 200):
        status, headers, _ = _raw(gateway, "POST", "/v1/chat/completions", body,
                                  {**auth, "x-request-id": bad})
        assert status == 200
        assert headers["x-request-id"].startswith("req_")
    status, headers, _ = _raw(gateway, "POST", "/v1/chat/completions", body, auth)
    assert headers["x-request-id"].startswith("req_")


def test_unknown_route_and_wrong_method(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {gateway.keys['app']}"}
    status, _, body = _raw(gateway, "POST", "/v1/completions", b"{}", auth)
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    status, _, body = _raw(gateway, "GET", "/v1/chat/completions", None, auth)
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"


def test_a_short_lived_token_minted_by_a_backend_works_in_the_sdk(gateway: Gateway) -> None:
    """The browser pattern: the backend holds the key and mints a token over HTTP; the client
    (here the official SDK, as a browser bundle of it would) uses only the token."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{gateway.v1}/keystead/tokens", method="POST",
        data=json.dumps({"ttl": "5m", "models": ["gpt-4o-mini"], "user": "u-1"}).encode(),
        headers={"authorization": f"Bearer {gateway.keys['app']}",
                 "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        minted = json.loads(reply.read())
    with _client(gateway, minted["token"]) as c:
        completion = c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi from a browser"}])
        assert completion.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="gpt-4o",
                                      messages=[{"role": "user", "content": "hi"}])
