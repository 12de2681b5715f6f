"""Admit: does this key's scope allow this request (P4)? Endpoint, model, max_tokens."""

from __future__ import annotations

import fnmatch

from keystead.errors import EndpointNotAllowed, MaxTokensExceeded, ModelNotAllowed
from keystead.providers.base import Endpoint
from keystead.state.records import KeyRecord

__all__ = ["check_endpoint", "check_max_tokens", "check_model", "model_allowed"]


def check_endpoint(key: KeyRecord, endpoint: Endpoint) -> None:
    if key.endpoints is not None and endpoint.value not in key.endpoints:
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


def check_max_tokens(key: KeyRecord, requested: int | None, param: str) -> None:
    if key.max_tokens is not None and requested is not None and requested > key.max_tokens:
        raise MaxTokensExceeded(
            f"{param}={requested} is above this key's cap of {key.max_tokens}.",
            param=param,
            hint=f"Ask for at most {key.max_tokens} tokens.",
        )
