"""POST /v1/keystead/tokens: a backend mints a short-lived token with its own key (tokens.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from keystead.errors import EndpointNotAllowed, InvalidField, InvalidJSON
from keystead.pipeline.context import RequestContext
from keystead.pipeline.parse import read_body
from keystead.server.answers import JSON, ZERO_COST

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["mint_token"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]



async def mint_token(rt: Runtime, ctx: RequestContext, receive: Receive, send: Send,
                     scope: dict[str, Any] | None = None) -> None:
    """POST /v1/keystead/tokens: a backend holding a key mints a short-lived token for a
    browser or a job. A token cannot mint tokens."""
    key = ctx.key
    assert key is not None
    if ctx.token is not None:
        raise EndpointNotAllowed("A token cannot mint tokens.",
                                 hint="Mint from your backend, with the key itself.")
    body = await read_body(receive, 64 * 1024, scope=scope)
    try:
        request = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidJSON("The body is not JSON.", hint='Send e.g. {"ttl": "15m"}.') \
            from None
    if not isinstance(request, dict):
        raise InvalidJSON("The body must be a JSON object.")
    unknown = set(request) - {"ttl", "models", "rpm", "tpm", "max_tokens", "user"}
    if unknown:
        raise InvalidField(f"Unknown field(s): {', '.join(sorted(unknown))}.",
                           param=sorted(unknown)[0],
                           hint="Fields: ttl, models, rpm, tpm, max_tokens, user.")
    from keystead.control.tokens import TokenService  # the control plane, loaded on use

    try:
        minted = TokenService(rt).mint(key, **request)
    except TypeError:
        raise InvalidField("A field has the wrong type.",
                           hint="ttl and user are strings, models a list of strings, "
                                "rpm, tpm and max_tokens integers.") from None
    ctx.status = 201
    document = orjson.dumps(minted.as_dict())
    await send({"type": "http.response.start", "status": 201,
                "headers": [JSON, (b"content-length", str(len(document)).encode()),
                            (b"x-request-id", ctx.request_id.encode()), ZERO_COST,
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": document})
