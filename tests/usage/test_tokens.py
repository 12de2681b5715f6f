"""Offline token counting with the shipped tokenizer files."""

from __future__ import annotations

import socket

import pytest

from keystead.usage import tokens
from keystead.usage.tokens import count_chat_prompt, count_text, encoding_for_model


def test_shipped_encodings_load_offline(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("token counting tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    # A fresh load, bypassing the module's cache (which another test may have filled).
    o200k = tokens._load.__wrapped__("o200k_base")
    cl100k = tokens._load.__wrapped__("cl100k_base")
    assert o200k.encode("hello world") == [24912, 2375]
    assert cl100k.encode("hello world") == [15339, 1917]
    assert o200k.n_vocab > 200_000
    assert cl100k.n_vocab > 100_000
    assert list(tmp_path.iterdir()) == []  # nothing was cached (or downloaded) either


def test_known_counts():
    assert encoding_for_model("gpt-4o").encode("hello world") == [24912, 2375]
    assert encoding_for_model("gpt-4").encode("hello world") == [15339, 1917]
    assert count_text("hello world", "gpt-4o") == 2
    assert count_text("hello world", "gpt-3.5-turbo") == 2
    assert count_text("", "gpt-4o") == 0


def test_special_token_text_is_counted_as_text():
    text = "ignore <|endoftext|> this"
    count = count_text(text, "gpt-4o")
    assert count > 3  # split into ordinary pieces, not refused and not one special token
    assert 199999 not in encoding_for_model("gpt-4o").encode(text, disallowed_special=())


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("llama-3.1-8b", "o200k_base"),  # unknown families get the newer encoding
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-3-large", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("GPT-4", "cl100k_base"),
        ("azure/gpt-35-turbo", "o200k_base"),
    ],
)
def test_model_to_encoding(model, encoding):
    assert encoding_for_model(model).name == encoding


def test_encodings_are_loaded_once():
    assert encoding_for_model("gpt-4o") is encoding_for_model("o3")
    assert encoding_for_model("gpt-4") is encoding_for_model("text-embedding-3-small")


def _n(text: str, model: str) -> int:
    return len(encoding_for_model(model).encode(text))


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_chat_prompt_follows_openais_recipe(model):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "name": "ana", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    # 3 per message, every value's tokens, 1 more for a name, 3 to prime the reply.
    expected = 3
    for message in messages:
        expected += 3 + sum(_n(value, model) for value in message.values())
        expected += 1 if "name" in message else 0
    assert count_chat_prompt(messages, model) == expected


def test_chat_prompt_matches_openais_published_example():
    # OpenAI cookbook "How to count tokens with tiktoken": the API reported 129 prompt tokens
    # for gpt-4 / gpt-3.5-turbo and 124 for gpt-4o / gpt-4o-mini on these messages.
    messages = [
        {"role": "system", "content": "You are a helpful, pattern-following assistant that "
                                      "translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user",
         "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant",
         "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user",
         "content": "Let's circle back when we have more bandwidth to touch base on "
                    "opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant",
         "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean "
                                    "for the client deliverable."},
    ]
    assert count_chat_prompt(messages, "gpt-4") == 129
    assert count_chat_prompt(messages, "gpt-3.5-turbo") == 129
    assert count_chat_prompt(messages, "gpt-4o") == 124
    assert count_chat_prompt(messages, "gpt-4o-mini") == 124


def test_chat_prompt_counts_text_parts_of_structured_content():
    parts = [{"type": "text", "text": "Describe "},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
             {"type": "text", "text": "this image."}]
    counted = count_chat_prompt([{"role": "user", "content": parts}], "gpt-4o")
    assert counted == 3 + 3 + _n("user", "gpt-4o") + _n("Describe this image.", "gpt-4o")


def test_chat_prompt_counts_tool_calls_and_tools_as_json():
    import orjson

    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    tools = [{"type": "function", "function": {"name": "get_weather",
                                                "parameters": {"type": "object"}}}]
    messages = [{"role": "assistant", "content": None, "tool_calls": calls}]
    base = 3 + 3 + _n("assistant", "gpt-4o")
    assert count_chat_prompt(messages, "gpt-4o") == base + _n(orjson.dumps(calls).decode(),
                                                               "gpt-4o")
    assert count_chat_prompt(messages, "gpt-4o", tools) == (
        base + _n(orjson.dumps(calls).decode(), "gpt-4o") + _n(orjson.dumps(tools).decode(),
                                                              "gpt-4o"))


def test_chat_prompt_of_something_else_is_zero():
    assert count_chat_prompt(None, "gpt-4o") == 0
    assert count_chat_prompt({"role": "user"}, "gpt-4o") == 0
    assert count_chat_prompt([], "gpt-4o") == 3
    assert count_chat_prompt(["not a message", 7], "gpt-4o") == 3
