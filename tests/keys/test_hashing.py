"""Key hashes: HMAC-SHA256 under the server pepper."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from keystead.keys.format import generate_key
from keystead.keys.hashing import KeyHasher

PEPPER_A = bytes(range(32))
PEPPER_B = bytes(range(1, 33))


def test_hash_is_hmac_sha256_under_the_pepper():
    key = generate_key().text
    expected = hmac.new(PEPPER_A, key.encode(), hashlib.sha256).hexdigest()
    assert KeyHasher(PEPPER_A).hash(key) == expected
    assert len(expected) == 64


def test_hash_is_stable_for_the_same_pepper():
    key = generate_key().text
    assert KeyHasher(PEPPER_A).hash(key) == KeyHasher(bytes(PEPPER_A)).hash(key)


def test_hash_differs_per_pepper():
    key = generate_key().text
    assert KeyHasher(PEPPER_A).hash(key) != KeyHasher(PEPPER_B).hash(key)


def test_hash_is_not_the_plain_sha256():
    key = generate_key().text
    assert KeyHasher(PEPPER_A).hash(key) != hashlib.sha256(key.encode()).hexdigest()


def test_matches_the_right_key_only():
    hasher = KeyHasher(PEPPER_A)
    key, other = generate_key().text, generate_key().text
    stored = hasher.hash(key)
    assert hasher.matches(key, stored)
    assert not hasher.matches(other, stored)
    assert not hasher.matches(key, KeyHasher(PEPPER_B).hash(key))
    assert not hasher.matches(key, "")


@pytest.mark.parametrize("length", [0, 16, 31])
def test_short_pepper_is_refused(length):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyHasher(b"x" * length)


def test_longer_pepper_is_accepted():
    assert len(KeyHasher(b"p" * 64).hash("ksk_x")) == 64
