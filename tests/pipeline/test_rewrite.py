"""Rewrite: the few body changes keystead makes, and nothing else.

Forcing `include_usage` on a stream is a byte insertion: every other byte of the client's body is
kept. The other rewrites re-serialise, which keeps every field and value (not the formatting).
"""

from __future__ import annotations

import json

import pytest

from keystead.pipeline.rewrite import BodyRewrite, apply

INSERTED = b'"stream_options":{"include_usage":true},'

# Odd formatting on purpose: spaces, newlines, escapes, key order, numbers written unusually.
ODD_BODY = (
    b'  {\n  "model" : "gpt-4o-mini",\t"stream": true,\n'
    b'  "messages": [ {"role": "user", "content": "caf\\u00e9 \xf0\x9f\x98\x80 \\"q\\" {}"} ],'
    b' "temperature": 7e-1, "top_p": 1.0, "seed": -42, "n": 1,\n'
    b'  "metadata": {"trace": "a,b:c", "empty": {}}, "logit_bias": {"50256": -100},\n'
    b'  "tools": [{"type": "function", "function": {"name": "f", "parameters": '
    b'{"type": "object", "properties": {"x": {"type": ["string", "null"]}}}}}],'
    b' "user": null }\n'
)


def rewrite(**fields: object) -> BodyRewrite:
    r = BodyRewrite()
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def test_nothing_to_do_returns_the_very_same_bytes():
    assert apply(ODD_BODY, BodyRewrite(), had_stream_options=False) is ODD_BODY
    assert BodyRewrite().needed is False


def test_forcing_include_usage_is_a_pure_byte_insertion():
    out = apply(ODD_BODY, rewrite(force_usage=True), had_stream_options=False)
    at = ODD_BODY.index(b"{") + 1
    assert out == ODD_BODY[:at] + INSERTED + ODD_BODY[at:]
    assert out.replace(INSERTED, b"", 1) == ODD_BODY  # every other byte is the client's
    document = json.loads(out)
    assert document["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in document.items() if k != "stream_options"} == json.loads(ODD_BODY)


def test_the_insertion_lands_after_the_first_brace_even_with_braces_in_strings():
    body = b'{"messages":[{"role":"user","content":"{not the first}"}],"model":"m","stream":true}'
    out = apply(body, rewrite(force_usage=True), had_stream_options=False)
    assert out == b"{" + INSERTED + body[1:]
    assert json.loads(out)["messages"][0]["content"] == "{not the first}"


@pytest.mark.parametrize("options", [{}, {"include_usage": False}, {"include_usage": None},
                                     {"include_usage": False, "future_option": 3}])
def test_existing_stream_options_are_merged_not_duplicated(options: dict):
    body = json.dumps({"model": "m", "messages": [], "stream": True,
                       "stream_options": options}).encode()
    out = apply(body, rewrite(force_usage=True), had_stream_options=True)
    assert out.count(b"stream_options") == 1
    document = json.loads(out)
    assert document["stream_options"] == {**options, "include_usage": True}
    assert {k: v for k, v in document.items() if k != "stream_options"} == \
        {k: v for k, v in json.loads(body).items() if k != "stream_options"}


def test_model_rewrite_keeps_every_other_field_and_value():
    out = apply(ODD_BODY, rewrite(model="gpt-4o-mini-2024-07-18"), had_stream_options=False)
    before, after = json.loads(ODD_BODY), json.loads(out)
    assert after.pop("model") == "gpt-4o-mini-2024-07-18"
    before.pop("model")
    assert after == before
    assert list(after) == list(before)  # field order kept too
    assert after["messages"][0]["content"] == 'caf\u00e9 \U0001f600 "q" {}'


def test_max_tokens_cap_is_written_in_and_nothing_else_changes():
    out = apply(ODD_BODY, rewrite(cap_field="max_tokens", cap_value=256), had_stream_options=False)
    after = json.loads(out)
    assert after.pop("max_tokens") == 256
    assert after == json.loads(ODD_BODY)


def test_all_rewrites_at_once():
    out = apply(ODD_BODY, rewrite(model="served", cap_field="max_completion_tokens",
                                  cap_value=64, force_usage=True), had_stream_options=False)
    after = json.loads(out)
    assert after.pop("model") == "served"
    assert after.pop("max_completion_tokens") == 64
    assert after.pop("stream_options") == {"include_usage": True}
    before = json.loads(ODD_BODY)
    before.pop("model")
    assert after == before


@pytest.mark.parametrize("value", [
    9223372036854775807, -9223372036854775808, 18446744073709551615,
    123456789012345678901234567890, -98765432109876543210987654321,
])
def test_reserialisation_keeps_integers_of_any_size_exact(value: int):
    body = b'{"model":"p/m","messages":[],"seed":' + str(value).encode() + b',"x":[1.5,0.1]}'
    out = apply(body, rewrite(model="m"), had_stream_options=False)
    after = json.loads(out)
    assert after["seed"] == value and isinstance(after["seed"], int)
    assert after["x"] == [1.5, 0.1]
    assert after["model"] == "m"


def test_floats_keep_their_value():
    body = (b'{"model":"p/m","messages":[],"temperature":0.1,"top_p":1e-7,"f":-0.0,'
            b'"g":1.0000000000000002}')
    after = json.loads(apply(body, rewrite(model="m"), had_stream_options=False))
    assert after["temperature"] == 0.1
    assert after["top_p"] == 1e-7
    assert after["g"] == 1.0000000000000002
    assert str(after["f"]) == "-0.0"
