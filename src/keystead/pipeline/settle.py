"""Settle: price the request, queue its ledger record, write its log line.

Runs for every request, whatever its outcome, after the response went out (or failed).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import orjson

from keystead.errors import PriceUnknown
from keystead.logs import log_request
from keystead.pipeline.context import RequestContext
from keystead.pipeline.messages import estimate as estimate_messages
from keystead.pipeline.validate import one_line
from keystead.providers.base import Endpoint, Provider
from keystead.state.records import UsageRecord
from keystead.usage.estimate import (
    estimate_chat,
    estimate_embeddings,
    estimate_responses,
    streamed_text,
)
from keystead.usage.extract import usage_from_body
from keystead.usage.ledger import LedgerWriter
from keystead.usage.prices import Cost, PriceBook, TokenUsage

if TYPE_CHECKING:
    from keystead.routing.table import Deployment

__all__ = ["budget_worst_cost", "count_discarded", "estimate_usage", "price",
           "prompt_tokens_bounds", "settle"]

# Tokens an image may cost (a high-detail image of gpt-4o's largest tiling is ~1,500).
_IMAGE_TOKENS = 1600
# The field that carries an image, in chat ({"image_url": {...}}) and Responses input items.
_IMAGE_FIELD = re.compile(rb'"image_url"\s*:')

log = logging.getLogger("keystead.settle")


async def estimate_usage(ctx: RequestContext, response_body: bytes | None) -> None:
    """Count tokens offline when the provider reported none (off the event loop: it is CPU)."""
    if ctx.usage is not None or ctx.provider is None or ctx.view is None:
        return
    model = ctx.upstream_model or ctx.model or ""
    view = ctx.view
    if ctx.endpoint is Endpoint.MESSAGES or ctx.endpoint is Endpoint.COUNT_TOKENS:
        if ctx.endpoint is Endpoint.COUNT_TOKENS:
            return  # counting tokens is free
        try:
            ctx.usage = await asyncio.to_thread(estimate_messages, model, view, response_body,
                                                ctx.completion_text, None)
        except Exception:  # counting must never lose the record
            log.exception("token estimate failed for request %s", ctx.request_id)
            return
        ctx.usage_estimated = True
        return
    streamed = streamed_text(ctx.completion_text) if ctx.completion_text is not None else None
    try:
        if ctx.endpoint is Endpoint.CHAT:
            usage = await asyncio.to_thread(
                estimate_chat, model, view.messages, view.tools,  # type: ignore[attr-defined]
                response_body, streamed)
        elif ctx.endpoint is Endpoint.EMBEDDINGS:
            usage = await asyncio.to_thread(estimate_embeddings, model,
                                            view.input)  # type: ignore[attr-defined]
        else:
            usage = await asyncio.to_thread(estimate_responses, model,
                                            view.input, streamed)  # type: ignore[attr-defined]
    except Exception:  # counting must never lose the record
        log.exception("token estimate failed for request %s", ctx.request_id)
        return
    ctx.usage = usage
    ctx.usage_estimated = True


def prompt_tokens_bounds(body: bytes) -> tuple[int, int]:
    """(estimate, upper bound) of a request's prompt tokens, from its size alone.

    No tokenizer on the request path: loading one costs a second and ~70 MB, and it would be
    wrong for non-OpenAI models anyway. Every token of a byte-level BPE or SentencePiece
    tokenizer covers at least one byte, and a message's JSON framing is longer than its
    template tokens, so the body's length bounds the prompt from above (budgets reserve it).
    The estimate is OpenAI's own rule for rate limits, about 4 bytes per token (token limits
    charge it). Images sent by URL are few bytes but many tokens: each adds an allowance.
    """
    allowance = len(_IMAGE_FIELD.findall(body)) * _IMAGE_TOKENS
    return -(-len(body) // 4) + allowance, len(body) + allowance


def _worst(ctx: RequestContext, prices: PriceBook, prompt_tokens: int, output_tokens: int,
           provider: Provider, model: str) -> Cost:
    """The most this request can cost on `provider`'s `model`: its whole prompt and every
    token it may generate (priced as the asked-for model when the served one has no price)."""
    usage = TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=output_tokens)
    cost = prices.cost(provider.type, model, usage)
    if not cost.known and ctx.model and ctx.model != model:
        cost = prices.cost(provider.type, ctx.model, usage)
    return cost


def budget_worst_cost(ctx: RequestContext, prices: PriceBook, prompt_tokens: int,
                      output_tokens: int, deployments: Sequence[Deployment],
                      unpriced: Literal["refuse", "allow"]) -> Decimal:
    """What a budget reserves for a request any of `deployments` may serve: the dearest one's
    worst case. A deployment whose model has no known price would cost the budget nothing, so
    it is refused before the call (PriceUnknown) unless `unpriced` (limits.unpriced_models)
    allows it, at a cost of 0."""
    worst = Decimal(0)
    for deployment in deployments:
        cost = _worst(ctx, prices, prompt_tokens, output_tokens, deployment.provider,
                      deployment.model)
        if not cost.known and unpriced != "allow":
            raise PriceUnknown(
                f"Model {deployment.model!r} of provider {deployment.provider.name} has no "
                "known price, and this request is under a budget: what it costs could not be "
                "counted against it.", param="model",
                hint="Use a model with a price, or ask your platform team to add this one to "
                     "`prices:` in keystead.yaml (docs/configuration.md).")
        worst = max(worst, cost.usd)
    return worst


def _cost(ctx: RequestContext, prices: PriceBook, usage: TokenUsage) -> Cost:
    """`usage` at the served model's price, else (a renamed deployment) the asked-for one's."""
    assert ctx.provider is not None
    cost = prices.cost(ctx.provider.type, ctx.upstream_model or ctx.model or "", usage)
    if not cost.known and ctx.upstream_model and ctx.upstream_model != ctx.model and ctx.model:
        cost = prices.cost(ctx.provider.type, ctx.model, usage)
    return cost


def price(ctx: RequestContext, prices: PriceBook) -> None:
    """Set the request's cost from its usage; a no-op when this usage was priced already."""
    if ctx.usage is None or ctx.provider is None or ctx.priced_usage is ctx.usage:
        return
    ctx.priced_usage = ctx.usage
    cost = _cost(ctx, prices, ctx.usage)
    ctx.cost = cost.usd
    ctx.cost_known = cost.known


