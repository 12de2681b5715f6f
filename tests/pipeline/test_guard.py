"""Guardrails: what is found in prompts, how it is masked, and what is blocked."""

from __future__ import annotations

import json
import secrets
import string

import pytest

from keystead.guard.detect import find_pii, find_secrets, mask
from keystead.guard.inspect import ContentBlocked, inspect
from keystead.providers.base import Endpoint


def openai_key() -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return "sk-proj-" + "".join(secrets.choice(alphabet) for _ in range(120))


@pytest.mark.parametrize(("text", "kinds"), [
    ("write to ana.lopez+work@example.co.uk today", ["email"]),
    ("card 4111 1111 1111 1111 expires 12/29", ["card"]),
    ("IBAN DE89 3704 0044 0532 0130 00 please", ["iban"]),
    ("call +49 30 1234 5678 or (030) 1234-5678", ["phone", "phone"]),
    # not personal data: ids, versions, amounts, dates, IPs, a failing Luhn or IBAN checksum
    ("order 1234567890123, v1.2.3, 12.50 EUR, 2024-11-23 12 30, 192.168.1.10", []),
    ("card 4111 1111 1111 1112, IBAN DE89 3704 0044 0532 0130 01", []),
    ("uuid 550e8400-e29b-41d4-a716-446655440000 and sha 9f86d081884c7d659a2feaa0c55ad015", []),
])
def test_personal_data_is_found_and_look_alikes_are_not(text, kinds):
    assert [s.kind for s in find_pii(text)] == kinds


def test_secrets_are_found_with_the_scanners_detectors_and_masked():
    key = openai_key()
    text = f"my key is {key}, please debug: {key}"
    spans = find_secrets(text)
    assert [s.kind for s in spans] == ["openai-project", "openai-project"]
    masked = mask(text, spans)
    assert key not in masked and masked.count("[REDACTED:openai-project]") == 2



@pytest.mark.parametrize("shape", [
    'key = "{prefix}" + "{body}"\nand the rest',  # concatenated pieces
    'api_key = ("{prefix}" "{head}" "{tail}")  # trailing words ' + "w" * 300,  # implicit
    "> use the key I pasted in the chat yesterday, it works {prefix}{head}\n> {tail} ok",  # wrapped
])
def test_a_key_the_scanner_reads_joined_is_masked_and_blocked_too(shape):
    """A key found only by joining its pieces is not in the text as one string: it is masked
    from where it starts to its last piece (a little more rather than less), and blocks."""
    body = openai_key()[len("sk-proj-"):]
    text = shape.format(prefix="sk-proj-", body=body, head=body[:30], tail=body[30:])
    spans = find_secrets(text)
    assert [s.kind for s in spans] == ["openai-project"]
    masked = mask(text, spans)
    assert "[REDACTED:openai-project]" in masked
    for piece in (body[:20], body[30:50], body[-20:]):
        assert piece not in masked
    assert masked.rstrip().endswith(("and the rest", "ok", "w" * 100))
    with pytest.raises(ContentBlocked, match="openai-project"):
        inspect(Endpoint.CHAT, chat(text), secrets="block", pii="off")


def chat(*contents: object) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": c} for c in contents]}).encode()


def test_mask_rewrites_only_what_the_model_reads():
    key = openai_key()
    body = chat(f"key {key}", [{"type": "text", "text": "mail me: bo@example.org"},
                               {"type": "image_url", "image_url": {"url": "https://x/a.png"}}])
    verdict = inspect(Endpoint.CHAT, body, secrets="mask", pii="mask")
    assert verdict.kinds == ("email", "openai-project")
    assert verdict.body is not None
    sent = json.loads(verdict.body)
    assert sent["messages"][0]["content"] == "key [REDACTED:openai-project]"
    assert sent["messages"][1]["content"][0]["text"] == "mail me: [REDACTED:email]"
    assert sent["messages"][1]["content"][1]["image_url"]["url"] == "https://x/a.png"


def test_record_finds_without_changing_and_block_refuses_without_echoing():
    key = openai_key()
    body = chat(f"here: {key}")
    recorded = inspect(Endpoint.CHAT, body, secrets="record", pii="off")
    assert recorded == type(recorded)(("openai-project",), None)
    with pytest.raises(ContentBlocked) as blocked:
        inspect(Endpoint.CHAT, body, secrets="block", pii="off")
    assert blocked.value.status == 400 and blocked.value.code == "content_blocked"
    assert key not in blocked.value.message and "openai-project" in blocked.value.message


def test_responses_and_embeddings_inputs_are_inspected():
    responses = json.dumps({"model": "gpt-4o", "instructions": "reply to x@example.com",
                            "input": [{"role": "user", "content": [
                                {"type": "input_text", "text": "card 4111111111111111"}]}]})
    verdict = inspect(Endpoint.RESPONSES, responses.encode(), secrets="off", pii="mask")
    assert verdict.kinds == ("card", "email") and verdict.body is not None
    assert b"4111111111111111" not in verdict.body and b"x@example.com" not in verdict.body
    embeddings = json.dumps({"model": "text-embedding-3-small",
                             "input": ["plain", "call +44 20 7946 0958"]}).encode()
    masked = inspect(Endpoint.EMBEDDINGS, embeddings, secrets="off", pii="mask")
    assert json.loads(masked.body or b"{}")["input"] == ["plain", "call [REDACTED:phone]"]


def test_nothing_found_means_the_body_is_untouched():
    verdict = inspect(Endpoint.CHAT, chat("hello there"), secrets="mask", pii="mask")
    assert verdict == type(verdict)((), None)
