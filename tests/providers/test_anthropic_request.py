"""An OpenAI chat request -> an Anthropic Messages request: what is translated, what is dropped,
and what is refused with a 400 naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from keystead.errors import InvalidField, render
from keystead.providers.anthropic_request import DEFAULT_MAX_TOKENS, chat_to_messages
from providers.anthropic_fixtures import MODEL, WEATHER, user


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", user("hi"))
    return chat_to_messages(body, MODEL, stream=bool(body.get("stream")))


def test_a_plain_request_gets_the_required_max_tokens_and_the_upstream_model():
    out = translate(model="alias", messages=user("hello"))
    assert out == {"model": MODEL, "messages": [{"role": "user", "content": "hello"}],
                   "max_tokens": DEFAULT_MAX_TOKENS}


def test_system_and_developer_messages_are_hoisted_in_order():
    french = [{"type": "text", "text": "in French"}]
    out = translate(messages=[{"role": "system", "content": "be brief"},
                              {"role": "user", "content": "hi"},
                              {"role": "developer", "content": french}])
    assert out["system"] == "be brief\n\nin French"
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_sampling_options_are_translated():
    out = translate(max_completion_tokens=50, max_tokens=99, temperature=1.7, top_p=0.9,
                    stop="END", user="u-42", stream=True, seed=7, store=False,
                    stream_options={"include_usage": True}, n=1, logprobs=False,
                    presence_penalty=0)
    assert out["max_tokens"] == 50  # max_completion_tokens wins, as on OpenAI
    assert out["temperature"] == 1.0  # OpenAI's 0-2 capped to Anthropic's 0-1
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-42"}
    assert out["stream"] is True
    for dropped in ("seed", "store", "stream_options", "n", "logprobs", "presence_penalty"):
        assert dropped not in out
    assert translate(stop=["a", "b"], max_tokens=7)["stop_sequences"] == ["a", "b"]
    assert translate(max_tokens=7)["max_tokens"] == 7


def test_a_conversation_with_tool_calls_becomes_tool_use_and_tool_result_blocks():
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call.2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call.2",
         "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "and so?"},
    ]
    out = translate(messages=messages, tools=[WEATHER])
    assert out["messages"] == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}}]},  # an id Claude would refuse is made safe
        {"role": "user", "content": [  # the tool results and the next question: one user turn
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
            {"type": "text", "text": "and so?"}]},
    ]
    assert out["tools"] == [{"name": "get_weather", "description": "Weather for a city.",
                             "input_schema": WEATHER["function"]["parameters"]}]
    assert "tool_choice" not in out  # auto is Anthropic's default too


def test_consecutive_same_role_turns_are_merged_and_tool_results_put_first():
    out = translate(messages=[
        {"role": "user", "content": "one"}, {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "user", "content": "before the result"},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
    ])
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "42"},
                                     {"type": "text", "text": "before the result"}]},
    ]


def test_images_and_pdfs():
    out = translate(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                            "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"filename": "a.pdf",
                                  "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
    ]}])
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0xLjQK"}},
    ]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tool_choice(choice, parallel, expected):
    out = translate(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert out["tool_choice"] == expected


def test_strict_tools_and_json_schema_output():
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    out = translate(tools=[strict], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    assert out["tools"][0]["strict"] is True
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in translate(response_format={"type": "text"})


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"n": 2}, "n", "one choice"),
    ({"logprobs": True}, "logprobs", "log probabilities"),
    ({"top_logprobs": 3}, "top_logprobs", "log probabilities"),
    ({"presence_penalty": 0.5}, "presence_penalty", "no presence_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "logit_bias"),
    ({"response_format": {"type": "json_object"}}, "response_format", "json_schema"),
    ({"functions": [{"name": "f"}]}, "functions", "tools"),
    ({"modalities": ["text", "audio"]}, "modalities", "cannot be translated"),
    ({"reasoning_effort": "high"}, "reasoning_effort", "cannot be translated"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "function tools"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"messages": [{"role": "system", "content": "only this"}]}, "messages", "user message"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role",
     "role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id",
     "tool_call_id"),
    ({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
     "messages[0].content[0]", "Claude takes text, image_url and PDF"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
     "messages[0].content[0]", "image/jpeg"),
    ({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-123"}}]}]},
     "messages[0].content[0]", "file_data"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}]},
     "messages[1].tool_calls[0]", "JSON object"),
])
def test_what_cannot_be_translated_is_refused_with_a_400_naming_the_field(body, param, words):
    with pytest.raises(InvalidField) as caught:
        translate(**body)
    error = caught.value
    assert error.status == 400 and error.param == param
    assert words in error.message
    envelope = orjson.loads(render(error))["error"]
    assert envelope["type"] == "invalid_request_error" and envelope["code"] == "invalid_value"
