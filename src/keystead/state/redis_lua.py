"""The Lua scripts of `RedisCounters`: one call each, atomic across replicas.

Every script starts with `LUA_COMMON` (Redis server time unless the caller passes a clock,
exact float text, lease and period helpers). KEYS and ARGV of each are described above it.
"""

__all__ = ["BATCH", "EPOCH", "READ", "REJOIN", "RENEW", "SEED", "TRIP"]

LUA_COMMON = r"""
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

# The request path: admits and settlements gathered by `RedisCounters` in one event-loop turn,
# in one call. Each operation is applied as its own script would be, in the order sent
# (settlements first), and answers as it would alone; an operation's KEYS and ARGV follow
# those of the one before it.
# KEYS: each operation's keys. ARGV: now|'', #operations, then per operation: its kind ('a'
#       admit, 's' settle, 'p' ping: nothing), its number of keys, its number of arguments,
#       its arguments.
# Reply: one reply per operation; an operation that failed has its error as its reply.
#
# admit: KEYS: one per rate, then four per hold (total, lease, held, reserved).
#   ARGV: lease_s, request id, #rates, #holds, (limit, window, cost) per rate,
#         (capacity, amount, resets_at|'') per hold.
#   Reply: {code, now, ...}: 1 unseeded hold indexes; 2 refusing rate index, tats;
#          3 refusing hold index, used, reserved, holders, tats; 0 admitted, tats (before the
#          charge).
# settle: KEYS: four per pool (total, lease, held, reserved), then one per rate to adjust, then
#         the request's settled marker when `once`.
#   ARGV: request id, #pools, #rates, once (1|0), marker TTL ms,
#         (used, resets_at|'') per pool, (limit, window, cost) per rate.
#   Reply: {0} settled; {1, pool indexes} budgets that lost their settled total within their
#          period (Redis lost its data): nothing changed; {2} settled before (`once`): nothing.
#
# In Lua, an operation's keys are KEYS[kb + 1], ... and its arguments ARGV[ab + 1], ...
BATCH = LUA_COMMON + r"""
local function admit(now, nowstr, kb, ab)
local lease_s, rid = tonumber(ARGV[ab + 1]), ARGV[ab + 2]
local nrates, nholds = tonumber(ARGV[ab + 3]), tonumber(ARGV[ab + 4])
local h0 = ab + 4 + 3 * nrates

local used, reserved, unseeded = {}, {}, {}
for i = 1, nholds do
  local k = kb + nrates + 4 * (i - 1)
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
if nrates > 0 then stored = redis.call('MGET', unpack(KEYS, kb + 1, kb + nrates)) end
for j = 1, nrates do
  local tat = stored[j] and tonumber(stored[j]) or 0
  tats[j] = f17(tat)
  local b = ab + 4 + 3 * (j - 1)
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
    local holders = redis.call('ZCARD', KEYS[kb + nrates + 4 * i - 2])
    return {3, nowstr, i - 1, used[i], reserved[i], holders, unpack(tats)}
  end
end

for j = 1, nrates do set_tat(KEYS[kb + j], new_tats[j], now) end
local deadline, lease_ms = f17(now + lease_s), math.ceil(lease_s * 1000)
for i = 1, nholds do
  local k = kb + nrates + 4 * (i - 1)
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
end

