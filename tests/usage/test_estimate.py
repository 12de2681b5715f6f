"""Token estimates for requests whose provider reported no usage."""

from __future__ import annotations

import json

import orjson

from keystead.usage.approx_tokens import chat_prompt_tokens, text_tokens
from keystead.usage.estimate import (
    estimate_chat,
    estimate_embeddings,
    estimate_responses,
    streamed_text,
)
from keystead.usage.prices import TokenUsage


def count_text(text: str, _model: str) -> int:
    return text_tokens(text)


def count_chat_prompt(messages: object, _model: str, tools: object = None) -> int:
    return chat_prompt_tokens(messages, tools)


MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three primary colours."},
]
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}]


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def chat_body(content: str | None, tool_calls: list | None = None) -> bytes:
    message: dict = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "llama3",
                  "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


def sse_chat(pieces: list[str]) -> list[bytes]:
    payloads = [dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    payloads += [dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}) for piece in pieces]
    payloads.append(dumps({"id": "c", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    payloads.append(b"[DONE]")
    return payloads


# --- chat ---------------------------------------------------------------------------------------


def test_estimate_chat_from_the_response_body():
    answer = "Red, yellow and blue."
    usage = estimate_chat("gpt-4o-mini", dumps(MESSAGES), None, chat_body(answer))
    assert usage == TokenUsage(prompt_tokens=count_chat_prompt(MESSAGES, "gpt-4o-mini"),
                               completion_tokens=count_text(answer, "gpt-4o-mini"))
    assert usage.prompt_tokens > 10
    assert usage.completion_tokens == 6


def test_estimate_chat_counts_tools_and_tool_calls():
    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "lookup", "arguments": "{\"word\": \"cyan\"}"}}]
    usage = estimate_chat("gpt-4o", dumps(MESSAGES), dumps(TOOLS), chat_body(None, calls))
    assert usage.prompt_tokens == count_chat_prompt(MESSAGES, "gpt-4o", TOOLS)
    assert usage.prompt_tokens > count_chat_prompt(MESSAGES, "gpt-4o")
    assert usage.completion_tokens == count_text("{\"word\": \"cyan\"}", "gpt-4o")


def test_estimate_chat_prefers_the_streamed_text():
    usage = estimate_chat("gpt-4o", dumps(MESSAGES), None, None, streamed="Red, yellow")
    assert usage.completion_tokens == count_text("Red, yellow", "gpt-4o")


def test_estimate_chat_with_nothing_generated():
    usage = estimate_chat("gpt-4o", dumps(MESSAGES), None, None, streamed="")
    assert usage.completion_tokens == 0
    assert estimate_chat("gpt-4o", dumps(MESSAGES), None, b"not json").completion_tokens == 0


def test_estimate_chat_with_an_unexpected_response_shape():
    # A body that is JSON but not a chat completion must not break the estimate.
    for body in (b"[1, 2]", b"\"ok\"", b"{\"choices\": [null, 3]}",
                 b"{\"choices\": [{\"message\": null}]}", b"{\"choices\": null}"):
        usage = estimate_chat("gpt-4o", dumps(MESSAGES), None, body)
        assert usage == TokenUsage(count_chat_prompt(MESSAGES, "gpt-4o"), 0), body


def test_estimate_chat_with_unreadable_messages():
    assert estimate_chat("gpt-4o", None, None, chat_body("hi")).prompt_tokens == 0
    assert estimate_chat("gpt-4o", b"{broken", None, chat_body("hi")).prompt_tokens == 0


# --- embeddings ---------------------------------------------------------------------------------


def test_estimate_embeddings_of_a_string():
    text = "The food was delicious and the waiter was friendly."
    usage = estimate_embeddings("text-embedding-3-small", dumps(text))
    assert usage == TokenUsage(prompt_tokens=count_text(text, "text-embedding-3-small"))
    assert usage.prompt_tokens == 11  # o200k_base says 10: " delicious" is one token there


def test_estimate_embeddings_of_a_batch():
    texts = ["first document", "second, somewhat longer document about invoices", ""]
    usage = estimate_embeddings("text-embedding-3-small", dumps(texts))
    assert usage.prompt_tokens == sum(count_text(t, "text-embedding-3-small") for t in texts)
    assert usage.completion_tokens == 0


def test_estimate_embeddings_of_token_arrays():
    assert estimate_embeddings("text-embedding-3-small", dumps([1, 2, 3])).prompt_tokens == 3
    assert estimate_embeddings("text-embedding-3-small",
                               dumps([[1, 2, 3], [4, 5]])).prompt_tokens == 5


