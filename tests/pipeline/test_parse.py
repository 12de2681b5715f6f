"""Parse: the body is read once under a size limit; decode errors name the parameter and code."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from keystead.errors import BodyTooLarge, InvalidField, InvalidJSON
from keystead.pipeline.parse import ChatView, EmbeddingsView, ResponsesView, decode_view, read_body
from keystead.providers.base import Endpoint

CHAT = Endpoint.CHAT


def decode_error(endpoint: Endpoint, body: bytes) -> Any:
    with pytest.raises((InvalidJSON, InvalidField)) as caught:
        decode_view(endpoint, body)
    return caught.value


# --- decode_view ------------------------------------------------------------------------------


def test_chat_view_reads_the_policy_fields_and_keeps_the_rest_raw():
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
            b'"stream":true,"stream_options":{"include_usage":false},"max_tokens":7,'
            b'"tools":[{"type":"function","function":{"name":"f"}}],"temperature":0.2}')
    view = decode_view(CHAT, body)
    assert isinstance(view, ChatView)
    assert view.model == "gpt-4o-mini"
    assert bytes(view.messages) == b'[{"role":"user","content":"hi"}]'
    assert view.stream is True
    assert view.stream_options is not None and view.stream_options.include_usage is False
    assert view.max_tokens == 7 and view.max_completion_tokens is None
    assert bytes(view.tools) == b'[{"type":"function","function":{"name":"f"}}]'


def test_absent_tools_are_a_raw_null():
    view = decode_view(CHAT, b'{"model":"m","messages":[]}')
    assert bytes(view.tools) == b"null"
    assert view.stream is None and view.stream_options is None


def test_embeddings_and_responses_views():
    embeddings = decode_view(Endpoint.EMBEDDINGS, b'{"model":"e","input":["a","b"]}')
    assert isinstance(embeddings, EmbeddingsView)
    assert bytes(embeddings.input) == b'["a","b"]'
    responses = decode_view(Endpoint.RESPONSES, b'{"model":"r","stream":true,'
                                                b'"max_output_tokens":9}')
    assert isinstance(responses, ResponsesView)
    assert bytes(responses.input) == b"null"
    assert responses.stream is True and responses.max_output_tokens == 9


@pytest.mark.parametrize("body", [b"", b"{not json", b'{"model":"m","messages":[]} trailing',
                                  b'{"model":"m",'], ids=["empty", "garbage", "trailing", "cut"])
def test_unparseable_bodies_are_invalid_json(body: bytes):
    error = decode_error(CHAT, body)
    assert isinstance(error, InvalidJSON)
    assert (error.status, error.code, error.param) == (400, "invalid_json", None)
    assert "JSON" in error.message


@pytest.mark.parametrize("body", [b"[1,2]", b'"a string"', b"42", b"null"])
def test_a_body_that_is_not_an_object_is_invalid_json(body: bytes):
    error = decode_error(CHAT, body)
    assert isinstance(error, InvalidJSON)
    assert error.code == "invalid_json"
    assert error.message == "The request body must be a JSON object."


@pytest.mark.parametrize(("endpoint", "body", "param"), [
    (CHAT, b'{"messages":[]}', "model"),
    (CHAT, b'{"model":"m"}', "messages"),
    (Endpoint.EMBEDDINGS, b'{"model":"e"}', "input"),
    (Endpoint.RESPONSES, b'{"input":"hi"}', "model"),
])
def test_missing_fields_name_the_parameter(endpoint: Endpoint, body: bytes, param: str):
    error = decode_error(endpoint, body)
    assert isinstance(error, InvalidField)
    assert (error.status, error.code, error.param) == (400, "missing_required_parameter", param)
    assert error.message == f"Missing required parameter: '{param}'."


@pytest.mark.parametrize(("body", "param", "expected"), [
    (b'{"model":5,"messages":[]}', "model", "str"),
    (b'{"model":"m","messages":[],"stream":"yes"}', "stream", "bool"),
    (b'{"model":"m","messages":[],"max_tokens":"ten"}', "max_tokens", "int"),
    (b'{"model":"m","messages":[],"max_tokens":1.5}', "max_tokens", "int"),
    (b'{"model":"m","messages":[],"max_completion_tokens":true}', "max_completion_tokens",
     "int"),
    (b'{"model":"m","messages":[],"stream_options":7}', "stream_options", "object"),
    (b'{"model":"m","messages":[],"stream_options":{"include_usage":"yes"}}',
     "stream_options.include_usage", "bool"),
])
def test_wrong_types_name_the_parameter_and_the_expected_type(body: bytes, param: str,
                                                              expected: str):
    error = decode_error(CHAT, body)
    assert isinstance(error, InvalidField)
    assert (error.code, error.param) == ("invalid_value", param)
    assert error.message.startswith(f"Invalid value for '{param}': Expected `{expected}")


def test_fields_the_gateway_does_not_read_are_not_validated():
    # Validating them is the provider's job; the gateway forwards the bytes as they are.
    view = decode_view(CHAT, b'{"model":"m","messages":"not a list","temperature":"hot",'
                             b'"seed":123456789012345678901234567890}')
    assert view.model == "m"
    assert bytes(view.messages) == b'"not a list"'


# --- read_body ----------------------------------------------------------------------------------


def receive_from(messages: list[dict[str, Any]]):
    """An ASGI receive that hands out `messages` in order (consuming the list)."""

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)]


def test_body_in_several_chunks_is_joined():
    body = asyncio.run(read_body(receive_from(chunks(b'{"a":', b"", b"1", b"}")), 100))
    assert body == b'{"a":1}'


def test_a_body_exactly_at_the_limit_is_accepted():
    body = asyncio.run(read_body(receive_from(chunks(b"x" * 600, b"y" * 424)), 1024))
    assert len(body) == 1024


def test_the_limit_counts_all_chunks_not_each_one():
    receive = receive_from(chunks(b"x" * 400, b"x" * 400, b"x" * 400, b"never read"))
    with pytest.raises(BodyTooLarge) as caught:
        asyncio.run(read_body(receive, 1000))
    error = caught.value
    assert (error.status, error.code) == (413, "request_too_large")
    assert "1000 bytes" in error.message and "max_body_bytes" in error.message


def test_reading_stops_at_the_first_chunk_over_the_limit():
    messages = chunks(b"x" * 900, b"x" * 200, b"x" * 10)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(receive_from(messages), 1000))
    assert len(messages) == 1  # the chunk after the overflow was never asked for


def test_a_missing_body_message_body_counts_as_empty():
    body = asyncio.run(read_body(receive_from([{"type": "http.request"}]), 10))
    assert body == b""
    assert isinstance(decode_error(CHAT, body), InvalidJSON)


def test_a_client_that_leaves_mid_body_is_reported():
    receive = receive_from([*chunks(b'{"a":', b"1}")[:1], {"type": "http.disconnect"}])
    with pytest.raises(InvalidJSON, match="closed the connection"):
        asyncio.run(read_body(receive, 100))


def test_raw_fields_are_zero_copy_views_of_the_body():
    body = b'{"model":"m","messages":[1,2,3]}'
    view = decode_view(CHAT, body)
    assert isinstance(view.messages, msgspec.Raw)
    assert msgspec.json.decode(view.messages) == [1, 2, 3]
