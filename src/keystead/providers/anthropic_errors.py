"""An Anthropic error -> OpenAI's status and error envelope, with the code a client or a router
acts on (`context_length_exceeded`, `model_not_found`, `rate_limit_exceeded`...).

`error_to_openai` reads an error answer's body, `map_error` serves it and the stream's `error`
events, `mapped_status` is the status the client sees (Anthropic's 529 overloaded is not HTTP).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["error_to_openai", "map_error", "mapped_status"]

_CONTEXT_OVERFLOW = re.compile(r"prompt is too long|exceed(s|ed)? (the )?context|context window",
                               re.IGNORECASE)

# Anthropic error type -> (status, OpenAI type, OpenAI code)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request_error": (400, "invalid_request_error", "invalid_request"),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "billing_error": (402, "insufficient_quota", "billing_error"),
    "permission_error": (403, "permission_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    "api_error": (500, "api_error", "server_error"),
    "timeout_error": (504, "api_error", "upstream_timeout"),
    "overloaded_error": (503, "api_error", "overloaded"),
}


def map_error(kind: str | None, message: str, status: int) -> tuple[int, dict[str, Any]]:
    """(OpenAI status, OpenAI error object) for an Anthropic error of `kind`."""
    known = _ERRORS.get(kind or "")
    if known is None:
        new_status = mapped_status(status)
        error_type = "invalid_request_error" if status < 500 else "api_error"
        code = kind or f"upstream_http_{status}"
    else:
        new_status, error_type, code = known
        if kind == "invalid_request_error" and status == 413:
            new_status, code = 413, "request_too_large"
    if code == "invalid_request" and _CONTEXT_OVERFLOW.search(message):
        code = "context_length_exceeded"  # what OpenAI says, and what a router falls back on
    elif kind == "not_found_error" and message.startswith("model:"):
        code = "model_not_found"
    return new_status, {"message": message, "type": error_type, "param": None, "code": code}


def error_to_openai(status: int, body: bytes) -> tuple[int, bytes]:
    """An Anthropic error answer -> (status, OpenAI error envelope)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else ""
    else:
        kind, message = None, ""
    if not message:
        message = f"Anthropic answered HTTP {status}" + ("." if kind is None else f" ({kind}).")
    new_status, mapped = map_error(kind, message, status)
    return new_status, orjson.dumps({"error": mapped})


def mapped_status(status: int) -> int:
    """The status the client sees for an Anthropic status (529 overloaded is not HTTP)."""
    return 503 if status == 529 else status
