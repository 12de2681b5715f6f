"""SSERelay forwards whole events, whatever the upstream read boundaries, and learns the usage.

The streams here are shaped like OpenAI's own (ids, `usage: null` on every chunk when usage was
asked for, a final `choices: []` usage chunk, `data: [DONE]`), and like the Responses API's
`event:` + `data:` frames.
"""

from __future__ import annotations

import json
import random

import pytest

from keystead.pipeline.sse import SSERelay
from keystead.usage.prices import TokenUsage

USAGE = {
    "prompt_tokens": 19, "completion_tokens": 4, "total_tokens": 23,
    "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}


def chat_chunk(delta: dict, finish: str | None = None, *, with_usage_null: bool = True) -> bytes:
    frame = {"id": "chatcmpl-Ab12Cd34", "object": "chat.completion.chunk", "created": 1727000000,
             "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
             "choices": [{"index": 0, "delta": delta, "logprobs": None,
                          "finish_reason": finish}]}
    if with_usage_null:
        frame["usage"] = None
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def usage_chunk(*, spaced: bool = False) -> bytes:
    frame = {"id": "chatcmpl-Ab12Cd34", "object": "chat.completion.chunk", "created": 1727000000,
             "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
             "choices": [], "usage": USAGE}
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(frame, separators=separators).encode()


def events(payloads: list[bytes], newline: bytes = b"\n") -> list[bytes]:
    return [b"data: " + p + newline + newline for p in payloads]


CONTENT = [
    chat_chunk({"role": "assistant", "content": "", "refusal": None}),
    chat_chunk({"content": "Bonjour"}),
    chat_chunk({"content": " \u00e0 vous \U0001f600"}),  # multi-byte characters, split mid-char
    chat_chunk({"content": " \\n\\n and a blank line"}),
    chat_chunk({}, "stop"),
]
USAGE_EVENT = events([usage_chunk()])[0]
DONE = b"data: [DONE]\n\n"
STREAM = b"".join([*events(CONTENT), USAGE_EVENT, DONE])


def relay_all(pieces: list[bytes], *, drop_usage_chunk: bool) -> tuple[bytes, SSERelay]:
    relay = SSERelay(drop_usage_chunk=drop_usage_chunk)
    out = b"".join(relay.feed(piece) for piece in pieces)
    return out + relay.leftover(), relay


def test_usage_chunk_is_dropped_when_the_gateway_asked_for_it_on_the_clients_behalf():
    out, relay = relay_all([STREAM], drop_usage_chunk=True)
    assert out == b"".join(events(CONTENT))
    assert relay.usage == TokenUsage(prompt_tokens=19, completion_tokens=4, cached_tokens=3)
    assert relay.model == "gpt-4o-mini-2024-07-18"
    assert relay.done_event == DONE


def test_usage_chunk_is_kept_when_the_client_asked_for_it():
    out, relay = relay_all([STREAM], drop_usage_chunk=False)
    assert out == b"".join(events(CONTENT)) + USAGE_EVENT
    assert relay.usage == TokenUsage(prompt_tokens=19, completion_tokens=4, cached_tokens=3)


def test_done_is_held_back_for_the_cost_comment():
    relay = SSERelay(drop_usage_chunk=True)
    assert relay.feed(DONE) == b""
    assert relay.done_event == DONE
    assert relay.leftover() == b""


@pytest.mark.parametrize("drop", [True, False], ids=["drop-usage", "keep-usage"])
def test_every_two_way_split_forwards_the_same_bytes_as_the_whole_stream(drop: bool):
    whole, reference = relay_all([STREAM], drop_usage_chunk=drop)
    for offset in range(len(STREAM) + 1):
        out, relay = relay_all([STREAM[:offset], STREAM[offset:]], drop_usage_chunk=drop)
        assert out == whole, f"split at byte {offset}"
        assert relay.usage == reference.usage
        assert relay.done_event == DONE
        assert relay.captured == reference.captured


@pytest.mark.parametrize("drop", [True, False], ids=["drop-usage", "keep-usage"])
def test_random_multi_splits_forward_the_same_bytes_as_the_whole_stream(drop: bool):
    whole, reference = relay_all([STREAM], drop_usage_chunk=drop)
    rng = random.Random(20240917)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(2, 40)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        out, relay = relay_all(pieces, drop_usage_chunk=drop)
        assert out == whole, f"cuts {cuts}"
        assert relay.usage == reference.usage
        assert relay.done_event == DONE


def test_byte_by_byte_feeding_only_ever_emits_whole_events():
    relay = SSERelay(drop_usage_chunk=True)
    emitted = [relay.feed(STREAM[i:i + 1]) for i in range(len(STREAM))]
    emitted = [e for e in emitted if e]
    assert emitted == events(CONTENT)
    assert relay.leftover() == b""


def test_several_events_in_one_read_go_out_in_one_write():
    relay = SSERelay(drop_usage_chunk=True)
    two = b"".join(events(CONTENT[:2]))
    assert relay.feed(two + events(CONTENT[2:3])[0][:10]) == two
    assert relay.leftover() == events(CONTENT[2:3])[0][:10]


def test_crlf_delimited_events_are_split_the_same_way_at_every_offset():
    stream = b"".join([*events(CONTENT, b"\r\n"), *events([usage_chunk()], b"\r\n"),
                       b"data: [DONE]\r\n\r\n"])
    expected = b"".join(events(CONTENT, b"\r\n"))
    for offset in range(len(stream) + 1):
        out, relay = relay_all([stream[:offset], stream[offset:]], drop_usage_chunk=True)
        assert out == expected, f"split at byte {offset}"
        assert relay.usage == TokenUsage(prompt_tokens=19, completion_tokens=4, cached_tokens=3)
        assert relay.done_event == b"data: [DONE]\r\n\r\n"


def test_usage_written_with_spaces_is_read_and_the_usage_chunk_dropped():
    # Servers that serialise with Python's json defaults write `"usage": {` and `"choices": []`.
    stream = b"".join([*events(CONTENT), *events([usage_chunk(spaced=True)]), DONE])
    out, relay = relay_all([stream], drop_usage_chunk=True)
    assert relay.usage == TokenUsage(prompt_tokens=19, completion_tokens=4, cached_tokens=3)
    assert out == b"".join(events(CONTENT))


def test_usage_null_on_content_chunks_is_not_taken_for_usage():
    out, relay = relay_all(events(CONTENT), drop_usage_chunk=True)
    assert relay.usage is None
    assert out == b"".join(events(CONTENT))


def test_content_payloads_are_captured_for_estimates_and_the_usage_chunk_is_not():
    _, relay = relay_all([STREAM], drop_usage_chunk=True)
    assert relay.captured == CONTENT


def test_a_stream_cut_mid_event_leaves_the_partial_event_as_leftover():
    cut = STREAM[: STREAM.index(b"Bonjour") + 3]
    relay = SSERelay(drop_usage_chunk=True)
    out = relay.feed(cut)
    assert out == events(CONTENT)[0]
    assert relay.leftover() == cut[len(out):]
    assert relay.usage is None
    assert relay.done_event is None


def test_comments_and_retry_lines_pass_through():
    stream = b": keep-alive\n\nretry: 3000\n\n" + STREAM
    out, _ = relay_all([stream], drop_usage_chunk=True)
    assert out == b": keep-alive\n\nretry: 3000\n\n" + b"".join(events(CONTENT))


# --- the Responses API ------------------------------------------------------------------------


def responses_event(kind: str, **fields: object) -> bytes:
    data = json.dumps({"type": kind, **fields}, separators=(",", ":")).encode()
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1727000000, "status": "completed",
            "model": "gpt-4o-mini-2024-07-18", "output": []}
