"""keystead's own secrets: the admin token (ksa_, and kst_admin_ from older versions), short-lived
tokens (kst_<claims>.<signature>), the master key on its line, and virtual keys (ksk_, checksum);
found by the scanner and the guardrails, and the look-alikes of documentation left alone."""

from __future__ import annotations

import base64
import random

import pytest

from keystead.guard.detect import find_secrets, mask
from keystead.private_files import new_admin_token
from keystead.scan.scanner import scan_text
from scan.synth import keystead_key, keystead_token, master_key

RNG = random.Random(20261207)


def found(text: str) -> list[tuple[str, str]]:
    return [(f.detector, f.secret) for f in scan_text(text, "x")]


@pytest.mark.parametrize("line", [
    "KEYSTEAD_MASTER_KEY={key}",
    "export KEYSTEAD_MASTER_KEY='{key}'",
    'KEYSTEAD_MASTER_KEY="{key}"',
    "  KEYSTEAD_MASTER_KEY: {key}",
    '      - "KEYSTEAD_MASTER_KEY={key}"',
    '{{"KEYSTEAD_MASTER_KEY": "{key}"}}',
    "vault:\n  master_key: {key}",
    "KEYSTEAD_MASTER_KEY={unpadded}",
])
def test_a_master_key_line_is_found_in_every_dialect(line: str) -> None:
    key = master_key(RNG)
    text = line.format(key=key, unpadded=key.rstrip("="))
    assert found(text) == [("keystead-master-key", key if "{key}" in line else key[:-1])]


def test_admin_tokens_new_and_old_and_virtual_keys_are_found() -> None:
    new, old = new_admin_token(), "kst_admin_" + new_admin_token()[4:]
    key = keystead_key(RNG)
    text = f"KEYSTEAD_ADMIN_TOKEN={new}\nKEYSTEAD_ADMIN_TOKEN={old}\nOPENAI_API_KEY={key}"
    assert found(text) == [("keystead-admin-token", new), ("keystead-admin-token", old),
                           ("keystead", key)]


def test_a_short_lived_token_is_found_by_its_claims() -> None:
    token = keystead_token(RNG)
    assert found(f'headers: {{Authorization: "Bearer {token}"}}') == [("keystead-token", token)]


@pytest.mark.parametrize("text", [
    "KEYSTEAD_MASTER_KEY=${KEYSTEAD_MASTER_KEY}",
    "KEYSTEAD_MASTER_KEY=",
    "KEYSTEAD_MASTER_KEY=<44-char base64>",
    "KEYSTEAD_MASTER_KEY=...",
    "KEYSTEAD_MASTER_KEY_FILE=/run/secrets/keystead_master_key",
    "master_key: ${KEYSTEAD_MASTER_KEY}   # 32 random bytes, base64; or master_key_file: PATH",
    "KEYSTEAD_MASTER_KEY=" + "A" * 43 + "=",
    "KEYSTEAD_MASTER_KEY=" + base64.urlsafe_b64encode(b"x" * 48).decode(),  # 48 bytes, not 32
    "KEYSTEAD_MASTER_KEY=your-master-key-here-in-base64-44-characters=",
    "KEYSTEAD_ADMIN_TOKEN=ksa_...",
    "KEYSTEAD_ADMIN_TOKEN=ksa_" + "x" * 43,
    "KEYSTEAD_ADMIN_TOKEN=kst_admin_<token>",
    "KEYSTEAD_ADMIN_TOKEN=ksa_your_admin_token_goes_here_from_the_env_",
    "Authorization: Bearer kst_...",
    "a token looks like kst_eyJ0IjoiLi4uIn0.<signature>",
    # a JWT is not ours; a kst_ look-alike whose payload is not a token's claims is not either
    "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "kst_eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    # a ksk_ key with a broken checksum (a typo, a doc's look-alike)
    "ksk_abcdefgh" + "Q7w" * 10 + "Xy" + "ZZZZZZ",
])
def test_documentation_examples_and_look_alikes_are_not_findings(text: str) -> None:
    assert found(text) == []


def test_a_hostile_token_payload_does_not_break_the_scan() -> None:
    """A prompt's kst_ look-alike whose payload is deeply nested JSON: not a finding, no crash."""
    # Whitespace between the brackets gives it the entropy of a real payload.
    nested = b"".join(RNG.choice([b"[", b"[ ", b"[\n", b"[\t", b"[\r\n"]) for _ in range(1200))
    payload = base64.urlsafe_b64encode(b'{"t":' + nested).decode().rstrip("=")
    assert len(payload) <= 4000
    assert found(f"kst_{payload}.{'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'}") == []


def test_the_guardrails_mask_keysteads_own_secrets_in_a_prompt() -> None:
    admin, token, key = new_admin_token(), keystead_token(RNG), master_key(RNG)
    text = (f"why does curl -H 'Authorization: Bearer {admin}' fail? my .env has "
            f"KEYSTEAD_MASTER_KEY={key} and the page uses {token}")
    spans = find_secrets(text)
    assert [s.kind for s in spans] == ["keystead-admin-token", "keystead-master-key",
                                       "keystead-token"]
    masked = mask(text, spans)
    assert admin not in masked and key not in masked and token not in masked
    assert "KEYSTEAD_MASTER_KEY=[REDACTED:keystead-master-key]" in masked
