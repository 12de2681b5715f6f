"""Identify: a bearer key becomes a KeyRecord from the in-memory table, or a precise 401.

No message ever contains key text: ids and names only.
"""

from __future__ import annotations

import hmac

import pytest

from keystead.errors import AuthError, ExpiredKey, MalformedKey, MissingKey, RevokedKey, UnknownKey
from keystead.keys import hashing
from keystead.keys.format import PREFIX, _checksum, generate_key
from keystead.keys.hashing import KeyHasher
from keystead.pipeline.identify import KeyTable
from keystead.state.records import KeyRecord

NOW = 1_750_000_000.0
HASHER = KeyHasher(b"p" * 32)


def record_for(text: str, key_id: str, **fields: object) -> KeyRecord:
    return KeyRecord(id=key_id, name="prod-billing-bot-01", key_hash=HASHER.hash(text), env="prod",
                     created_at=NOW - 86400, **fields)  # type: ignore[arg-type]


def table_with(*records: KeyRecord) -> KeyTable:
    table = KeyTable(HASHER, clock=lambda: NOW)
    table.replace(records)
    return table


def bearer(text: str) -> bytes:
    return f"Bearer {text}".encode()


def same_id_other_secret(text: str) -> str:
    """A well-formed key (valid checksum) with the same public id but another secret."""
    body = PREFIX + text[len(PREFIX):len(PREFIX) + 8] + "Z" * 32
    return body + _checksum(body)


def identify_error(table: KeyTable, authorization: bytes | None,
                   api_key: bytes | None = None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        table.identify(authorization, api_key)
    error = caught.value
    assert error.status == 401
    return error


@pytest.fixture
def key() -> tuple[str, KeyRecord]:
    generated = generate_key()
    return generated.text, record_for(generated.text, generated.key_id)


def test_a_valid_bearer_key_finds_its_record(key):
    text, record = key
    assert table_with(record).identify(bearer(text)) is record


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive_and_whitespace_tolerant(key, scheme: str):
    text, record = key
    assert table_with(record).identify(f"  {scheme}   {text}  ".encode()) is record


def test_the_azure_style_api_key_header_works_too(key):
    text, record = key
    assert table_with(record).identify(None, text.encode()) is record
    assert table_with(record).identify(b"Basic Zm9vOmJhcg==", text.encode()) is record


@pytest.mark.parametrize("authorization", [None, b"", b"Bearer", b"Bearer   ", b"Basic abc"])
def test_no_usable_key_is_missing_api_key(authorization: bytes | None):
    error = identify_error(table_with(), authorization)
    assert isinstance(error, MissingKey)
    assert error.code == "missing_api_key"
    assert "Authorization: Bearer ksk_" in error.message


@pytest.mark.parametrize("text", ["sk-proj-" + "A" * 40, "sk_live_" + "b" * 30])
def test_a_provider_key_sent_by_mistake_is_named_as_such_and_not_echoed(text: str):
    error = identify_error(table_with(), bearer(text))
    assert isinstance(error, MalformedKey)
    assert error.code == "invalid_api_key"
    assert "provider key" in error.message and "rotate" in error.message
    assert text not in error.message and text[:12] not in error.message


@pytest.mark.parametrize("text", ["hello", "ksk_short", "ksk_" + "a" * 46])
def test_malformed_keys_explain_the_format(text: str):
    error = identify_error(table_with(), bearer(text))
    assert isinstance(error, MalformedKey)
    assert "ksk_" in error.message and "checksum" in error.message


def test_a_key_with_a_broken_checksum_is_malformed_not_looked_up(key):
    text, record = key
    broken = text[:-1] + ("A" if text[-1] != "A" else "B")
    error = identify_error(table_with(record), bearer(broken))
    assert isinstance(error, MalformedKey)
    assert broken not in error.message


def test_an_unknown_key_names_only_its_public_id(key):
    other = generate_key()
    error = identify_error(table_with(key[1]), bearer(other.text))
    assert isinstance(error, UnknownKey)
    assert error.code == "invalid_api_key"
    assert other.key_id in error.message
    assert other.text not in error.message and other.text[12:] not in error.message


def test_a_known_id_with_a_wrong_secret_goes_through_the_constant_time_compare(key, monkeypatch):
    text, record = key
    forged = same_id_other_secret(text)
    compared: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hashing.hmac, "compare_digest", spy)
    error = identify_error(table_with(record), bearer(forged))
    assert isinstance(error, UnknownKey)
    assert compared == [(HASHER.hash(forged), record.key_hash)]
    assert forged not in error.message


