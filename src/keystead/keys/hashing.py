"""Keys are stored only as HMAC-SHA256 under a server pepper (P2).

A leaked database alone does not let anyone test guesses: the pepper lives in the vault,
wrapped by the master key. Comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["KeyHasher"]


class KeyHasher:
    __slots__ = ("_pepper",)

    def __init__(self, pepper: bytes):
        if len(pepper) < 32:
            raise ValueError("the key pepper must be at least 32 bytes")
        self._pepper = pepper

    def hash(self, key_text: str) -> str:
        return hmac.new(self._pepper, key_text.encode("ascii"), hashlib.sha256).hexdigest()

    def matches(self, key_text: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(key_text), stored_hash)