def count_discarded(ctx: RequestContext, prices: PriceBook, deployment: Deployment,
                    body: bytes) -> None:
    """An answer the provider billed that the client will not get (it broke its schema): its
    tokens and cost still count."""
    usage, _model = usage_from_body(body)
    if usage is None:
        return
    cost = prices.cost(deployment.provider.type, deployment.model, usage)
    ctx.discarded_cost += cost.usd
    before = ctx.discarded_usage or TokenUsage()
    ctx.discarded_usage = TokenUsage(before.prompt_tokens + usage.prompt_tokens,
                                     before.completion_tokens + usage.completion_tokens,
                                     before.cached_tokens + usage.cached_tokens)


def _clip(text: str | None, size: int) -> str | None:
    """Text from a client or a provider, fit for its column: cut to `size`, control characters
    replaced (PostgreSQL refuses NUL in text; a log line should not carry CR/LF)."""
    return None if text is None else one_line(text, size)


def settle(ctx: RequestContext, ledger: LedgerWriter, log_requests: bool) -> UsageRecord:
    """Queue the request's ledger record (and its log line); returns the record."""
    key = ctx.key
    usage = ctx.usage
    extra = ctx.discarded_usage
    if extra is not None:  # answers billed but replaced (schema repair / fallback) count too
        base = usage or TokenUsage()
        usage = TokenUsage(base.prompt_tokens + extra.prompt_tokens,
                           base.completion_tokens + extra.completion_tokens,
                           base.cached_tokens + extra.cached_tokens)
    record = UsageRecord(
        request_id=ctx.request_id, ts=ctx.ts, endpoint=ctx.endpoint.value, status=ctx.status,
        key_id=key.id if key else ctx.claimed_key_id, key_name=key.name if key else None,
        team=key.team if key else None, env=key.env if key else None, feature=ctx.feature,
        # Client-chosen text is clipped to its column: PostgreSQL refuses what is longer.
        route=_clip(ctx.route, 128), model_requested=_clip(ctx.model, 256),
        model_served=_clip(ctx.upstream_model, 256),
        provider=ctx.provider.name if ctx.provider else None,  # None: the gateway answered
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        cost_usd=ctx.cost + ctx.discarded_cost, latency_ms=round(ctx.elapsed_ms(), 3),
        ttft_ms=round(ctx.ttft, 3) if ctx.ttft is not None else None,
        error_code=ctx.error_code, stream=ctx.stream, client_ip=_clip(ctx.client_ip, 64),
        user_agent=ctx.user_agent, usage_estimated=ctx.usage_estimated,
        attempts=min(ctx.attempts, 32767), fallback=ctx.fallback, cache=ctx.cache,
        saved_usd=ctx.saved_cost, schema_valid=ctx.schema_valid, degraded=ctx.degraded,
    )
    ledger.record(record)
    if log_requests:
        log_request(orjson.dumps({
            "ts": record.ts, "level": "info" if record.status < 500 else "error",
            "event": "request", "request_id": record.request_id, "endpoint": record.endpoint,
            "status": record.status, "error_code": record.error_code, "key_id": record.key_id,
            "key_name": record.key_name, "team": record.team, "env": record.env,
            "feature": record.feature, "model": record.model_requested,
            "model_served": record.model_served, "provider": record.provider,
            "stream": record.stream, "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cached_tokens": record.cached_tokens, "cost_usd": str(record.cost_usd),
            "cost_known": ctx.cost_known, "usage_estimated": record.usage_estimated,
            "latency_ms": record.latency_ms, "ttft_ms": record.ttft_ms,
            "client_ip": record.client_ip,
            "token_id": ctx.token.token_id if ctx.token else None,
            "user": ctx.token.user if ctx.token else None,
            "guard": list(ctx.guard) if ctx.guard else None,
            "route": record.route,
            "deployment": ctx.deployment.id if ctx.deployment else None,
            "attempts": record.attempts, "fallback": record.fallback, "cache": record.cache,
            "schema_valid": record.schema_valid, "degraded": record.degraded,
        }))
    return record