local function settle(now, kb, ab)
local rid, npools, nrates = ARGV[ab + 1], tonumber(ARGV[ab + 2]), tonumber(ARGV[ab + 3])
local lost, counted = {}, {}
for i = 1, npools do
  if ARGV[ab + 4 + 2 * i] ~= '0' then  -- something to add: is there a total to add it to?
    counted[i] = redis.call('HEXISTS', KEYS[kb + 4 * i - 3], 'used') == 1
    local resets = ARGV[ab + 5 + 2 * i]
    if not counted[i] and resets ~= '' and tonumber(resets) + PERIOD_GRACE > now then
      lost[#lost + 1] = i - 1
    end
  end
end
if #lost > 0 then return {1, unpack(lost)} end
if ARGV[ab + 4] == '1' and not redis.call('SET', KEYS[kb + 4 * npools + nrates + 1], '1',
                                          'NX', 'PX', ARGV[ab + 5]) then
  return {2}
end
for i = 1, npools do
  local k = kb + 4 * (i - 1)
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
  if counted[i] then
    redis.call('HINCRBY', tk, 'used', ARGV[ab + 4 + 2 * i])
  end
end
for j = 1, nrates do
  local b = ab + 5 + 2 * npools + 3 * (j - 1)
  local limit, window, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[kb + 4 * npools + j]
  local v = redis.call('GET', key)
  local tat = v and tonumber(v) or 0
  set_tat(key, math.max(math.max(tat, now) + cost * window / limit, now), now)
end
return {0}
end

local function apply(kind, now, nowstr, kb, ab)
  if kind == 'a' then return admit(now, nowstr, kb, ab) end
  if kind == 's' then return settle(now, kb, ab) end
  return 0  -- 'p': a ping of the request path
end

local now = clock(ARGV[1])
local nowstr = f17(now)
local out, kb, ab = {}, 0, 5
for op = 1, tonumber(ARGV[2]) do
  local kind, nkeys, nargs = ARGV[ab - 2], tonumber(ARGV[ab - 1]), tonumber(ARGV[ab])
  -- An error (a key of the wrong type...) is its operation's own reply, as it was with a script
  -- each (what that operation wrote before it stays, as it did then); the others still apply.
  local ok, reply = pcall(apply, kind, now, nowstr, kb, ab)
  if not ok then
    if type(reply) == 'table' then reply = reply.err end
    reply = redis.error_reply(tostring(reply))
  end
  out[op] = reply
  kb, ab = kb + nkeys, ab + nargs + 3
end
return out
"""

# KEYS: three per lease (lease, held, reserved). ARGV: now|'', lease_s, request id per lease.
RENEW = LUA_COMMON + r"""
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

# KEYS: the pool's total, the epoch, the joining replicas.
# ARGV: now|'', used, resets_at, check the epoch (1|0), epoch id.
# Reply: 1 the pool has a settled total now; 0 not this epoch, or not open for seeding yet.
SEED = LUA_COMMON + r"""
local now = clock(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'used') == 1 then return 1 end
if ARGV[4] == '1' then
  local epoch = redis.call('HMGET', KEYS[2], 'id', 'open_at')
  if epoch[1] ~= ARGV[5] or tonumber(epoch[2]) > now then return 0 end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', f17(now))
  if redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
end
redis.call('HSET', KEYS[1], 'used', ARGV[2], 'resets_at', ARGV[3])
local ms = math.ceil((tonumber(ARGV[3]) + 86400 - now) * 1000)
if ms > 0 then
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ms))
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# The generation of the data: a hash (id, open_at) that lives as long as replicas use it (each
# asks every second), and the replicas still joining it (ZSET replica -> deadline).
# KEYS: epoch, joining. ARGV: now|'', replica, known id|'', gate_s, join_s, a new id.
# Reply: {id, join (0|1), wait_s, joining}.
EPOCH = LUA_COMMON + r"""
local now = clock(ARGV[1])
local nowstr = f17(now)
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  id = ARGV[6]
  local gate = 0
  if ARGV[3] ~= '' then gate = tonumber(ARGV[4]) end  -- this replica saw the data go
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'id', id, 'open_at', f17(now + gate))
end
redis.call('PEXPIRE', KEYS[1], 86400000)
local join = 0
if id ~= ARGV[3] then
  join = 1
  redis.call('ZADD', KEYS[2], 'NX', f17(now + tonumber(ARGV[5])), ARGV[2])
  redis.call('PEXPIRE', KEYS[2], string.format('%d', math.ceil(tonumber(ARGV[5]) * 1000) + 1000))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', nowstr)
local open_at = tonumber(redis.call('HGET', KEYS[1], 'open_at'))
return {id, join, f17(math.max(0, open_at - now)), redis.call('ZCARD', KEYS[2])}
"""

# KEYS: epoch, joining, then three per hold (lease, held, reserved).
# ARGV: now|'', replica, epoch id, lease_s, last batch (1|0), (request id, amount) per hold.
# Reply: 1 joined (or this batch taken), 0 not the current epoch: nothing changed.
REJOIN = LUA_COMMON + r"""
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[3] then return 0 end
local now = clock(ARGV[1])
local deadline = f17(now + tonumber(ARGV[4]))
local lease_ms = math.ceil(tonumber(ARGV[4]) * 1000)
for i = 1, (#KEYS - 2) / 3 do
  local lk, hk, rk = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  local rid, amount = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if redis.call('HSETNX', hk, rid, amount) == 1 then  -- a hold still there is kept as it is
    redis.call('ZADD', lk, deadline, rid)
    redis.call('INCRBY', rk, amount)
    outlive_lease(lk, hk, rk, lease_ms)
  end
end
if ARGV[5] == '1' then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""


# KEYS: four per pool. ARGV: now|''. Reply: used, reserved, holders per pool (zeros when over).
READ = LUA_COMMON + r"""
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
TRIP = LUA_COMMON + r"""
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
