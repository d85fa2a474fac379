"""The Lua scripts of the Redis rate limiter: one per decision, on Redis server time, answering relative waits.

Every script reads `TIME`, works in microseconds, and returns an integer: 0 admitted, `w > 0` microseconds to
wait, `-r` refused (nothing taken). Every key a script writes gets a `PEXPIRE` for the moment its state equals
that of a new key, so idle limits leave nothing behind. `ARGV[4]` is `max_wait` in microseconds, -1 for none.
"""

from __future__ import annotations

from typing import Final

from rfobs.fleet._store import Script

__all__ = ["GCRA", "GCRA_REFUND", "SLIDING_WINDOW"]

_NOW: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
"""

GCRA: Final = Script(
    "rate_limit_gcra",
    _NOW
    + """
-- KEYS[1]: the theoretical arrival time (TAT) in us. ARGV: us per unit, capacity, cost, max_wait.
local interval, capacity, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - capacity * interval - now
if wait <= 0 then
  wait = 0
else
  wait = math.ceil(wait)
  if max_wait >= 0 and wait > max_wait then return -wait end
end
-- A reservation leaves the level below zero (a debt); the key is idle again when the bucket is full.
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return wait
""",
)

GCRA_REFUND: Final = Script(
    "rate_limit_gcra_refund",
    _NOW
    + """
-- KEYS[1]: the TAT. ARGV: us per unit, cost. Gives back a cancelled waiter's reservation.
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = tat - tonumber(ARGV[2]) * tonumber(ARGV[1])
if tat <= now then return 0 end
if back <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.3f', back), 'PX', math.ceil((back - now) / 1000) + 1)
return 0
""",
)

SLIDING_WINDOW: Final = Script(
    "rate_limit_sliding_window",
    _NOW
    + """
-- KEYS[1]: sorted set of admissions (score: time in us; member: '<time>-<seq>:<cost>').
-- KEYS[2]: hash {seq, total}. ARGV: limit, window in us, cost, max_wait.
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local ttl = math.ceil(window / 1000) + 1
local function cost_of(member) return tonumber(string.match(member, ':(.*)$')) end
-- The hash expires with the set (never later): a total is only trusted next to the admissions it counts.
local count = redis.call('ZCARD', KEYS[1])
local total, seq = 0, 0
if count > 0 then
  local stored = redis.call('HMGET', KEYS[2], 'total', 'seq')
  seq = tonumber(stored[2] or '0')
  if stored[1] then
    total = tonumber(stored[1])
  else
    -- The hash is gone (evicted, or written by an older script): count the set again.
    local members = redis.call('ZRANGE', KEYS[1], 0, -1)
    for i = 1, #members do total = total + cost_of(members[i]) end
  end
end
local gone = {}
if count > 0 then gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window) end
if #gone > 0 then
  for i = 1, #gone do total = total - cost_of(gone[i]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  count = count - #gone
  -- Nothing left in the window: the state of a new key.
  if count == 0 then total = 0 end
end
-- A cost above a lowered (adaptive) limit still goes through, alone in its window.
local excess = total + cost - math.max(limit, cost)
if excess <= 1e-9 then
  seq = seq + 1
  redis.call('ZADD', KEYS[1], now, string.format('%.0f-%d:%s', now, seq, ARGV[3]))
  redis.call('HSET', KEYS[2], 'total', string.format('%.17g', total + cost), 'seq', seq)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return 0
end
if #gone > 0 then
  -- Refused after dropping old admissions: keep the lower total. The newest admission is unchanged, so is the
  -- set's TTL; the hash keeps exactly the same one.
  redis.call('HSET', KEYS[2], 'total', string.format('%.17g', total))
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then left = ttl end
  redis.call('PEXPIRE', KEYS[2], left)
end
-- Nothing is taken: the wait is until enough of the oldest admissions have left the window.
local wait, dropped, start = window, 0, 0
while true do
  local batch = redis.call('ZRANGE', KEYS[1], start, start + 31, 'WITHSCORES')
  if #batch == 0 then break end
  local found = false
  for i = 1, #batch, 2 do
    dropped = dropped + cost_of(batch[i])
    if dropped >= excess - 1e-9 then
      wait = tonumber(batch[i + 1]) + window - now
      found = true
      break
    end
  end
  if found then break end
  start = start + 32
end
wait = math.max(1, math.ceil(wait))
if max_wait >= 0 and wait > max_wait then return -wait end
return wait
""",
)
