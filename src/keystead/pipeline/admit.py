"""Admit: does this key's scope allow this request (P4)? Address, endpoint, model, max_tokens."""

from __future__ import annotations

import fnmatch

from keystead.errors import (
    AddressNotAllowed,
    EndpointNotAllowed,
    MaxTokensExceeded,
    ModelNotAllowed,
)
from keystead.keys.tokens import TokenClaims
from keystead.pipeline.client_ip import allowed, networks
from keystead.providers.base import Endpoint
from keystead.state.records import KeyRecord, TeamRecord

__all__ = ["check_address", "check_endpoint", "check_max_tokens", "check_model",
           "check_token_model", "model_allowed", "output_cap", "token_model_allowed"]


def check_address(key: KeyRecord, team: TeamRecord | None, client_ip: str | None) -> None:
    """Both allowlists apply when both are set: the key's and its team's."""
    for owner, allowlist in ((f"API key {key.id} ({key.name})", key.ip_allowlist),
                             (f"team {team.name}" if team else "", team.ip_allowlist
                              if team else None)):
        if allowlist is not None and not allowed(client_ip, networks(allowlist)):
            raise AddressNotAllowed(
                f"{owner} may not be used from {client_ip or 'an unknown address'}.",
                hint="Call from an allowed network, or ask your platform team to add this "
                     "address to the allowlist (keys update --ip-allow).")


def check_endpoint(key: KeyRecord, endpoint: Endpoint) -> None:
    if key.endpoints is not None and endpoint.value not in key.endpoints:
        if endpoint is Endpoint.COUNT_TOKENS and Endpoint.MESSAGES.value in key.endpoints:
            return  # counting a Messages request's tokens is part of "messages"
        raise EndpointNotAllowed(
            f"API key {key.id} ({key.name}) may not call {endpoint.value}.",
            hint=f"It may call: {', '.join(key.endpoints) or 'nothing'}.",
        )


def model_allowed(key: KeyRecord, model: str) -> bool:
    if key.models is None:
        return True
    return any(model == allowed or fnmatch.fnmatchcase(model, allowed) for allowed in key.models)


def check_model(key: KeyRecord, model: str) -> None:
    if not model_allowed(key, model):
        raise ModelNotAllowed(
            f"API key {key.id} ({key.name}) may not use model {model!r}.",
            param="model",
            hint=f"Models this key may use: {', '.join(key.models or ())}.",
        )


def output_cap(key: KeyRecord, token: TokenClaims | None) -> int | None:
    """The most a request may ask to generate: the key's cap, or a token's if narrower. The key
    is read as it is now, so a key narrowed after the token was minted narrows the token too."""
    caps = [cap for cap in (key.max_tokens, token.max_tokens if token else None) if cap]
    return min(caps) if caps else None


def check_max_tokens(requested: int | None, param: str | None, cap: int | None) -> None:
    """`requested` (the largest output field the request sets, `param`) against `cap`."""
    if cap is not None and requested is not None and requested > cap:
        raise MaxTokensExceeded(
            f"{param}={requested} is above this key's cap of {cap}.",
            param=param,
            hint=f"Ask for at most {cap} tokens.",
        )


def token_model_allowed(claims: TokenClaims, model: str) -> bool:
    return claims.models is None or any(
        model == allowed or fnmatch.fnmatchcase(model, allowed) for allowed in claims.models)


def check_token_model(claims: TokenClaims, model: str) -> None:
    if not token_model_allowed(claims, model):
        raise ModelNotAllowed(
            f"This token may not use model {model!r}.", param="model",
            hint=f"Models this token may use: {', '.join(claims.models or ())}.")
