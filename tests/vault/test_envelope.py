"""Envelope encryption: a data key per secret, the record id bound into both seals."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from keystead.vault.envelope import (
    MasterKey,
    SealedSecret,
    VaultError,
    open_secret,
    rewrap,
    seal_secret,
)

SECRET = b"sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.from_text(MasterKey.generate_text())


def flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


def test_seal_then_open_returns_the_secret(master):
    sealed = seal_secret(master, "provider:openai", SECRET)
    assert sealed.master_key_id == master.key_id
    assert open_secret(master, "provider:openai", sealed) == SECRET


def test_empty_and_binary_secrets_roundtrip(master):
    for value in (b"", bytes(range(256)), "ключ-🔑".encode()):
        assert open_secret(master, "r", seal_secret(master, "r", value)) == value


def test_ciphertext_does_not_contain_the_plaintext(master):
    sealed = seal_secret(master, "provider:openai", SECRET)
    for blob in (sealed.ciphertext, sealed.wrapped_key):
        assert SECRET not in blob
        assert SECRET[:16] not in blob
    # nonce (12) + data key (32) + tag (16); nonce + secret + tag
    assert len(sealed.wrapped_key) == 12 + 32 + 16
    assert len(sealed.ciphertext) == 12 + len(SECRET) + 16


def test_each_seal_uses_fresh_randomness(master):
    first = seal_secret(master, "r", SECRET)
    second = seal_secret(master, "r", SECRET)
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_key != second.wrapped_key


def test_sealed_secret_moved_to_another_record_does_not_open(master):
    sealed = seal_secret(master, "provider:openai", SECRET)
    with pytest.raises(VaultError, match="'provider:azure'"):
        open_secret(master, "provider:azure", sealed)


def test_ciphertext_swapped_between_records_does_not_open(master):
    # Same master key, but the data key of one record cannot open another record's ciphertext.
    a = seal_secret(master, "a", b"secret a")
    b = seal_secret(master, "b", b"secret b")
    mixed = dataclasses.replace(a, ciphertext=b.ciphertext)
    with pytest.raises(VaultError, match="ciphertext does not open"):
        open_secret(master, "a", mixed)


@pytest.mark.parametrize("index", [0, 11, 12, 30, -1])
def test_tampered_wrapped_key_fails(master, index):
    sealed = seal_secret(master, "r", SECRET)
    tampered = dataclasses.replace(sealed, wrapped_key=flip(sealed.wrapped_key, index))
    with pytest.raises(VaultError, match="data key does not open"):
        open_secret(master, "r", tampered)


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])
def test_tampered_ciphertext_fails(master, index):
    sealed = seal_secret(master, "r", SECRET)
    tampered = dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext, index))
    with pytest.raises(VaultError, match="ciphertext does not open"):
        open_secret(master, "r", tampered)


@pytest.mark.parametrize("field", ["wrapped_key", "ciphertext"])
@pytest.mark.parametrize("length", [0, 5, 12, 20])
def test_truncated_blobs_fail_with_vault_error(master, field, length):
    sealed = seal_secret(master, "r", SECRET)
    truncated = dataclasses.replace(sealed, **{field: getattr(sealed, field)[:length]})
    with pytest.raises(VaultError, match="does not open"):
        open_secret(master, "r", truncated)


def test_wrong_master_key_names_both_key_ids(master):
    other = MasterKey.from_text(MasterKey.generate_text())
    sealed = seal_secret(master, "provider:openai", SECRET)
    with pytest.raises(VaultError) as info:
        open_secret(other, "provider:openai", sealed)
    message = str(info.value)
    assert master.key_id in message
    assert other.key_id in message
    assert "KEYSTEAD_MASTER_KEY" in message


def test_wrong_master_key_with_a_forged_key_id_still_fails(master):
    other = MasterKey.from_text(MasterKey.generate_text())
    sealed = seal_secret(master, "r", SECRET)
    forged = dataclasses.replace(sealed, master_key_id=other.key_id)
    with pytest.raises(VaultError, match="data key does not open"):
        open_secret(other, "r", forged)


def test_rewrap_opens_with_the_new_master_only(master):
    new = MasterKey.from_text(MasterKey.generate_text())
    sealed = seal_secret(master, "provider:openai", SECRET)
    rewrapped = rewrap(master, new, "provider:openai", sealed)
    assert rewrapped.master_key_id == new.key_id
    assert rewrapped.ciphertext == sealed.ciphertext  # only the data key is re-sealed
    assert rewrapped.wrapped_key != sealed.wrapped_key
    assert open_secret(new, "provider:openai", rewrapped) == SECRET
    with pytest.raises(VaultError):
        open_secret(master, "provider:openai", rewrapped)
    forged = dataclasses.replace(rewrapped, master_key_id=master.key_id)
    with pytest.raises(VaultError, match="data key does not open"):
        open_secret(master, "provider:openai", forged)


def test_rewrap_with_the_wrong_old_master_fails(master):
    wrong = MasterKey.from_text(MasterKey.generate_text())
    new = MasterKey.from_text(MasterKey.generate_text())
    with pytest.raises(VaultError, match=wrong.key_id):
        rewrap(wrong, new, "r", seal_secret(master, "r", SECRET))


def test_master_key_from_text_accepts_both_base64_alphabets():
    raw = bytes([0xFB, 0xFF] * 16)  # encodes with '+/' in standard, '-_' in urlsafe base64
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    standard = base64.b64encode(raw).decode()
    assert "-" in urlsafe and "+" in standard
    for text in (urlsafe, standard, urlsafe.rstrip("="), f"  {urlsafe}\n"):
        assert MasterKey.from_text(text).key == raw


def test_master_key_id_is_a_stable_fingerprint():
    text = MasterKey.generate_text()
    assert len(text) == 44
    a, b = MasterKey.from_text(text), MasterKey.from_text(text)
    assert a.key_id == b.key_id
    assert len(a.key_id) == 12
    assert a.key_id != MasterKey.from_text(MasterKey.generate_text()).key_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        base64.urlsafe_b64encode(b"k" * 16).decode(),
        base64.urlsafe_b64encode(b"k" * 31).decode(),
        base64.urlsafe_b64encode(b"k" * 33).decode(),
        "not base64 at all!",
        "hunter2",
    ],
)
def test_master_key_of_the_wrong_length_is_refused_helpfully(text):
    with pytest.raises(VaultError) as info:
        MasterKey.from_text(text)
    message = str(info.value)
    assert "32 random bytes" in message
    assert "44 characters" in message
    assert "keystead init" in message


def test_repr_never_shows_the_key_bytes(master):
    text = base64.urlsafe_b64encode(master.key).decode()
    for shown in (repr(master), str(master), f"{master}", repr([master])):
        assert master.key_id in shown
        assert text not in shown
        assert repr(master.key) not in shown
        assert master.key.hex() not in shown


def test_sealed_secret_is_plain_data(master):
    sealed = seal_secret(master, "r", SECRET)
    rebuilt = SealedSecret(bytes(sealed.wrapped_key), bytes(sealed.ciphertext),
                           sealed.master_key_id)
    assert open_secret(master, "r", rebuilt) == SECRET
