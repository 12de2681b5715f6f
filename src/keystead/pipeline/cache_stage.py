"""The cache stage of the request line (P17, P19): look up before the call, store after it,
and serve a stored answer (whole or replayed as a stream) on a hit or in degraded mode.

Only routes with `cache:` are cached, and only for keys that allow it: a key with `cache: false`
never reads or writes the cache, and a route whose cache is `opt_in` caches only for keys with
`cache: true`. Answers are kept per tenant (the key's team by default), so one team never sees
another's. A stored answer stays fresh for the route's `ttl`; routes that
may serve cached answers in degraded mode keep it a day longer, for that use only.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import orjson

from keystead.cache import (
    CachedResponse,
    CacheStore,
    CompletionAssembler,
    ResponseAssembler,
    cache_key,
    stream_from_completion,
    stream_from_response,
)
from keystead.config.routing import RouteConfig
from keystead.durations import parse_duration
from keystead.pipeline.context import RequestContext
from keystead.providers.base import Endpoint
from keystead.usage.prices import TokenUsage

__all__ = ["CacheStage", "Lookup", "static_completion"]

log = logging.getLogger("keystead.cache")

STALE_KEEP_S = 86_400.0  # how much longer an answer is kept for degraded mode


class Lookup:
    """What the cache knows about one request: its key and whether it may read and write."""

    __slots__ = ("fresh_s", "keep_s", "key", "read", "write")

    def __init__(self, key: str, fresh_s: float, keep_s: float, read: bool, write: bool):
        self.key = key
        self.fresh_s = fresh_s
        self.keep_s = keep_s
        self.read = read
        self.write = write


class CacheStage:
    def __init__(self, store: CacheStore):
        self.store = store
        self._ttls: dict[str, float] = {}

    def plan(self, ctx: RequestContext, route_name: str, config: RouteConfig | None,
             body: bytes, cap: int | None, cache_control: str | None) -> Lookup | None:
        """The request's cache key, or None when this request is not cached."""
        if config is None or config.cache is None:
            return None
        key = ctx.key
        assert key is not None
        if key.cache is False or (config.cache.opt_in and key.cache is not True):
            return None
        directives = {d.strip().lower() for d in (cache_control or "").split(",")}
        if "no-store" in directives:
            return None
        scope = config.cache.scope
        if scope == "global":
            tenant = "*"
        elif scope == "team" and key.team:
            tenant = "team=" + key.team
        else:
            tenant = "key=" + key.id
        # A key's max_tokens cap changes the answer: it is part of what the key names.
        found = cache_key(ctx.endpoint.value, body,
                          tenant=f"{route_name}|{tenant}|cap={cap or ''}")
        if found is None:
            return None
        fresh = self._ttls.get(config.cache.ttl)
        if fresh is None:
            fresh = self._ttls[config.cache.ttl] = parse_duration(config.cache.ttl)
        keep = fresh + STALE_KEEP_S if config.degraded.serve_cached else fresh
        return Lookup(found, fresh, keep, read="no-cache" not in directives, write=True)

    async def get(self, lookup: Lookup, *, stale: bool = False) -> CachedResponse | None:
        """The stored answer: fresh only, unless `stale` (degraded mode takes any age)."""
        raw = await self.store.get(lookup.key)
        entry = CachedResponse.from_bytes(raw) if raw is not None else None
        if entry is None or (not stale and entry.age_s() > lookup.fresh_s):
            return None
        return entry

    async def put(self, ctx: RequestContext, lookup: Lookup, body: bytes) -> None:
        if ctx.provider is None:
            return
        entry = CachedResponse.build(ctx.endpoint.value, body, model=ctx.upstream_model or "",
                                     provider=ctx.provider.name, cost_usd=ctx.cost,
                                     usage=ctx.usage)
        try:
            await self.store.set(lookup.key, entry.to_bytes(), lookup.keep_s)
        except Exception:  # a cache must never fail a request that already succeeded
            log.exception("storing request %s in the cache failed", ctx.request_id)

    def assembler(self, endpoint: Endpoint) -> CompletionAssembler | ResponseAssembler | None:
        if endpoint is Endpoint.CHAT:
            return CompletionAssembler(max_bytes=self.store.max_entry_bytes)
        if endpoint is Endpoint.RESPONSES:
            return ResponseAssembler(max_bytes=self.store.max_entry_bytes)
        return None


def replay(entry: CachedResponse, include_usage: bool) -> list[bytes]:
    """A stored answer as the SSE events its endpoint streams."""
    if entry.endpoint == Endpoint.RESPONSES.value:
        return stream_from_response(entry.body)
    return stream_from_completion(entry.body, include_usage=include_usage)


def static_completion(model: str, text: str) -> CachedResponse:
    """Degraded mode's configured reply, as a chat.completion that cost nothing."""
    body = orjson.dumps({
        "id": f"chatcmpl-degraded-{int(time.time() * 1000)}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
    return CachedResponse.build(Endpoint.CHAT.value, body, model=model, provider="keystead",
                                cost_usd=Decimal(0), usage=TokenUsage())
