"""The mock's Responses API does what agent frameworks need, as its chat completions do: it calls
an offered function (required, named, or auto until the function's output comes back), follows
`text.format` json_schema, streams both with OpenAI's events, and counts usage. Every answer and
event is checked against OpenAI's published schemas; the official SDK reads them (parse too)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pydantic
import pytest
from mock_client import Reply, call, served

from keystead.mocks.content import count_tokens
from keystead.mocks.openai_upstream import MockSettings, MockUpstream, create_mock_app
from openapi_schemas import validate

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}},
        "strict": False}
ANSWER = {
    "type": "json_schema",
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 3},
                       "score": {"type": "number", "minimum": 1},
                       "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                       "kind": {"$ref": "#/$defs/kind"}},
        "required": ["title", "score", "tags", "kind"],
        "additionalProperties": False,
        "$defs": {"kind": {"type": "string", "enum": ["news", "blog"]}},
    },
}


@pytest.fixture
def app() -> MockUpstream:
    return create_mock_app(MockSettings(seed=1))


def respond(app: MockUpstream, **extra: Any) -> Reply:
    return call(app, "POST", "/v1/responses", {"model": "gpt-4o-mini", **extra})


def answered(app: MockUpstream, **extra: Any) -> dict[str, Any]:
    reply = respond(app, **extra)
    assert reply.status == 200, reply.body
    body = reply.json()
    validate(body, "Response")
    return body


def only_item(body: dict[str, Any]) -> dict[str, Any]:
    (item,) = body["output"]
    return item


def streamed(app: MockUpstream, **extra: Any) -> list[dict[str, Any]]:
    """The events of a streamed answer, each checked: its schema, its `event:` name, its place."""
    events = respond(app, stream=True, **extra).events()
    payloads = []
    for name, data in events:
        event = json.loads(data)
        assert event["type"] == name
        validate(event, "ResponseStreamEvent")
        payloads.append(event)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    return payloads


# --- function calls ---------------------------------------------------------------------------


def test_a_required_tool_is_called_with_arguments_its_schema_accepts(app: MockUpstream) -> None:
    body = answered(app, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    call_item = only_item(body)
    assert call_item["type"] == "function_call" and call_item["status"] == "completed"
    assert call_item["id"].startswith("fc_") and call_item["call_id"].startswith("call_")
    assert call_item["name"] == "get_weather"
    arguments = json.loads(call_item["arguments"])
    jsonschema.validate(arguments, WEATHER["parameters"])
    assert body["status"] == "completed"
    usage = body["usage"]
    assert usage["output_tokens"] == count_tokens("get_weather") + count_tokens(
        call_item["arguments"])
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # The tools are echoed as OpenAI echoes them (strict and description filled in).
    assert [t["name"] for t in body["tools"]] == ["get_weather"]


def test_a_named_function_is_the_one_called(app: MockUpstream) -> None:
    body = answered(app, input="What time is it?", tools=[WEATHER, TIME],
                    tool_choice={"type": "function", "name": "get_time"})
    assert only_item(body)["name"] == "get_time"
    assert json.loads(only_item(body)["arguments"]) == {}
    allowed = answered(app, input="Time?", tools=[WEATHER, TIME], tool_choice={
        "type": "allowed_tools", "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}]})
    assert only_item(allowed)["name"] == "get_time"


def test_auto_calls_a_tool_until_its_output_comes_back_then_answers(app: MockUpstream) -> None:
    first = only_item(answered(app, input="Weather in Paris?", tools=[WEATHER]))
    assert first["type"] == "function_call"
    turn = [{"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": first["call_id"], "name": first["name"],
             "arguments": first["arguments"]},
            {"type": "function_call_output", "call_id": first["call_id"], "output": "22 C"}]
    final = only_item(answered(app, input=turn, tools=[WEATHER], tool_choice="auto"))
    assert final["type"] == "message"
    assert final["content"][0]["text"].startswith("This is a mock reply to: Weather in Paris?")
    # "required" insists, as a model told to does; "none" never calls.
    assert only_item(answered(app, input=turn, tools=[WEATHER],
                              tool_choice="required"))["type"] == "function_call"
    assert only_item(answered(app, input="Hi", tools=[WEATHER],
                              tool_choice="none"))["type"] == "message"


def test_hosted_tools_are_not_the_mocks_to_call(app: MockUpstream) -> None:
    body = answered(app, input="Search the web", tools=[{"type": "web_search"}])
    assert only_item(body)["type"] == "message"


def test_chat_completions_auto_answers_after_the_tool_result_too(app: MockUpstream) -> None:
    tool = {"type": "function", "function": {"name": WEATHER["name"],
                                             "parameters": WEATHER["parameters"]}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = call(app, "POST", "/v1/chat/completions",
                 {"model": "gpt-4o-mini", "messages": messages, "tools": [tool]}).json()
    (tool_call,) = first["choices"][0]["message"]["tool_calls"]
    messages += [{"role": "assistant", "content": None, "tool_calls": [tool_call]},
                 {"role": "tool", "tool_call_id": tool_call["id"], "content": "22 C"}]
    final = call(app, "POST", "/v1/chat/completions",
                 {"model": "gpt-4o-mini", "messages": messages, "tools": [tool]}).json()
    validate(final, "CreateChatCompletionResponse")
    choice = final["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    forced = call(app, "POST", "/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": messages, "tools": [tool],
        "tool_choice": "required"}).json()
    assert forced["choices"][0]["finish_reason"] == "tool_calls"


def test_a_function_call_streams_its_arguments(app: MockUpstream) -> None:
    events = streamed(app, input="Weather?", tools=[WEATHER], tool_choice="required")
    names = [e["type"] for e in events]
    deltas = names.count("response.function_call_arguments.delta")
    assert names == ["response.created", "response.in_progress", "response.output_item.added",
                     *["response.function_call_arguments.delta"] * deltas,
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    assert deltas > 1
    added = events[2]["item"]
    assert (added["type"], added["status"], added["arguments"]) == (
        "function_call", "in_progress", "")
    arguments = "".join(e["delta"] for e in events[3:3 + deltas])
    done = events[3 + deltas]
    assert done["arguments"] == arguments and done["name"] == "get_weather"
    assert {e["item_id"] for e in events[3:4 + deltas]} == {added["id"]}
    final = events[-1]["response"]
    validate(final, "Response")
    assert final["output"] == [events[-2]["item"]]
    assert final["output"][0]["arguments"] == arguments
    jsonschema.validate(json.loads(arguments), WEATHER["parameters"])
    assert final["usage"]["output_tokens"] > 0


# --- structured output ------------------------------------------------------------------------


def test_text_format_json_schema_answers_an_instance_of_the_schema(app: MockUpstream) -> None:
    body = answered(app, input="Summarise [[mock:tokens=2]]", text={"format": ANSWER})
    text = only_item(body)["content"][0]["text"]
    jsonschema.validate(json.loads(text), ANSWER["schema"])
    assert body["status"] == "completed" and body["text"]["format"]["name"] == "answer"
    assert body["usage"]["output_tokens"] > 0
    events = streamed(app, input="Summarise", text={"format": ANSWER})
    streamed_text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert json.loads(streamed_text) == json.loads(text)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == streamed_text


def test_json_object_mode_and_the_schema_fault(app: MockUpstream) -> None:
    body = answered(app, input="Hi", text={"format": {"type": "json_object"}})
    assert json.loads(only_item(body)["content"][0]["text"])["reply"].startswith("This is")
    broken = answered(app, input="Hi [[mock:faults=schema]]", text={"format": ANSWER})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(only_item(broken)["content"][0]["text"]), ANSWER["schema"])


# --- the official SDK -------------------------------------------------------------------------


class Weather(pydantic.BaseModel):
    """The weather in a city."""

    city: str
    days: int = pydantic.Field(ge=1)


class Review(pydantic.BaseModel):
    title: str
    stars: int = pydantic.Field(ge=1, le=5)
    pros: list[str]
    weather: Weather | None


def test_the_official_sdk_reads_calls_and_structured_output() -> None:
    with served(MockSettings(api_key="sk-mock")) as port, openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-mock", max_retries=0) as client:
        called = client.responses.create(model="gpt-4o", input="Weather in Paris?",
                                         tools=[WEATHER], tool_choice="required")
        (item,) = called.output
        assert item.type == "function_call" and item.name == "get_weather"
        assert called.usage is not None and called.usage.output_tokens > 0
        with client.responses.stream(model="gpt-4o", input="Weather?",
                                     tools=[WEATHER]) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
        assert "response.function_call_arguments.done" in kinds
        assert final.output[0].type == "function_call"

        parsed = client.responses.parse(model="gpt-4o", input="Review this", text_format=Review)
        assert isinstance(parsed.output_parsed, Review) and parsed.output_parsed.stars >= 1
        with client.responses.stream(model="gpt-4o", input="Review",
                                     text_format=Review) as stream:
            assert isinstance(stream.get_final_response().output_parsed, Review)

        tool = openai.pydantic_responses_function_tool(Weather)
        with_tool = client.responses.parse(model="gpt-4o", input="Weather?", tools=[tool],
                                           tool_choice="required")
        (call_item,) = with_tool.output
        assert call_item.type == "function_call"
        assert isinstance(call_item.parsed_arguments, Weather)
