"""What a stream's first event says (keystead/sse.py), for every shape providers send."""

from __future__ import annotations

import pytest

from keystead.sse import FirstEvent, judge_first

CASES = [
    # starts a stream
    (b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}', FirstEvent.OK),
    (b'data: {"id":"c","choices":[],"error":null}', FirstEvent.OK),
    (b'event: response.created\ndata: {"type":"response.created","response":{}}', FirstEvent.OK),
    (b'event: message_start\ndata: {"type":"message_start","message":{}}', FirstEvent.OK),
    (b'data: {"choices":[],"prompt_filter_results":[]}', FirstEvent.OK),  # Azure
    (b'\xef\xbb\xbfdata: {"id":"c","choices":[]}', FirstEvent.OK),  # a byte-order mark
    (b'id: 7\nfoo: bar\ndata: {"id":"c"}', FirstEvent.OK),  # unknown fields are ignored
    # nothing yet: read on
    (b": keep-alive", FirstEvent.SKIP),
    (b"retry: 100", FirstEvent.SKIP),
    (b"event: ping", FirstEvent.SKIP),
    # the provider's error
    (b'data: {"error":{"message":"overloaded"}}', FirstEvent.ERROR),
    (b'data: {"object":"chat.completion.chunk","choices":[],"error":{"message":"x"}}',
     FirstEvent.ERROR),  # OpenRouter's
    (b'data: {"object":"error","message":"bad","type":"BadRequestError"}', FirstEvent.ERROR),
    (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}',
     FirstEvent.ERROR),
    (b'event: response.failed\ndata: {"type":"response.failed"}', FirstEvent.ERROR),
    # not a stream
    (b"data: [DONE]", FirstEvent.MALFORMED),
    (b"data: not json", FirstEvent.MALFORMED),
    (b"data: [1, 2]", FirstEvent.MALFORMED),
]


@pytest.mark.parametrize(("event", "verdict"), CASES)
def test_the_first_event_is_judged(event: bytes, verdict: FirstEvent) -> None:
    assert judge_first(event) is verdict
