"""Envelope encryption for provider keys (P3).

Each secret gets its own random 256-bit data key. The secret is sealed with AES-256-GCM under the
data key; the data key is sealed with AES-256-GCM under the master key. The record's identity is
the associated data of both seals, so a ciphertext moved to another record fails to open.
Rotating the master key re-seals only the data keys.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["MasterKey", "MasterKeyError", "SealedSecret", "VaultError", "open_secret", "rewrap",
           "seal_secret"]

_NONCE = 12


class VaultError(Exception):
    """The vault cannot open a secret (wrong master key, tampered or moved record)."""


class MasterKeyError(VaultError):
    """The configured master key is missing, malformed or not the vault's: a configuration
    error (the CLI exits 2), fixed where the key is configured."""


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: bytes
    key_id: str  # a short fingerprint, stored beside each wrapped key, so a mismatch is explicit

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        try:
            key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        except ValueError:
            key = b""
        if len(key) != 32:
            raise MasterKeyError(
                "the master key must be 32 random bytes in base64 (44 characters); "
                "generate one with `keystead init` or `python -c \"import secrets, base64; "
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\"`"
            )
        return cls(key=key, key_id=hashlib.sha256(b"keystead-master" + key).hexdigest()[:12])

    @staticmethod
    def generate_text() -> str:
        return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass(frozen=True, slots=True)
class SealedSecret:
    wrapped_key: bytes  # nonce + AES-GCM(master, data key)
    ciphertext: bytes  # nonce + AES-GCM(data key, secret)
    master_key_id: str


def seal_secret(master: MasterKey, record_id: str, secret: bytes) -> SealedSecret:
    aad = record_id.encode()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce_d, nonce_s = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = nonce_d + AESGCM(master.key).encrypt(nonce_d, data_key, aad)
    ciphertext = nonce_s + AESGCM(data_key).encrypt(nonce_s, secret, aad)
    return SealedSecret(wrapped_key=wrapped, ciphertext=ciphertext, master_key_id=master.key_id)


def _unwrap(master: MasterKey, record_id: str, sealed: SealedSecret) -> bytes:
    if sealed.master_key_id != master.key_id:
        raise MasterKeyError(
            f"secret {record_id!r} is sealed by master key {sealed.master_key_id}, but the "
            f"configured master key is {master.key_id}; use the matching KEYSTEAD_MASTER_KEY"
        )
    try:
        return AESGCM(master.key).decrypt(sealed.wrapped_key[:_NONCE], sealed.wrapped_key[_NONCE:],
                                          record_id.encode())
    except (InvalidTag, ValueError):  # ValueError: a blob too short to hold a nonce
        raise VaultError(f"secret {record_id!r}: data key does not open (tampered?)") from None


def open_secret(master: MasterKey, record_id: str, sealed: SealedSecret) -> bytes:
    data_key = _unwrap(master, record_id, sealed)
    try:
        return AESGCM(data_key).decrypt(sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:],
                                        record_id.encode())
    except (InvalidTag, ValueError):  # ValueError: a blob too short to hold a nonce
        raise VaultError(f"secret {record_id!r}: ciphertext does not open (tampered?)") from None


def rewrap(old: MasterKey, new: MasterKey, record_id: str, sealed: SealedSecret) -> SealedSecret:
    """The same secret, its data key sealed by `new` instead of `old`."""
    data_key = _unwrap(old, record_id, sealed)
    nonce = os.urandom(_NONCE)
    wrapped = nonce + AESGCM(new.key).encrypt(nonce, data_key, record_id.encode())
    return SealedSecret(wrapped_key=wrapped, ciphertext=sealed.ciphertext, master_key_id=new.key_id)
