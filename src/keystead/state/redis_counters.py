"""Counters in Redis, shared by every replica: the same semantics as `MemoryCounters`.

Each request-path call is one Lua script (EVALSHA), so an admit is atomic across replicas and costs
one round trip. Time is Redis server time (`TIME`) so replicas with skewed clocks agree; a `clock`
can be injected instead (tests step a fake clock, and then the same contract tests run on both
backends). Floats travel as `%.17g`/`repr` text, which round-trips doubles exactly, so the GCRA
maths in Lua is bit-for-bit the maths of `gcra()`; the readings are then computed in Python by
`gcra()` itself from the state the script saw.

Key layout, everything under `prefix` (default "keystead:"):

    {prefix}rate:{name}            STRING  the rule's theoretical arrival time (tat, seconds)
                                           TTL: until tat (an expired tat means a full burst)
    {prefix}pool:{name}:total      HASH    used (settled total), resets_at; budgets only.
                                           Missing = unseeded. TTL: resets_at + 1 day
    {prefix}pool:{name}:lease      ZSET    request id -> lease deadline
    {prefix}pool:{name}:held       HASH    request id -> amount held
    {prefix}pool:{name}:reserved   STRING  sum of the amounts held

The last three are a pool's in-flight state: they share a TTL that outlives every lease in them
(by up to one lease, so that most admits need not extend it), so a pool whose replicas all died
disappears by itself; and they are deleted as soon as the pool has no holder.
The period of a budget ends at its stored resets_at: the next admit drops the pool, the TTL only
collects what nobody touches again. For Redis Cluster, put a hash tag in the prefix
("{keystead}:") so that all of a call's keys share a slot. Needs Redis >= 5 (scripts replicated
by effects, so `TIME` may precede writes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keystead.state.counters import (
    BREAKER_MEMORY_S,
    Admission,
    CountersUnavailable,
    Hold,
    PoolReading,
    Rate,
    RateReading,
    gcra,
)

__all__ = ["RedisCounters"]

_T = TypeVar("_T")

# Errors that mean "Redis cannot serve us now", as opposed to a bug in a script.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError, OutOfMemoryError,
    ClusterDownError, TryAgainError, NoPermissionError,
)
_SUFFIXES = (":total", ":lease", ":held", ":reserved")
_BATCH = 500  # pools or leases per script call outside the request path

_LUA_COMMON = r"""
local function clock(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return tonumber(arg)
end

local function f17(x) return string.format('%.17g', x) end

-- A rate's key lives exactly as long as its tat is in the future.
local function set_tat(key, tat, now)
  local ms = math.ceil((tat - now) * 1000)
  if ms > 0 then
    redis.call('SET', key, f17(tat), 'PX', string.format('%d', ms))
  else
    redis.call('DEL', key)
  end
end

-- The in-flight keys outlive every lease in them: a lease of `ms` from now extends their TTL
-- when needed, to twice that so that most admits need no more than the PTTL.
local function outlive_lease(lk, hk, rk, ms)
  if redis.call('PTTL', lk) < ms then
    local ttl = string.format('%d', 2 * ms)
    redis.call('PEXPIRE', lk, ttl)
    redis.call('PEXPIRE', hk, ttl)
    redis.call('PEXPIRE', rk, ttl)
  end
end

-- Release the holds whose lease ran out (deadline <= now), in batches small enough to unpack.
local function reclaim(lk, hk, rk, nowstr)
  while true do
    local gone = redis.call('ZRANGEBYSCORE', lk, '-inf', nowstr, 'LIMIT', 0, 500)
    if #gone == 0 then return end
    local freed = 0
    for _, amount in ipairs(redis.call('HMGET', hk, unpack(gone))) do
      if amount then freed = freed + tonumber(amount) end
    end
    redis.call('ZREM', lk, unpack(gone))
    redis.call('HDEL', hk, unpack(gone))
    if redis.call('ZCARD', lk) == 0 then
      redis.call('DEL', lk, hk, rk)
      return
    end
    redis.call('DECRBY', rk, string.format('%d', freed))
  end
end

-- A budget whose period is over is forgotten, holds included (MemoryCounters._pool), after a
-- grace time: a gateway whose clock is behind still names the old period for a little while.
local PERIOD_GRACE = 300
local function period_over(tk, lk, hk, rk, now)
  local resets = redis.call('HGET', tk, 'resets_at')
  if resets and tonumber(resets) + PERIOD_GRACE <= now then
    redis.call('DEL', tk, lk, hk, rk)
    return true
  end
  return false
end
"""

# KEYS: one per rate, then four per hold (total, lease, held, reserved).
# ARGV: now|'', lease_s, request id, #rates, #holds, (limit, window, cost) per rate,
#       (capacity, amount, resets_at|'') per hold.
# Reply: {code, now, ...}: 1 unseeded hold indexes; 2 refusing rate index, tats;
#        3 refusing hold index, used, reserved, holders, tats; 0 admitted, tats (before the charge).
_ADMIT = _LUA_COMMON + r"""
local now = clock(ARGV[1])
local nowstr = f17(now)
local lease_s, rid = tonumber(ARGV[2]), ARGV[3]
local nrates, nholds = tonumber(ARGV[4]), tonumber(ARGV[5])
local h0 = 5 + 3 * nrates

local used, reserved, unseeded = {}, {}, {}
for i = 1, nholds do
  local k = nrates + 4 * (i - 1)
  local tk, lk, hk, rk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  used[i] = 0
  if ARGV[h0 + 3 * i] ~= '' then  -- a budget: it has a settled total and a period
    local total = redis.call('HMGET', tk, 'used', 'resets_at')
    if total[2] and tonumber(total[2]) + PERIOD_GRACE <= now then
      redis.call('DEL', tk, lk, hk, rk)  -- the period is over: forget the pool, holds included
      total[1] = false
    end
    if total[1] then used[i] = tonumber(total[1]) else unseeded[#unseeded + 1] = i - 1 end
  end
  reclaim(lk, hk, rk, nowstr)
  reserved[i] = tonumber(redis.call('GET', rk) or '0')
end
if #unseeded > 0 then return {1, nowstr, unpack(unseeded)} end

local tats, new_tats, refused = {}, {}, 0
local stored = {}
if nrates > 0 then stored = redis.call('MGET', unpack(KEYS, 1, nrates)) end
for j = 1, nrates do
  local tat = stored[j] and tonumber(stored[j]) or 0
  tats[j] = f17(tat)
  local b = 5 + 3 * (j - 1)
  local limit, window, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local interval = window / limit
  local new_tat = math.max(tat, now) + cost * interval
  if new_tat - now <= window + 1e-9 then
    new_tats[j] = new_tat
  elseif refused == 0 then
    refused = j
  end
end
if refused > 0 then return {2, nowstr, refused - 1, unpack(tats)} end

for i = 1, nholds do
  local capacity, amount = tonumber(ARGV[h0 + 3 * i - 2]), tonumber(ARGV[h0 + 3 * i - 1])
  local total = used[i] + reserved[i] + amount
  local fits
  if amount > 0 then fits = total <= capacity else fits = total < capacity end
  if not fits then
    local holders = redis.call('ZCARD', KEYS[nrates + 4 * i - 2])
    return {3, nowstr, i - 1, used[i], reserved[i], holders, unpack(tats)}
  end
end

for j = 1, nrates do set_tat(KEYS[j], new_tats[j], now) end
local deadline, lease_ms = f17(now + lease_s), math.ceil(lease_s * 1000)
for i = 1, nholds do
  local k = nrates + 4 * (i - 1)
  local lk, hk, rk = KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local amount = ARGV[h0 + 3 * i - 1]
  if redis.call('HSETNX', hk, rid, amount) == 0 then  -- the same request again: replace
    redis.call('DECRBY', rk, redis.call('HGET', hk, rid))
    redis.call('HSET', hk, rid, amount)
  end
  redis.call('ZADD', lk, deadline, rid)
  redis.call('INCRBY', rk, amount)
  outlive_lease(lk, hk, rk, lease_ms)
end
return {0, nowstr, unpack(tats)}
"""

# KEYS: four per pool (total, lease, held, reserved), then one per rate to adjust.
# ARGV: now|'', request id, #pools, #rates, used per pool, (limit, window, cost) per rate.
_SETTLE = _LUA_COMMON + r"""
local now = clock(ARGV[1])
local rid, npools, nrates = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, npools do
  local k = 4 * (i - 1)
  local tk, lk, hk, rk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local held = redis.call('HGET', hk, rid)
  if held then  -- absent when the lease was reclaimed: nothing to release twice
    redis.call('ZREM', lk, rid)
    redis.call('HDEL', hk, rid)
    if redis.call('ZCARD', lk) == 0 then
      redis.call('DEL', lk, hk, rk)
    else
      redis.call('DECRBY', rk, held)
    end
  end
  local amount = ARGV[4 + i]
  if amount ~= '0' and redis.call('HEXISTS', tk, 'used') == 1 then
    redis.call('HINCRBY', tk, 'used', amount)
  end
end
for j = 1, nrates do
  local b = 4 + npools + 3 * (j - 1)
  local limit, window, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[4 * npools + j]
  local v = redis.call('GET', key)
  local tat = v and tonumber(v) or 0
  set_tat(key, math.max(math.max(tat, now) + cost * window / limit, now), now)
end
return 0
"""

# KEYS: three per lease (lease, held, reserved). ARGV: now|'', lease_s, request id per lease.
_RENEW = _LUA_COMMON + r"""
local now = clock(ARGV[1])
local deadline = f17(now + tonumber(ARGV[2]))
local lease_ms = math.ceil(tonumber(ARGV[2]) * 1000)
for i = 1, #KEYS / 3 do
  local lk, hk, rk = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local rid = ARGV[2 + i]
  local score = redis.call('ZSCORE', lk, rid)
  if score and tonumber(score) > now then  -- a lease that ran out stays out
    redis.call('ZADD', lk, deadline, rid)
    outlive_lease(lk, hk, rk, lease_ms)
  end
end
return 0
"""

# KEYS: the pool's total. ARGV: now|'', used, resets_at.
_SEED = _LUA_COMMON + r"""
local now = clock(ARGV[1])
if redis.call('HSETNX', KEYS[1], 'used', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'resets_at', ARGV[3])
  local ms = math.ceil((tonumber(ARGV[3]) + 86400 - now) * 1000)
  if ms > 0 then
    redis.call('PEXPIRE', KEYS[1], string.format('%d', ms))
  else
    redis.call('DEL', KEYS[1])
  end
end
return 0
"""

# KEYS: four per pool. ARGV: now|''. Reply: used, reserved, holders per pool (zeros when over).
_READ = _LUA_COMMON + r"""
local now = clock(ARGV[1])
local nowstr = f17(now)
local out = {}
for i = 1, #KEYS / 4 do
  local k, o = 4 * (i - 1), 3 * (i - 1)
  local tk, lk, hk, rk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  out[o + 1], out[o + 2], out[o + 3] = 0, 0, 0
  if not period_over(tk, lk, hk, rk, now) then
    reclaim(lk, hk, rk, nowstr)
    out[o + 1] = tonumber(redis.call('HGET', tk, 'used') or '0')
    out[o + 2] = tonumber(redis.call('GET', rk) or '0')
    out[o + 3] = redis.call('ZCARD', lk)
  end
end
return out
"""


# Breakers: KEYS = failures, open-until, probe. Failures count in a window that starts at the
# first one (a fixed window: close enough for "N failures in 30 s", and one key).
_TRIP = _LUA_COMMON + r"""
local now = clock(ARGV[1])
local probing = redis.call('DEL', KEYS[3])
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(tonumber(ARGV[3]) * 1000)))
end
if failures >= tonumber(ARGV[2]) or probing == 1 then
  local open_until = now + tonumber(ARGV[4])
  redis.call('SET', KEYS[2], string.format('%.6f', open_until), 'PX',
             math.floor((tonumber(ARGV[4]) + tonumber(ARGV[5])) * 1000))
  redis.call('DEL', KEYS[1])
  return string.format('%.6f', open_until)
