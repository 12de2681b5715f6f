"""`GET /metrics`: the ASGI answer (server/app.py routes the path here).

A disabled endpoint is a 404 (as if it did not exist); with `metrics.token` set, the scrape
must send `Authorization: Bearer <token>` (compared in constant time), else a 401 in OpenAI's
error envelope. The token is read from the running config at each scrape, so a reload
changes it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from keystead.errors import AuthError, GatewayError, MethodNotAllowed, RouteNotFound, render

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["serve_metrics"]

log = logging.getLogger("keystead.metrics")

Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON = (b"content-type", b"application/json")
_BEARER = b"bearer "


async def serve_metrics(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    metrics = runtime.metrics
    if not metrics.enabled:
        await _error(send, RouteNotFound("Unknown route /metrics.",
                                         hint="Metrics are off (metrics.enabled: false)."))
        return
    if scope["method"] not in ("GET", "HEAD"):
        await _error(send, MethodNotAllowed(f"/metrics accepts GET, not {scope['method']}.",
                                            allow=("GET", "HEAD")))
        return
    token = runtime.config.metrics.token
    if token is not None and not _authorized(scope, token.get_secret_value().encode()):
        await _error(send, AuthError("The metrics endpoint needs its bearer token.",
                                     hint="Send Authorization: Bearer <metrics.token>."))
        return
    from keystead.metrics.core import Metrics, exposition_type

    assert isinstance(metrics, Metrics)
    body = await metrics.render()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", exposition_type().encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _authorized(scope: dict[str, Any], expected: bytes) -> bool:
    given = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            given = value
            break
    if given[:len(_BEARER)].lower() != _BEARER:
        return False
    # Constant time in the token's content; the lengths may differ (compare_digest allows it).
    return hmac.compare_digest(given[len(_BEARER):].strip(), expected)


async def _error(send: Send, error: GatewayError) -> None:
    await send({"type": "http.response.start", "status": error.status,
                "headers": [_JSON, *error.headers()]})
    await send({"type": "http.response.body", "body": render(error)})