def test_revoked_keys_say_when_and_never_show_the_key(key):
    text, record = key
    revoked = record_for(text, record.id, revoked_at=NOW - 3600, revoked_reason="leaked")
    error = identify_error(table_with(revoked), bearer(text))
    assert isinstance(error, RevokedKey)
    assert error.code == "key_revoked"
    assert f"API key {record.id} (prod-billing-bot-01) was revoked on" in error.message
    assert "UTC" in error.message
    assert text not in error.message and text[len(PREFIX) + 8:] not in error.message


def test_revocation_wins_over_expiry(key):
    text, record = key
    both = record_for(text, record.id, revoked_at=NOW - 10, expires_at=NOW - 20)
    assert isinstance(identify_error(table_with(both), bearer(text)), RevokedKey)


@pytest.mark.parametrize("offset", [-3600.0, 0.0])
def test_expired_keys_say_when_and_never_show_the_key(key, offset: float):
    text, record = key
    expired = record_for(text, record.id, expires_at=NOW + offset)
    error = identify_error(table_with(expired), bearer(text))
    assert isinstance(error, ExpiredKey)
    assert error.code == "key_expired"
    assert f"API key {record.id} (prod-billing-bot-01) expired on" in error.message
    assert text not in error.message


def test_a_key_expiring_later_still_works(key):
    text, record = key
    later = record_for(text, record.id, expires_at=NOW + 1)
    assert table_with(later).identify(bearer(text)) is later


def test_replace_swaps_the_whole_table(key):
    text, record = key
    table = table_with(record)
    other = generate_key()
    table.replace([record_for(other.text, other.key_id)])
    assert isinstance(identify_error(table, bearer(text)), UnknownKey)
    assert table.identify(bearer(other.text)).id == other.key_id
    assert len(table) == 1


def test_put_adds_or_replaces_one_record_without_mutating_the_old_table(key):
    text, record = key
    table = table_with()
    before = table._by_id
    table.put(record)
    assert table.identify(bearer(text)) is record
    assert before == {}  # a reader holding the old dict never sees a half-updated table
    table.put(record_for(text, record.id, revoked_at=NOW))
    assert isinstance(identify_error(table, bearer(text)), RevokedKey)
    assert len(table) == 1


def test_a_disabled_key_is_refused_until_enabled() -> None:
    import dataclasses

    from keystead.errors import DisabledKey

    hasher = KeyHasher(b"p" * 32)
    generated = generate_key()
    record = KeyRecord(id=generated.key_id, name="dev-app-chat",
                       key_hash=hasher.hash(generated.text), env="dev",
                       disabled_at=1_800_000_000.0)
    table = KeyTable(hasher)
    table.replace([record])
    header = f"Bearer {generated.text}".encode()
    with pytest.raises(DisabledKey) as refused:
        table.identify(header)
    assert refused.value.code == "key_disabled" and refused.value.status == 401
    assert generated.text not in refused.value.message
    table.replace([dataclasses.replace(record, disabled_at=None)])
    assert table.identify(header).id == generated.key_id


def rotated(old_text: str, old_id: str, grace_until: float | None) -> tuple[str, KeyRecord]:
    new = generate_key()
    return new.text, KeyRecord(
        id=old_id, name="prod-billing-bot-01", key_hash=HASHER.hash(new.text), env="prod",
        created_at=NOW - 86400, credential_id=new.key_id, rotated_at=NOW - 60,
        previous_credential_id=old_id if grace_until else None,
        previous_hash=HASHER.hash(old_text) if grace_until else None,
        previous_expires_at=grace_until)


def test_after_a_rotation_both_texts_find_the_same_key_during_the_grace():
    old = generate_key()
    new_text, record = rotated(old.text, old.key_id, NOW + 3600)
    table = table_with(record)
    assert table.identify(bearer(new_text)) is record
    assert table.identify(bearer(old.text)) is record


def test_after_the_grace_the_old_text_is_refused_as_rotated_not_as_unknown():
    old = generate_key()
    new_text, record = rotated(old.text, old.key_id, NOW - 1)
    table = table_with(record)
    error = identify_error(table, bearer(old.text))
    assert error.code == "key_rotated"
    assert old.text not in error.message and new_text not in error.message
    assert table.identify(bearer(new_text)) is record


def test_the_old_credential_needs_its_own_secret():
    old = generate_key()
    _new_text, record = rotated(old.text, old.key_id, NOW + 3600)
    assert identify_error(table_with(record),
                          bearer(same_id_other_secret(old.text))).code == "invalid_api_key"


def test_a_text_rotated_away_twice_is_unknown():
    old = generate_key()
    _new_text, record = rotated(old.text, old.key_id, None)
    assert identify_error(table_with(record), bearer(old.text)).code == "invalid_api_key"