def test_estimate_embeddings_of_something_else_is_zero():
    assert estimate_embeddings("text-embedding-3-small", None) == TokenUsage()
    assert estimate_embeddings("text-embedding-3-small", dumps({"x": 1})) == TokenUsage()
    assert estimate_embeddings("text-embedding-3-small", b"\xff") == TokenUsage()


# --- responses ----------------------------------------------------------------------------------


def test_estimate_responses_with_string_input():
    usage = estimate_responses("gpt-4.1", dumps("Write a haiku about caching."), "Memory holds")
    assert usage == TokenUsage(prompt_tokens=count_text("Write a haiku about caching.", "gpt-4.1"),
                               completion_tokens=count_text("Memory holds", "gpt-4.1"))


def test_estimate_responses_with_message_items():
    items = [
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Good morning!"}]},
    ]
    usage = estimate_responses("gpt-4.1", dumps(items), None)
    assert usage.prompt_tokens == count_chat_prompt(items, "gpt-4.1")
    expected = 3 + sum(3 + count_text(t, "gpt-4.1")
                       + count_text(r, "gpt-4.1") for r, t in
                       [("developer", "Answer in French."), ("user", "Good morning!")])
    assert usage.prompt_tokens == expected
    assert usage.completion_tokens == 0


def test_estimate_responses_of_something_else_is_zero():
    assert estimate_responses("gpt-4.1", None, None) == TokenUsage()
    assert estimate_responses("gpt-4.1", dumps(42), "") == TokenUsage()


# --- streamed text ------------------------------------------------------------------------------


def test_streamed_text_of_a_chat_stream():
    assert streamed_text(sse_chat(["The ", "sky ", "is ", "blue."])) == "The sky is blue."


def test_streamed_text_includes_tool_call_arguments():
    payloads = [
        dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": ""}}]}}]}),
        dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "{\"word\":"}}]}}]}),
        dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "\"cyan\"}"}}]}}]}),
    ]
    assert streamed_text(payloads) == "{\"word\":\"cyan\"}"


def test_streamed_text_of_a_responses_stream():
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "message", "role": "assistant", "content": []}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
         "delta": "Bonjour"},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
         "delta": " !"},
        {"type": "response.output_text.done", "output_index": 0, "text": "Bonjour !"},
    ]
    assert streamed_text([orjson.dumps(e) for e in events]) == "Bonjour !"


def test_streamed_text_skips_what_it_cannot_read():
    payloads = [b"[DONE]", b"", b"{broken", b"[1, 2]",
                dumps({"choices": [{"delta": None}]}), dumps({"choices": None}),
                dumps({"choices": [None, 3, {"delta": {"tool_calls": [None]}}]}),
                dumps({"choices": [{"delta": {"content": "ok"}}]})]
    assert streamed_text(payloads) == "ok"


def test_streamed_text_with_a_cut_short_stream_counts_what_arrived():
    payloads = sse_chat(["Once ", "upon ", "a "])[:-2]  # no finish chunk, no [DONE]
    text = streamed_text(payloads)
    assert text == "Once upon a "
    assert estimate_chat("gpt-4o", dumps(MESSAGES), None, None, streamed=text
                         ).completion_tokens == count_text("Once upon a ", "gpt-4o")


# --- as the pipeline calls them -----------------------------------------------------------------


def test_estimates_take_the_raw_fields_of_a_parsed_request():
    # The parse stage hands request fields over as msgspec.Raw (a raw JSON null when absent).
    import msgspec

    request = dumps({"model": "gpt-4o", "messages": MESSAGES, "tools": TOOLS,
                     "input": ["first document", "second document"]})
    fields = msgspec.json.decode(request, type=dict[str, msgspec.Raw])
    null = msgspec.Raw(b"null")
    chat = estimate_chat("gpt-4o", fields["messages"], fields["tools"], chat_body("Blue."))
    assert chat == TokenUsage(count_chat_prompt(MESSAGES, "gpt-4o", TOOLS),
                              count_text("Blue.", "gpt-4o"))
    assert estimate_chat("gpt-4o", fields["messages"], null).prompt_tokens == \
        count_chat_prompt(MESSAGES, "gpt-4o")
    assert estimate_embeddings("text-embedding-3-small", fields["input"]).prompt_tokens == \
        count_text("first document", "gpt-4") + count_text("second document", "gpt-4")
    assert estimate_responses("gpt-4o", null, "ok") == TokenUsage(0, count_text("ok", "gpt-4o"))