end
return redis.call('GET', KEYS[2]) or '0'
"""


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
        # register_script reloads a script on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._renew = self._redis.register_script(_RENEW)
        self._seed = self._redis.register_script(_SEED)
        self._read = self._redis.register_script(_READ)
        self._trip = self._redis.register_script(_TRIP)
        self._breaker_prefix = prefix + "breaker:"

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
        command runs twice: as when the limiter replays a settlement, it errs towards counting
        more (a hold is replaced, not doubled), and it beats treating every dropped connection
        as an outage. Timeouts are not retried: that would double the wait.
        """
        try:
            try:
                return await call()
            except RedisConnectionError as exc:
                if type(exc) is not RedisConnectionError:  # loading, auth...: no quick fix
                    raise
                return await call()
        except _UNAVAILABLE as exc:
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

    async def admit(self, request_id: str, rates: Sequence[Rate], holds: Sequence[Hold],
                    lease_s: float) -> Admission:
        keys = [self._rate_prefix + rate.name for rate in rates]
        args: list[str | int] = [self._now(), repr(float(lease_s)), request_id, len(rates),
                                 len(holds)]
        for rate in rates:
            args += (rate.limit, rate.window_s, rate.cost)
        for hold in holds:
            keys += self._pool_keys(hold.name)
            args += (hold.capacity, hold.amount,
                     "" if hold.resets_at is None else repr(float(hold.resets_at)))
        reply = await self._call(self._admit, keys, args)
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

    async def settle(self, request_id: str, used: Mapping[str, int],
                     adjust: Sequence[Rate]) -> None:
        keys: list[str] = []
        args: list[str | int] = [self._now(), request_id, len(used), len(adjust)]
        for name, amount in used.items():
            keys += self._pool_keys(name)
            args.append(amount)
        for rate in adjust:
            keys.append(self._rate_prefix + rate.name)
            args += (rate.limit, rate.window_s, rate.cost)
        await self._call(self._settle, keys, args)

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

    async def seed(self, name: str, used: int, resets_at: float) -> None:
        await self._call(self._seed, [self._pool_keys(name)[0]],
                         [self._now(), used, repr(float(resets_at))])

    async def ping(self) -> None:
        await self._do(self._redis.ping)

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
        await self._redis.aclose(close_connection_pool=True)
