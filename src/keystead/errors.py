"""Every failure a client can see, as a small class tree.

    GatewayError                    (500 api_error)
    ├── BadRequest                  (400 invalid_request_error)
    │   ├── InvalidJSON             code=invalid_json
    │   ├── InvalidField            code=invalid_value / missing_required_parameter /
    │   │                               duplicate_field / invalid_model_name
    │   ├── InvalidHeader           code=invalid_header
    │   ├── BodyTooLarge            (413) code=request_too_large
    │   ├── RequestTimeout          (408) code=request_timeout
    │   ├── MaxTokensExceeded       code=max_tokens_exceeded
    │   └── ConfigInvalid           code=config_invalid (POST /admin/reload)
    ├── AuthError                   (401 authentication_error)
    │   ├── MissingKey              code=missing_api_key
    │   ├── MalformedKey            code=invalid_api_key
    │   ├── UnknownKey              code=invalid_api_key
    │   ├── RevokedKey              code=key_revoked
    │   ├── DisabledKey             code=key_disabled
    │   ├── ExpiredKey              code=key_expired
    │   └── RotatedKey              code=key_rotated
    ├── PermissionDenied            (403 permission_error)
    │   ├── ModelNotAllowed         code=model_not_allowed
    │   ├── EndpointNotAllowed      code=endpoint_not_allowed
    │   ├── AddressNotAllowed       code=ip_not_allowed
    │   ├── SecretRefNotAllowed     code=secret_ref_not_allowed / keystead_secret_ref
    │   └── PriceUnknown            code=price_unknown
    ├── NotFound                    (404 invalid_request_error)
    │   ├── ModelNotFound           code=model_not_found
    │   └── RouteNotFound           code=unknown_url
    ├── MethodNotAllowed            (405)
    ├── RateLimited                 (429 rate_limit_exceeded) code=rate_limit_exceeded /
    │                                   concurrency_limit_exceeded
    │   └── BudgetExceeded          (429 insufficient_quota) code=budget_exceeded
    ├── UpstreamError               (502 upstream_error)
    │   ├── UpstreamUnreachable     code=upstream_unreachable
    │   └── UpstreamTimeout         (504) code=upstream_timeout
    └── Unavailable                 (503) code=shutting_down
        └── LimitsUnavailable       code=limits_unavailable

Each class carries its HTTP status, OpenAI `type` and `code`, and the log level. `render` is the
one place that builds the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`;
`render_anthropic` builds Anthropic's (`{"type": "error", "error": {"type", "message"}}`, for
the passed-through `/v1/messages`), with the same status. Messages never contain a secret:
callers pass ids and names, never key text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import orjson

__all__ = [
    "AddressNotAllowed",
    "AuthError",
    "BadRequest",
    "BodyTooLarge",
    "BudgetExceeded",
    "ConfigInvalid",
    "DisabledKey",
    "EndpointNotAllowed",
    "ExpiredKey",
    "GatewayError",
    "InvalidField",
    "InvalidHeader",
    "InvalidJSON",
    "LimitsUnavailable",
    "MalformedKey",
    "MaxTokensExceeded",
    "MethodNotAllowed",
    "MissingKey",
    "ModelNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PermissionDenied",
    "PriceUnknown",
    "RateLimited",
    "RequestTimeout",
    "RevokedKey",
    "RotatedKey",
    "RouteNotFound",
    "RouteUnavailable",
    "SecretRefNotAllowed",
    "Unavailable",
    "UnknownKey",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "anthropic_error_type",
    "render",
    "render_anthropic",
]


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code = "internal_error"
    level = logging.ERROR

    def __init__(self, message: str, *, param: str | None = None, hint: str | None = None):
        self.message = message if hint is None else f"{message} {hint}"
        self.param = param
        super().__init__(self.message)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return []


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    level = logging.INFO


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidField(BadRequest):
    code = "invalid_value"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 hint: str | None = None):
        super().__init__(message, param=param, hint=hint)
        if code is not None:
            self.code = code


class InvalidHeader(BadRequest):
    code = "invalid_header"


class BodyTooLarge(BadRequest):
    status = 413
    code = "request_too_large"


class RequestTimeout(BadRequest):
    """The client did not send its whole body within server.body_timeout_s."""

    status = 408
    code = "request_timeout"


class MaxTokensExceeded(BadRequest):
    code = "max_tokens_exceeded"


class ConfigInvalid(BadRequest):
    """A reload refused the gateway's config file; the running config stays."""

    code = "config_invalid"


