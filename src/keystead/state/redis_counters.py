"""Counters in Redis, shared by every replica: the same semantics as `MemoryCounters`.

Each call is one Lua script (EVALSHA), so an admit is atomic across replicas. On the request path
admits and settlements are gathered (`redis_batch.Coalescer`): those that come up while a call is
on its way go together in the next one, one script call applying each in turn, sent on a
connection of their own with the command packed by hiredis; so under load a round trip serves
many requests, and each still waits for its own reply.

Time is Redis server time (`TIME`) so replicas with skewed clocks agree; a `clock` can be
injected instead (tests step a fake clock, and then the same contract tests run on both backends).
Floats travel as `%.17g`/`repr` text, which round-trips doubles exactly, so the GCRA maths in
Lua is bit-for-bit the maths of `gcra()`; the readings are then computed in Python by `gcra()`
itself from the state the script saw.

Key layout, everything under `prefix` (default "keystead:"):

    {prefix}rate:{name}            STRING  the rule's theoretical arrival time (tat, seconds)
                                           TTL: until tat (an expired tat means a full burst)
    {prefix}pool:{name}:total      HASH    used (settled total), resets_at; budgets only.
                                           Missing = unseeded. TTL: resets_at + 1 day
    {prefix}pool:{name}:lease      ZSET    request id -> lease deadline
    {prefix}pool:{name}:held       HASH    request id -> amount held
    {prefix}pool:{name}:reserved   STRING  sum of the amounts held
    {prefix}settled:{request id}   STRING  a settlement asked to apply once was applied
                                           TTL: SETTLED_MEMORY_S
    {prefix}epoch                  HASH    id, open_at: the data's generation (Counters.epoch)
                                           TTL: a day, renewed by every replica every second
    {prefix}epoch:joining          ZSET    replica -> deadline: noticed it, not joined yet

Lease, held and reserved are a pool's in-flight state: they share a TTL that outlives every
lease in them (by up to one lease, so that most admits need not extend it), so a pool whose
replicas all died disappears by itself; and they are deleted as soon as the pool has no holder.
The period of a budget ends at its stored resets_at: the next admit drops the pool, the TTL only
collects what nobody touches again. The scripts are in `redis_lua.py`. For Redis Cluster, put a
hash tag in the prefix ("{keystead}:") so that all of a call's keys share a slot. Needs Redis >= 5
(scripts replicated by effects, so `TIME` may precede writes).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    InvalidResponse,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keystead.state.counters import (
    BREAKER_MEMORY_S,
    SETTLED_MEMORY_S,
    Admission,
    CountersUnavailable,
    Epoch,
    Hold,
    PoolReading,
    Rate,
    RateReading,
    check_admit,
    check_settle,
    gcra,
)
from keystead.state.redis_batch import Coalescer, Operation
from keystead.state.redis_lua import BATCH, EPOCH, READ, REJOIN, RENEW, SEED, TRIP

__all__ = ["RedisCounters"]

_T = TypeVar("_T")

# Errors that mean "Redis cannot serve us now", as opposed to a bug in a script.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError, OutOfMemoryError,
    ClusterDownError, TryAgainError, NoPermissionError,
    InvalidResponse,  # what answers is not Redis (a proxy's error page, the wrong port)
)
_SUFFIXES = (":total", ":lease", ":held", ":reserved")
_BATCH = 500  # pools or leases per script call outside the request path


def _pack(parts: tuple[str | int | bytes, ...]) -> bytes:
    """A command in RESP, packed in C (redis-py packs in Python, a few microseconds per part)."""
    packed: bytes = hiredis.pack_command(parts)  # type: ignore[arg-type]  # (stub: one part)
    return packed


def _op_error(exc: ResponseError) -> Exception:
    """An error one operation of BATCH met, told as `_do` tells a script's: Redis unable to
    serve now (READONLY, OOM...) is CountersUnavailable, anything else a bug that shows."""
    if isinstance(exc, _UNAVAILABLE):
        unavailable = CountersUnavailable(f"Redis: {exc}")
        unavailable.__cause__ = exc
        return unavailable
    return exc


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class RedisCounters:
    """`Counters` in Redis. Redis errors become `CountersUnavailable`; the client reconnects by
    itself on the next call once Redis is back."""

    def __init__(self, url: str, prefix: str = "keystead:", *, timeout_s: float = 0.5,
                 connect_timeout_s: float = 1.0, max_connections: int = 64,
                 clock: Callable[[], float] | None = None):
        self._prefix = prefix
        self._rate_prefix = prefix + "rate:"
        self._pool_prefix = prefix + "pool:"
        self._clock = clock
        # redis-py's own retries are off (they would also retry timeouts, doubling the wait);
        # `_do` retries once, on a dropped connection only.
        # A bounded pool that *waits* for a free connection: redis-py's default pool raises
        # "Too many connections" past 100 concurrent calls, which a burst of requests would
        # turn into a false outage (and 503s under fail-closed budgets). Calls take well under a
        # millisecond, so a few dozen connections serve thousands of requests per second.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=max(1.0, 2 * timeout_s),
            socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        # The request path's own connection, used by one call at a time (the coalescer's): no
        # pool to go through. Its timeouts are `_roundtrip`'s, one for the whole call.
        self._timeout_s = timeout_s
        self._conn: AbstractConnection = pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": None})
        self._batch_sha = self._redis.register_script(BATCH).sha
        self._batch = Coalescer(self._send)
        # register_script reloads a script on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
        self._renew = self._redis.register_script(RENEW)
        self._seed = self._redis.register_script(SEED)
        self._read = self._redis.register_script(READ)
        self._trip = self._redis.register_script(TRIP)
        self._epoch = self._redis.register_script(EPOCH)
        self._rejoin = self._redis.register_script(REJOIN)
        self._breaker_prefix = prefix + "breaker:"
        self._settled_prefix = prefix + "settled:"
        self._epoch_keys = [prefix + "epoch", prefix + "epoch:joining"]

    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _pool_keys(self, name: str) -> list[str]:
        base = self._pool_prefix + name
        return [base + suffix for suffix in _SUFFIXES]

    async def _do(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run `call`; Redis out of reach becomes CountersUnavailable.

        A connection that died while idle in the pool (Redis restarted, a proxy or CLIENT KILL
        dropped it) fails the first command sent on it, so that one is tried once more on a
        fresh connection. If the connection died instead after the command reached Redis, the
        command runs twice: a hold is replaced, not doubled, and a settlement the limiter asks
        to apply once is applied once; it beats treating every dropped connection as an outage.
        Timeouts are not retried: that would double the wait.
        """
        try:
            try:
                return await call()
            except RedisConnectionError as exc:
                if type(exc) is not RedisConnectionError:  # loading, auth...: no quick fix
                    raise
                return await call()
        except _UNAVAILABLE as exc:
            if isinstance(exc, RedisTimeoutError):
                # Redis, or the way to it, stalled: the idle connections are as suspect as this
                # one. They connect again when next used, rather than each time out in turn.
                await self._redis.connection_pool.disconnect(inuse_connections=False)
            raise CountersUnavailable(f"Redis: {exc}") from exc
        except ResponseError as exc:
            # An error in one of our scripts is a bug and must show as one; anything else Redis
            # refuses with (BUSY, NOREPLICAS, MISCONF on a full disk, LOADING...) means it cannot
            # count for us now: the limiter's outage policy applies.
            if "script" in str(exc).lower() and not str(exc).startswith("BUSY"):
                raise
            raise CountersUnavailable(f"Redis: {exc}") from exc

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        return await self._do(lambda: script(keys, args))

    async def _send(self, batch: list[Operation]) -> list[Any]:
        """One call of the BATCH script for the coalescer's operations."""
        keys: list[str] = []
        args: list[str | int | bytes] = [self._now(), len(batch)]
        for op in batch:
            keys += op.keys
            args += (op.kind, len(op.keys), len(op.args))
            args += op.args
        packed = _pack(("EVALSHA", self._batch_sha, len(keys), *keys, *args))
        reply: list[Any] = await self._do(lambda: self._evalsha(packed))
        # An operation's own error (met inside the script) is its caller's only.
        return [_op_error(r) if isinstance(r, ResponseError) else r for r in reply]

    async def _evalsha(self, packed: bytes) -> Any:
        try:
            return await self._roundtrip(packed)
        except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load it again
            await self._roundtrip(_pack(("SCRIPT", "LOAD", BATCH)))
            return await self._roundtrip(packed)

    async def _roundtrip(self, packed: bytes) -> Any:
        """Send one packed command on the request path's connection and read its reply, within
        the timeout (a connection is made first if needed, as redis-py's pool would)."""
        conn = self._conn
        if not conn.is_connected:
            conn.socket_timeout = self._timeout_s  # for the handshake's replies
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
            finally:
                conn.socket_timeout = None
        limit = self._timeout_s
        try:
            async with asyncio.timeout(limit):
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
        except (ResponseError, RedisConnectionError):
            raise  # (an error reply leaves the connection in step; redis-py closed a broken one)
        except BaseException as exc:
            # Timed out or cancelled half-way: a late reply would answer the next command.
            await conn.disconnect(nowait=True)
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"Timeout after {limit}s talking to Redis") from None
            raise

    async def admit(self, request_id: str, rates: Sequence[Rate], holds: Sequence[Hold],
                    lease_s: float) -> Admission:
        check_admit(rates, holds)
        keys = [self._rate_prefix + rate.name for rate in rates]
        args: list[str | int] = [repr(float(lease_s)), request_id, len(rates), len(holds)]
        for rate in rates:
            args += (rate.limit, rate.window_s, rate.cost)
        for hold in holds:
            keys += self._pool_keys(hold.name)
            args += (hold.capacity, hold.amount,
                     "" if hold.resets_at is None else repr(float(hold.resets_at)))
        reply = await self._batch.submit(b"a", keys, args)
        code, now = reply[0], float(reply[1])
        if code == 1:
            return Admission(False, unseeded=tuple(holds[i].name for i in reply[2:]))
        tats = reply[2:] if code == 0 else reply[3:] if code == 2 else reply[6:]
        # Readings from the state the script saw, by the very function MemoryCounters uses.
        steps = [gcra(float(tat), now, r.limit, r.window_s, r.cost)
                 for r, tat in zip(rates, tats, strict=True)]
        readings = tuple(RateReading(r.name, r.limit, s[2], s[3])
                         for r, s in zip(rates, steps, strict=True))
        if code == 0:
            return Admission(True, readings)
        if code == 2:
            index = reply[2]
            return Admission(False, readings, refused_by=rates[index].name,
                             retry_after_s=steps[index][4])
        index, used, reserved, holders = reply[2:6]
        return Admission(False, readings, refused_by=holds[index].name,
                         pool=PoolReading(used, reserved, holders))

    async def settle(self, request_id: str, used: Mapping[str, int], adjust: Sequence[Rate],
                     periods: Mapping[str, float] | None = None, *, once: bool = False,
                     ) -> tuple[str, ...]:
        check_settle(used)
        periods = periods or {}
        keys: list[str] = []
        args: list[str | int] = [request_id, len(used), len(adjust), 1 if once else 0,
                                 SETTLED_MEMORY_S * 1000]
        names = list(used)
        for name in names:
            keys += self._pool_keys(name)
            resets_at = periods.get(name)
            args += (used[name], "" if resets_at is None else repr(float(resets_at)))
        for rate in adjust:
            keys.append(self._rate_prefix + rate.name)
            args += (rate.limit, rate.window_s, rate.cost)
        if once:
            keys.append(self._settled_prefix + request_id)
        reply = await self._batch.submit(b"s", keys, args)
        return tuple(names[i] for i in reply[1:]) if reply[0] == 1 else ()

    async def renew(self, leases: Mapping[str, Sequence[str]], lease_s: float) -> None:
        pairs = [(request_id, name) for request_id, names in leases.items() for name in names]
        # Batches keep each script short: Redis serves nobody else while one runs.
        for start in range(0, len(pairs), _BATCH):
            keys: list[str] = []
            args: list[str | int] = [self._now(), repr(float(lease_s))]
            for request_id, name in pairs[start:start + _BATCH]:
                keys += self._pool_keys(name)[1:]
                args.append(request_id)
            await self._call(self._renew, keys, args)

    async def seed(self, name: str, used: int, resets_at: float, epoch: str | None = None,
                   ) -> bool:
        reply = await self._call(self._seed, [self._pool_keys(name)[0], *self._epoch_keys],
                                 [self._now(), used, repr(float(resets_at)),
                                  0 if epoch is None else 1, epoch or ""])
        return bool(reply)

    async def epoch(self, replica: str, known: str, gate_s: float, join_s: float) -> Epoch:
        reply = await self._call(self._epoch, self._epoch_keys, [
            self._now(), replica, known, repr(float(gate_s)), repr(float(join_s)),
            os.urandom(8).hex()])
        return Epoch(reply[0].decode(), reply[1] == 1, float(reply[2]), int(reply[3]))

    async def rejoin(self, replica: str, epoch: str, holds: Mapping[str, Sequence[Hold]],
                     lease_s: float, *, done: bool = True) -> bool:
        pairs = [(request_id, hold) for request_id, taken in holds.items() for hold in taken]
        # Batches keep each script short; the last one (maybe empty) marks the replica joined.
        starts = range(0, len(pairs), _BATCH) if pairs else range(1)
        for start in starts:
            batch = pairs[start:start + _BATCH]
            keys = list(self._epoch_keys)
            last = start + _BATCH >= len(pairs)
            args: list[str | int] = [self._now(), replica, epoch, repr(float(lease_s)),
                                     1 if done and last else 0]
            for request_id, hold in batch:
                keys += self._pool_keys(hold.name)[1:]
                args += (request_id, hold.amount)
            if not await self._call(self._rejoin, keys, args):
                return False
        return True

    async def ping(self) -> None:
        """Through the request path (its connection and script): what admits need works."""
        await self._batch.submit(b"p", (), ())

    def _breaker_keys(self, name: str) -> list[str]:
        base = self._breaker_prefix + name
        return [base + ":failures", base + ":open", base + ":probe"]

    async def trip(self, name: str, threshold: int, window_s: float, cooldown_s: float) -> float:
        reply = await self._call(self._trip, self._breaker_keys(name), [
            self._now(), threshold, repr(float(window_s)), repr(float(cooldown_s)),
            repr(BREAKER_MEMORY_S)])
        return float(reply)

    async def probe(self, name: str, ttl_s: float) -> bool:
        key = self._breaker_keys(name)[2]
        claimed = await self._do(lambda: self._redis.set(
            key, b"1", nx=True, px=max(1, int(ttl_s * 1000))))
        return bool(claimed)

    async def reset(self, name: str) -> None:
        keys = self._breaker_keys(name)
        await self._do(lambda: self._redis.delete(*keys))

    async def breakers(self, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        keys = [self._breaker_keys(name)[1] for name in names]
        values = await self._do(lambda: self._redis.mget(keys))
        return {name: float(value) for name, value in zip(names, values, strict=True)
                if value is not None}

    async def pools(self, prefix: str) -> dict[str, PoolReading]:
        """SCAN walks the whole keyspace: for status pages, never for the request path."""
        ordered = await self._do(lambda: self._pool_names(prefix))
        result: dict[str, PoolReading] = {}
        for first in range(0, len(ordered), _BATCH):
            batch = ordered[first:first + _BATCH]
            keys = [key for name in batch for key in self._pool_keys(name)]
            reply = await self._call(self._read, keys, [self._now()])
            for i, name in enumerate(batch):
                used, reserved, holders = reply[3 * i:3 * i + 3]
                if holders or used:
                    result[name] = PoolReading(used, reserved, holders)
        return result

    async def _pool_names(self, prefix: str) -> list[str]:
        names: set[str] = set()
        start = len(self._pool_prefix)
        async for raw in self._redis.scan_iter(
                match=_glob_escape(self._pool_prefix + prefix) + "*", count=1000):
            key = raw.decode()
            for suffix in _SUFFIXES:
                if key.endswith(suffix):
                    names.add(key[start:-len(suffix)])
                    break
        return sorted(names)

    async def close(self) -> None:
        """Every operation asked for is sent first (settlements on their way are not lost)."""
        await self._batch.drain()
        await self._conn.disconnect()
        await self._redis.aclose(close_connection_pool=True)
