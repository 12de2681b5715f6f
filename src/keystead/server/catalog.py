"""GET /v1/models and /v1/models/{id}: what this key may call, in OpenAI's list format.

Routes are listed as models (owned by `keystead`), so the model pickers of chat UIs and agent
frameworks offer `support-default` beside `gpt-4o-mini`. Both are filtered by the key's model
scope and, for a short-lived token, by the token's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from keystead.errors import ModelNotFound
from keystead.pipeline import admit
from keystead.pipeline.context import RequestContext
from keystead.providers.names import is_model_name, shown
from keystead.server.answers import JSON, ZERO_COST

if TYPE_CHECKING:
    from keystead.live import Live

__all__ = ["list_models"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

ROUTE_OWNER = "keystead"


async def list_models(live: Live, ctx: RequestContext, send: Send,
                      model_id: str | None) -> None:
    key = ctx.key
    assert key is not None
    listed = {model: provider.name for model, provider in live.providers.listed_models()}
    for name in live.routes.routes:  # a route's name beats a model of the same name, as in calls
        listed[name] = ROUTE_OWNER
    allowed = [(model, owner) for model, owner in sorted(listed.items())
               if admit.model_allowed(key, model)
               and (ctx.token is None or admit.token_model_allowed(ctx.token, model))]
    if model_id is not None:
        if not is_model_name(model_id):  # a path can carry anything (%00, %0d%0a)
            raise ModelNotFound(f"{shown(model_id)} is not a model name.", param="model",
                                hint="GET /v1/models lists the models and routes it may use.")
        ctx.model = model_id
        match = next(((m, o) for m, o in allowed if m == model_id), None)
        if match is None:
            raise ModelNotFound(f"The model {model_id!r} does not exist or this key may "
                                "not use it.", param="model",
                                hint="GET /v1/models lists the models and routes it may use.")
        document: dict[str, Any] = _model_object(*match)
    else:
        document = {"object": "list", "data": [_model_object(m, o) for m, o in allowed]}
    ctx.status = 200
    body = orjson.dumps(document)
    await send({"type": "http.response.start", "status": 200,
                "headers": [JSON, (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", ctx.request_id.encode()), ZERO_COST]})
    await send({"type": "http.response.body", "body": body})


def _model_object(model: str, owner: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}
