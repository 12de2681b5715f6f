"""Mint short-lived tokens from a key (P7): narrower than the key, never wider."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keystead.control.bounds import COUNT_MAX
from keystead.durations import parse_duration
from keystead.errors import InvalidField, ModelNotAllowed
from keystead.keys.tokens import TokenClaims
from keystead.pipeline.admit import model_allowed
from keystead.state.records import KeyRecord

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["MintedToken", "TokenService"]


@dataclass(frozen=True)
class MintedToken:
    text: str
    claims: TokenClaims

    def as_dict(self) -> dict[str, Any]:
        claims = self.claims
        return {"token": self.text, "token_id": claims.token_id, "key_id": claims.key_id,
                "expires_at": int(claims.expires_at),
                "expires_in": int(claims.expires_at - claims.issued_at),
                "models": list(claims.models) if claims.models is not None else None,
                "rpm": claims.rpm, "tpm": claims.tpm, "max_tokens": claims.max_tokens,
                "user": claims.user}


def _positive(name: str, value: int | None) -> int | None:
    # JSON from a client: bool is an int in Python, and "5" is not a number.
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or not 1 <= value <= COUNT_MAX):
        raise InvalidField(f"{name} must be an integer from 1 to {COUNT_MAX}.", param=name)
    return value


class TokenService:
    def __init__(self, runtime: ControlPlane):
        self.rt = runtime

    def mint(self, key: KeyRecord, *, ttl: str | None = None,
             models: list[str] | None = None, rpm: int | None = None, tpm: int | None = None,
             max_tokens: int | None = None, user: str | None = None) -> MintedToken:
        config = self.rt.config.tokens
        for name, value in (("ttl", ttl), ("user", user)):
            if value is not None and not isinstance(value, str):
                raise InvalidField(f"{name} must be a string.", param=name)
        if models is not None and (not isinstance(models, list)
                                   or not all(isinstance(m, str) for m in models)):
            raise InvalidField("models must be a list of model names.", param="models")
        try:
            lifetime = parse_duration(ttl or config.default_ttl)
        except ValueError as exc:
            raise InvalidField(str(exc), param="ttl") from None
        longest = parse_duration(config.max_ttl)
        if not 0 < lifetime <= longest:
            raise InvalidField(f"A token may live at most {config.max_ttl}.", param="ttl",
                               hint="Mint a fresh one when it runs out; that is the point.")
        if key.status(time.time()) != "active":
            raise InvalidField(f"Key {key.id} ({key.name}) is {key.status(time.time())}.",
                               param="key")
        for model in models or ():
            if not model_allowed(key, model):
                raise ModelNotAllowed(f"Key {key.id} ({key.name}) may not use {model!r}, so its "
                                      "tokens may not either.", param="models")
        if user is not None and len(user) > 128:
            raise InvalidField("user is at most 128 characters.", param="user")
        cap = _positive("max_tokens", max_tokens)
        if key.max_tokens is not None:
            cap = min(cap or key.max_tokens, key.max_tokens)
        signer = self.rt.signer
        assert signer is not None
        now = time.time()
        claims = TokenClaims(
            token_id=signer.new_id(), key_id=key.id, credential_id=key.current_credential,
            issued_at=now, expires_at=now + lifetime,
            models=tuple(models) if models else key.models, rpm=_positive("rpm", rpm),
            tpm=_positive("tpm", tpm), max_tokens=cap, user=user)
        return MintedToken(signer.mint(claims), claims)

    async def mint_for(self, id_or_name: str, **options: Any) -> MintedToken:
        from keystead.control.keys import KeyService

        return self.mint(await KeyService(self.rt).get(id_or_name), **options)
