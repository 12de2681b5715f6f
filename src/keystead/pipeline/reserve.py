"""Reserve: what a request holds against its limits before the provider is called.

Its rate limits are charged with its estimated tokens (the prompt at about 4 bytes per token,
plus what it may generate, times `n`), and its budgets reserve its worst case: the prompt's
upper bound (a token covers at least one byte) plus everything it may generate, at the price of
the dearest deployment that may serve it. Both are settled to the real usage when it ends
(pipeline/settle.py, pipeline/limits.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from keystead.errors import RateLimited
from keystead.pipeline.context import RequestContext
from keystead.pipeline.limits import Limiter, Ticket
from keystead.pipeline.limits import Scope as LimitScope
from keystead.pipeline.request_id import new_request_id
from keystead.pipeline.settle import budget_worst_cost, prompt_tokens_bounds
from keystead.providers.base import Endpoint

if TYPE_CHECKING:
    from keystead.live import Live
    from keystead.routing.table import Deployment

__all__ = ["reserve"]

_ZERO = Decimal(0)


async def reserve(limiter: Limiter, live: Live, ctx: RequestContext, scopes: list[LimitScope],
                  max_output: int | None, deployments: list[Deployment]) -> Ticket:
    """Charge rate limits and reserve budgets, with the request's estimated and worst-case
    tokens (prompt bounded by its size, plus what it may generate)."""
    try:
        return await _reserve(limiter, live, ctx, scopes, max_output, deployments)
    except RateLimited as refusal:
        ctx.refused_scope = refusal.scope_kind  # which scope refused (metrics)
        raise


async def _reserve(limiter: Limiter, live: Live, ctx: RequestContext, scopes: list[LimitScope],
                   max_output: int | None, deployments: list[Deployment]) -> Ticket:
    # The counters key holds by an id of ours: a client's x-request-id may repeat, and two
    # requests sharing one hold would share one budget reservation.
    hold_id = new_request_id()
    if not limiter.needs_tokens(scopes) or ctx.endpoint is Endpoint.COUNT_TOKENS:
        return await limiter.admit(hold_id, scopes, 0, _ZERO)  # (counting tokens is free)
    estimate, bound = prompt_tokens_bounds(ctx.body)
    limits = live.config.limits
    if ctx.endpoint is Endpoint.EMBEDDINGS:
        output = 0
    else:
        output = max_output if max_output is not None else limits.default_max_tokens
        output *= max(1, getattr(ctx.view, "n", None) or 1)
    # A route may be served by any of its deployments: reserve for the dearest one (one
    # without a price is refused under a budget, unless limits.unpriced_models allows it).
    worst = budget_worst_cost(ctx, live.prices, bound, output, deployments,
                              limits.unpriced_models) \
        if limiter.has_budget(scopes) else _ZERO
    return await limiter.admit(hold_id, scopes, estimate + output, worst)
