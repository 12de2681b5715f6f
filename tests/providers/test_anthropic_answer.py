"""An Anthropic message -> an OpenAI chat.completion, valid against OpenAI's schema."""

from __future__ import annotations

import pytest

from keystead.providers.anthropic_answer import message_to_completion
from openapi_schemas import validate

ANTHROPIC_MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me check. "},
                {"type": "text", "text": "One moment."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 2000,
              "cache_creation_input_tokens": 300, "output_tokens": 40},
}


def test_a_message_becomes_a_chat_completion():
    completion = message_to_completion(ANTHROPIC_MESSAGE, created=1_700_000_000)
    validate(completion, "CreateChatCompletionResponse")
    assert completion["id"] == "msg_01" and completion["model"] == "claude-haiku-4-5"
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check. One moment."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert completion["usage"] == {
        "prompt_tokens": 2400, "completion_tokens": 40, "total_tokens": 2440,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 300}}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("model_context_window_exceeded", "length"), ("pause_turn", "stop"),
])
def test_stop_reasons(stop_reason, finish):
    message = {**ANTHROPIC_MESSAGE, "content": [{"type": "text", "text": "x"}],
               "stop_reason": stop_reason}
    completion = message_to_completion(message)
    assert completion["choices"][0]["finish_reason"] == finish
    assert "tool_calls" not in completion["choices"][0]["message"]
