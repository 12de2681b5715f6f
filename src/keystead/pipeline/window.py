"""Whether a request fits a deployment's context window: what it needs of one (its prompt plus
the output it asks for), so that the router skips deployments too small for it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from keystead.pipeline.context import RequestContext
from keystead.providers.base import Endpoint
from keystead.usage.estimate import json_value

if TYPE_CHECKING:
    from keystead.routing.table import Route

__all__ = ["context_tokens"]

log = logging.getLogger("keystead.dataplane")


async def context_tokens(ctx: RequestContext, route: Route, estimate: int,
                         requested: int | None) -> int:
    """What the request needs of a context window; 0: no pre-check. Counted with the offline
    tokenizer, off the event loop, only when the byte estimate comes near the route's smallest
    window: an estimate alone must not send a request to a dearer model. (The only caller of
    the tokenizer on a serving gateway: its tables, ~76 MB, load on the first such prompt.)"""
    smallest = route.smallest_window()
    if smallest is None or estimate < smallest // 2 or ctx.endpoint is not Endpoint.CHAT:
        return 0
    view = ctx.view
    try:
        prompt = await asyncio.to_thread(
            _count_prompt, ctx.upstream_model or ctx.model or "",
            view.messages, view.tools)  # type: ignore[attr-defined]
    except Exception:  # a count that fails must not fail the request: no pre-check
        log.exception("counting the prompt of request %s failed", ctx.request_id)
        return 0
    return prompt + (requested or 0)


def _count_prompt(model: str, messages: object, tools: object) -> int:
    from keystead.usage.tokens import count_chat_prompt

    return count_chat_prompt(json_value(messages), model,  # type: ignore[arg-type]
                             json_value(tools))  # type: ignore[arg-type]