RESPONSES_STREAM = [
    responses_event("response.created", response={**RESPONSE, "status": "in_progress",
                                                  "usage": None}, sequence_number=0),
    responses_event("response.output_text.delta", item_id="msg_1", output_index=0,
                    content_index=0, delta="Hello", sequence_number=1),
    responses_event("response.output_text.delta", item_id="msg_1", output_index=0,
                    content_index=0, delta=" there", sequence_number=2),
    responses_event("response.completed", sequence_number=3, response={
        **RESPONSE, "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 2},
                              "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": 13}}),
]


@pytest.mark.parametrize("drop", [True, False], ids=["drop-usage", "keep-usage"])
def test_responses_frames_pass_through_and_completed_usage_is_read(drop: bool):
    stream = b"".join(RESPONSES_STREAM)
    for offset in range(0, len(stream) + 1, 7):
        out, relay = relay_all([stream[:offset], stream[offset:]], drop_usage_chunk=drop)
        assert out == stream
        assert relay.usage == TokenUsage(prompt_tokens=11, completion_tokens=2, cached_tokens=2)
        assert relay.model == "gpt-4o-mini-2024-07-18"
        assert relay.done_event is None


def test_responses_deltas_are_captured_for_estimates():
    _, relay = relay_all(RESPONSES_STREAM[:3], drop_usage_chunk=True)
    assert relay.usage is None
    deltas = [json.loads(p).get("delta") for p in relay.captured]
    assert "".join(d for d in deltas if d) == "Hello there"
