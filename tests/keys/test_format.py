"""The text of a keystead key: shape, entropy, checksum, parsing."""

from __future__ import annotations

import math
import string

import pytest

from keystead.keys.format import (
    KEY_LENGTH,
    KEY_PATTERN,
    PREFIX,
    generate_key,
    parse_key,
    verify_checksum,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ID_ALPHABET = string.ascii_lowercase + "234567"


@pytest.fixture(scope="module")
def keys():
    return [generate_key() for _ in range(1000)]


def test_generated_key_has_prefix_and_fixed_length(keys):
    assert PREFIX == "ksk_"
    assert KEY_LENGTH == 4 + 8 + 32 + 6 == 50
    for key in keys:
        assert key.text.startswith("ksk_")
        assert len(key.text) == KEY_LENGTH


def test_generated_key_carries_its_public_id(keys):
    for key in keys:
        assert len(key.key_id) == 8
        assert set(key.key_id) <= set(ID_ALPHABET)
        assert key.text[4:12] == key.key_id


def test_secret_part_carries_at_least_128_bits(keys):
    secrets = [key.text[12:44] for key in keys]
    for secret in secrets:
        assert len(secret) == 32
        assert set(secret) <= set(BASE62)
    # 32 symbols drawn uniformly from 62: log2(62**32) ~ 190 bits.
    assert 32 * math.log2(len(BASE62)) >= 128
    # The generator really uses the whole alphabet (1000 x 32 draws: every symbol appears).
    assert set("".join(secrets)) == set(BASE62)


def test_generated_checksum_verifies(keys):
    for key in keys:
        assert verify_checksum(key.text)
        assert set(key.text[-6:]) <= set(BASE62)


def test_any_single_character_change_fails_the_checksum():
    text = generate_key().text
    changed = 0
    for position in range(len(PREFIX), len(text)):
        for char in BASE62:
            if char == text[position]:
                continue
            mutated = text[:position] + char + text[position + 1 :]
            assert not verify_checksum(mutated), (position, char)
            assert parse_key(mutated) is None
            changed += 1
    assert changed == (len(text) - len(PREFIX)) * 61


def test_changed_prefix_is_refused():
    text = generate_key().text
    assert parse_key("ksx_" + text[4:]) is None
    assert parse_key("KSK_" + text[4:]) is None


def test_wrong_length_is_refused():
    text = generate_key().text
    assert parse_key(text[:-1]) is None
    assert parse_key(text + "a") is None
    assert parse_key("") is None
    assert parse_key("ksk_") is None


def test_non_ascii_key_text_is_refused_not_raised():
    # A bearer header is decoded as latin-1, so any byte can arrive here.
    text = generate_key().text
    assert parse_key(text[:20] + "é" + text[21:]) is None
    assert parse_key("ksk_" + "ü" * (KEY_LENGTH - 4)) is None
    assert not verify_checksum(text[:-1] + "\u00ff")


def test_key_with_valid_checksum_but_bad_id_alphabet_is_refused():
    from keystead.keys.format import _checksum  # build a look-alike with a correct checksum

    body = "ksk_ABCDEFGH" + "a" * 32  # uppercase is outside the id alphabet
    text = body + _checksum(body)
    assert verify_checksum(text)
    assert parse_key(text) is None


def test_key_pattern_matches_generated_keys(keys):
    for key in keys[:100]:
        assert KEY_PATTERN.fullmatch(key.text)


def test_key_pattern_finds_keys_in_text():
    key = generate_key().text
    found = KEY_PATTERN.findall(f"export OPENAI_API_KEY={key}\n# and again: '{key}'.")
    assert found == [key, key]


def test_key_pattern_ignores_look_alikes():
    key = generate_key().text
    assert KEY_PATTERN.search(key[:-1]) is None  # too short
    assert KEY_PATTERN.search(key + "x") is None  # part of a longer token
    assert KEY_PATTERN.search("sk-proj-" + key[4:]) is None


def test_parse_key_returns_the_public_id(keys):
    for key in keys[:100]:
        parsed = parse_key(key.text)
        assert parsed is not None
        assert parsed.key_id == key.key_id
        assert parsed.text == key.text
        assert parsed == key


def test_thousand_generated_keys_are_unique(keys):
    assert len({key.text for key in keys}) == 1000
    assert len({key.text[12:44] for key in keys}) == 1000
    # Ids are 40 bits: a collision among 1000 is ~5e-7 likely.
    assert len({key.key_id for key in keys}) == 1000
