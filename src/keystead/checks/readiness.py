"""`GET /readyz`: whether this gateway can serve, and if not, which dependency is down.

    200 {"status": "ready", "checks": {"database": "ok", "redis": "ok", "usage_ledger": "ok",
                                       "config": "ok"}}
    200 {"status": "degraded", ...}  the usage ledger is backlogged, or the last config reload
                                     was refused (the gateway serves on the previous config)
    503 {"status": "unavailable", "checks": {"database": "down: timeout after 0.8 s", ...}}

Every dependency is asked at once and each within `TIMEOUT_S`, so a hung database answers 503
in about a second rather than when the load balancer gives up. An answer is kept for `CACHE_S`
and concurrent probes share the one in flight: a probe storm costs one query a second. A
reason is a short line (the driver's words, clipped, any password in a URL masked): never a
secret.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from keystead.pipeline.validate import one_line
from keystead.state.versions import KEYS_VERSION

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["BACKLOG_DEGRADED", "CACHE_S", "TIMEOUT_S", "Readiness"]

TIMEOUT_S = 0.8
CACHE_S = 1.0
BACKLOG_DEGRADED = 0.5  # of usage.queue_max: past it the ledger is "degraded"
_REASON_CHARS = 160
# user:password@ in a URL, up to the last @ of the word (a password may hold / and a raw @),
# and a libpq DSN's password=...
_PASSWORD = re.compile(r"(//[^/\s:@]*:)\S*@|(password\s*=\s*)(?:'[^']*'|\S+)",
                       re.IGNORECASE)

Answer = tuple[int, bytes]


class Readiness:
    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic):
        self.rt = runtime
        self._clock = clock
        self._cached: tuple[float, Answer] | None = None
        self._pending: asyncio.Future[Answer] | None = None

    async def answer(self) -> Answer:
        """(HTTP status, JSON body), at most CACHE_S old."""
        cached = self._cached
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._probe())
        pending = self._pending
        try:
            # shield: a client that leaves does not cancel the probe the others wait on
            return await asyncio.shield(pending)
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    async def _probe(self) -> Answer:
        checks: dict[str, Callable[[], Awaitable[None]]] = {"database": self._database}
        if self.rt.config.redis.url:
            checks["redis"] = self._redis
        found = dict(zip(checks, await asyncio.gather(*(_bounded(c) for c in checks.values())),
                         strict=True))
        found["usage_ledger"] = self._ledger()
        found["config"] = self._config()
        if any(value.startswith("down") for value in found.values()):
            status, word = 503, "unavailable"
        elif any(value != "ok" for value in found.values()):
            status, word = 200, "degraded"
        else:
            status, word = 200, "ready"
        answer = (status, orjson.dumps({"status": word, "checks": found}))
        self._cached = (self._clock() + CACHE_S, answer)
        return answer

    async def _database(self) -> None:
        await self.rt.store.get_version(KEYS_VERSION)

    async def _redis(self) -> None:
        from keystead.state.redis_counters import RedisCounters  # loaded: Redis is configured

        counters = self.rt.counters
        if isinstance(counters, RedisCounters):
            await counters.ping()

    def _ledger(self) -> str:
        ledger = self.rt.ledger
        limit = self.rt.config.usage.queue_max
        if ledger.queued >= max(1, int(limit * BACKLOG_DEGRADED)):
            return f"degraded: {ledger.queued} usage records waiting to be written"
        return "ok"

    def _config(self) -> str:
        last = self.rt.reloader.last
        if last is not None and not last.ok:
            return "degraded: the last reload was refused; serving the previous config: " \
                + _clip(last.error or "")
        return "ok"


async def _bounded(check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), TIMEOUT_S)
    except TimeoutError:
        return f"down: no answer within {TIMEOUT_S:g} s"
    except Exception as exc:
        return "down: " + _reason(exc)
    return "ok"


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc  # SQLAlchemy's: the driver's
    lines = str(cause).strip().splitlines()
    return _clip(f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__)


def _masked(match: re.Match[str]) -> str:
    return f"{match[1]}***@" if match[1] is not None else f"{match[2]}***"


def _clip(text: str) -> str:
    return one_line(_PASSWORD.sub(_masked, text), _REASON_CHARS)