class AuthError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    level = logging.WARNING
    # The key the refused text named, when the key table knows it (revoked, expired, a wrong
    # secret): recorded on the 401's ledger row for the auth_failures alert, never trusted.
    key_id: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b'Bearer realm="keystead"')]


class MissingKey(AuthError):
    code = "missing_api_key"


class MalformedKey(AuthError):
    code = "invalid_api_key"


class UnknownKey(AuthError):
    code = "invalid_api_key"


class RevokedKey(AuthError):
    code = "key_revoked"


class DisabledKey(AuthError):
    code = "key_disabled"


class ExpiredKey(AuthError):
    code = "key_expired"


class RotatedKey(AuthError):
    code = "key_rotated"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"
    level = logging.WARNING


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class EndpointNotAllowed(PermissionDenied):
    code = "endpoint_not_allowed"


class AddressNotAllowed(PermissionDenied):
    code = "ip_not_allowed"


class SecretRefNotAllowed(PermissionDenied):
    """A provider key reference this face may not create (admin.secret_refs), or one naming
    keystead's own secrets (`keystead_secret_ref`: nothing allows it)."""

    code = "secret_ref_not_allowed"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 hint: str | None = None):
        super().__init__(message, param=param, hint=hint)
        if code is not None:
            self.code = code


class PriceUnknown(PermissionDenied):
    """Under a budget, a model without a known price: its cost could not be counted."""

    code = "price_unknown"


class RateLimited(GatewayError):
    """429. Carries Retry-After and the x-ratelimit-* headers the SDKs read."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"
    level = logging.INFO
    scope_kind: str | None = None  # the limit's scope (key, team, env, token), for metrics

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None,
                 retry_after_s: float | None = None, retry: bool = True,
                 headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code
        self._headers = list(headers or ())
        if retry_after_s is not None:
            self._headers.append((b"retry-after", str(max(1, math.ceil(retry_after_s))).encode()))
            self._headers.append((b"retry-after-ms",
                                  str(max(1, math.ceil(retry_after_s * 1000))).encode()))
        if not retry:
            # The OpenAI SDKs retry 429s by themselves; this header tells them a retry is futile.
            self._headers.append((b"x-should-retry", b"false"))

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers


class BudgetExceeded(RateLimited):
    type = "insufficient_quota"
    code = "budget_exceeded"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"
    level = logging.INFO


class ModelNotFound(NotFound):
    code = "model_not_found"


class RouteNotFound(NotFound):
    code = "unknown_url"


class MethodNotAllowed(GatewayError):
    """`allow`: every method the path serves, for the `Allow` header a 405 must carry
    (RFC 9110, 15.5.6)."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"
    level = logging.INFO

    def __init__(self, message: str, *, allow: Sequence[str] = (), param: str | None = None,
                 hint: str | None = None):
        super().__init__(message, param=param, hint=hint)
        self.allow = tuple(allow)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", ", ".join(self.allow).encode("ascii"))] if self.allow else []


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    level = logging.ERROR


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class Unavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "unavailable"
    level = logging.WARNING


class LimitsUnavailable(Unavailable):
    code = "limits_unavailable"
    level = logging.ERROR

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"1")]  # the gateway probes Redis every second


class RouteUnavailable(Unavailable):
    """Every deployment of a route (and of its fallbacks) is cooling down or behind an open
    circuit breaker: nothing was even tried."""

    code = "route_unavailable"
    level = logging.WARNING

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"1")]  # breakers are re-read every second


def render(error: GatewayError) -> bytes:
    """The OpenAI error envelope for `error`, as JSON bytes."""
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )


# Anthropic's error types by HTTP status (https://docs.claude.com/en/api/errors).
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    402: "billing_error", 403: "permission_error", 404: "not_found_error",
                    408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error",
                    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def anthropic_error_type(status: int) -> str:
    """Anthropic's error `type` for an HTTP status."""
    found = _ANTHROPIC_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def render_anthropic(error: GatewayError, request_id: str | None = None) -> bytes:
    """Anthropic's error envelope for `error`, as JSON bytes: the status keystead gives it
    decides the type (what Anthropic's SDKs read); keystead's own `code` rides along, as the
    `request_id` Anthropic puts in its errors carries keystead's."""
    document: dict[str, object] = {"type": "error", "error": {
        "type": anthropic_error_type(error.status), "message": error.message,
        "code": error.code}}
    if request_id is not None:
        document["request_id"] = request_id
    return orjson.dumps(document)
