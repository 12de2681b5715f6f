"""Short-lived tokens (P7): minted from a key for minutes, for a browser or a job that must not
hold the key itself.

    kst_<payload>.<signature>      payload: compact JSON, base64url; signature: HMAC-SHA256

A gateway verifies a token without reading the store (the signing secret is derived from the
vault's pepper, which every replica already holds), then looks its parent key up in the
in-memory key table: a token dies with its parent's revocation, pause, expiry or rotation
(it is bound to the parent's credential, so `keystead incident` ends it too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import orjson

__all__ = ["TOKEN_PREFIX", "TokenClaims", "TokenError", "TokenSigner"]

TOKEN_PREFIX = "kst_"  # noqa: S105 (a prefix, not a secret)


class TokenError(Exception):
    """Not a token this gateway signed (malformed, forged or tampered with)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    token_id: str
    key_id: str  # the parent key
    credential_id: str  # the parent's credential when minted: a rotation ends the token
    issued_at: float
    expires_at: float
    models: tuple[str, ...] | None = None  # narrower than the parent's, never wider
    rpm: int | None = None
    tpm: int | None = None
    max_tokens: int | None = None
    user: str | None = None  # the end user it was minted for (recorded in the log line)

    def to_json(self) -> bytes:
        fields = {"t": self.token_id, "k": self.key_id, "c": self.credential_id,
                  "i": int(self.issued_at), "e": int(self.expires_at), "m": self.models,
                  "r": self.rpm, "p": self.tpm, "x": self.max_tokens, "u": self.user}
        return orjson.dumps({k: v for k, v in fields.items() if v is not None})

    @classmethod
    def from_json(cls, data: bytes) -> TokenClaims:
        try:
            raw = orjson.loads(data)
            return cls(token_id=str(raw["t"]), key_id=str(raw["k"]), credential_id=str(raw["c"]),
                       issued_at=float(raw["i"]), expires_at=float(raw["e"]),
                       models=tuple(raw["m"]) if raw.get("m") is not None else None,
                       rpm=raw.get("r"), tpm=raw.get("p"), max_tokens=raw.get("x"),
                       user=raw.get("u"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise TokenError("malformed token payload") from None


_TOKEN_TEXT = re.compile(r"kst_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    __slots__ = ("_secret",)

    def __init__(self, pepper: bytes):
        # A key of its own, derived from the pepper: a token signature never doubles as a key
        # hash, and nothing new has to be stored or shared between replicas.
        self._secret = hmac.new(pepper, b"keystead token signing v1", hashlib.sha256).digest()

    @staticmethod
    def new_id() -> str:
        return os.urandom(6).hex()

    def mint(self, claims: TokenClaims) -> str:
        payload = _b64(claims.to_json())
        return f"{TOKEN_PREFIX}{payload}.{self._sign(payload)}"

    def verify(self, text: str) -> TokenClaims:
        """The claims of a token this gateway signed; TokenError otherwise. Expiry and the
        parent key are the caller's to check."""
        # Tokens are base64url and a dot: anything else (non-ASCII above all, which neither the
        # signature nor compare_digest can take) is not one.
        if not text.startswith(TOKEN_PREFIX) or text.count(".") != 1 \
                or not _TOKEN_TEXT.fullmatch(text):
            raise TokenError("not a keystead token")
        payload, signature = text[len(TOKEN_PREFIX):].split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise TokenError("bad signature")
        try:
            return TokenClaims.from_json(_unb64(payload))
        except ValueError:
            raise TokenError("malformed token payload") from None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())
