"""The text of a keystead key (P2).

    ksk_ 3fq7a2kc 0aZ...(32 chars)... Xy12Ab
    |    |        |                    `- checksum: CRC32 of everything before it, 6 base62 chars
    |    |        `- secret: 32 base62 chars from `secrets` (~190 bits)
    |    `- public id: 8 lowercase base32 chars, safe to show in logs and dashboards
    `- fixed prefix, so scanners recognise the key

The checksum lets a scanner tell a real key from a look-alike offline, without the store. It is
not a security feature: the secret part carries the entropy, and the store keeps only its HMAC.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

__all__ = ["KEY_PATTERN", "PREFIX", "ParsedKey", "generate_key", "parse_key", "verify_checksum"]

PREFIX = "ksk_"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_LEN, _SECRET_LEN, _CHECK_LEN = 8, 32, 6
KEY_LENGTH = len(PREFIX) + _ID_LEN + _SECRET_LEN + _CHECK_LEN
KEY_PATTERN = re.compile(
    rf"\bksk_[a-z2-7]{{{_ID_LEN}}}[0-9A-Za-z]{{{_SECRET_LEN}}}[0-9A-Za-z]{{{_CHECK_LEN}}}\b"
)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    text: str


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_B62[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECK_LEN)


def generate_key() -> ParsedKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))
    secret = "".join(secrets.choice(_B62) for _ in range(_SECRET_LEN))
    body = PREFIX + key_id + secret
    return ParsedKey(key_id=key_id, text=body + _checksum(body))


def verify_checksum(text: str) -> bool:
    # Not ASCII: no key (and no checksum to compute; the text may come from any header bytes).
    if len(text) != KEY_LENGTH or not text.isascii() or not text.startswith(PREFIX):
        return False
    return _checksum(text[:-_CHECK_LEN]) == text[-_CHECK_LEN:]


def parse_key(text: str) -> ParsedKey | None:
    """The key's public id if `text` is well formed with a valid checksum, else None."""
    if not verify_checksum(text):
        return None
    key_id = text[len(PREFIX) : len(PREFIX) + _ID_LEN]
    if any(ch not in _ID_ALPHABET for ch in key_id):
        return None
    return ParsedKey(key_id=key_id, text=text)
