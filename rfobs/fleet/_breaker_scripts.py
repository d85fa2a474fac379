"""The circuit breaker's Lua scripts: enter, settle, reset and read, each one atomic transition on Redis server time.

They mirror `rfobs.instrument._breaker_state.Rules` step for step (consecutive failures, the failure ratio over
a window with a minimum of calls, the reset timeout, half-open probes, the success threshold, generations), so
a breaker behaves the same on Redis as in memory. Two keys per breaker, one hash tag:

- `KEYS[1]`, a hash: `st` (`c`, `o`, `h`), `gen` (generation), `opened` (server ms of the last move to open),
  `cf` (consecutive failures), `rw` (the ratio window, one `0`/`1` character per call, oldest first), `rf`
  (failures in `rw`), `ps` (probe successes), `seq` (probe tickets issued in this generation);
- `KEYS[2]`, a sorted set: the probe leases in flight while half-open, scored by the server ms they expire at,
  so a crashed worker's probe frees its slot when its lease runs out.

A new record's generation is the server time in ms, so a record that expired and was created again never reuses
a generation a call in flight still holds. Every write sets a PEXPIRE of the idle lifetime plus the reset timeout:
an idle breaker's keys go away, an open one's never before its pause has passed. Replies carry relative
milliseconds only.

ARGV, shared: 1 failure threshold (0: none), 2 failure ratio (0: none), 3 window, 4 minimum calls, 5 reset
timeout ms, 6 half-open max calls, 7 success threshold, 8 probe lease ms, 9 idle lifetime ms; settle adds
10 the ticket and 11 the outcome (0 success, 1 failure, 2 neutral).
"""

from __future__ import annotations

from typing import Final

from rfobs.fleet._store import Script

__all__ = ["ENTER", "READ", "RESET", "SETTLE"]

_PRELUDE: Final = """
local H, Z = KEYS[1], KEYS[2]
local threshold = tonumber(ARGV[1])
local ratio = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local minimum = tonumber(ARGV[4])
local reset_ms = tonumber(ARGV[5])
local max_probes = tonumber(ARGV[6])
local success_threshold = tonumber(ARGV[7])
local lease_ms = tonumber(ARGV[8])
local ttl_ms = tonumber(ARGV[9]) + reset_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local names = {c = 'closed', o = 'open', h = 'half_open'}

local function int(x)
  return string.format('%d', x)
end

local function load()
  local v = redis.call('HMGET', H, 'st', 'gen', 'opened', 'cf', 'rw', 'rf', 'ps', 'seq')
  if not v[1] then
    return nil
  end
  return {st = v[1], gen = tonumber(v[2]), opened = tonumber(v[3]) or 0, cf = tonumber(v[4]) or 0,
          rw = v[5] or '', rf = tonumber(v[6]) or 0, ps = tonumber(v[7]) or 0, seq = tonumber(v[8]) or 0}
end

local function save(r)
  redis.call('HSET', H, 'st', r.st, 'gen', int(r.gen), 'opened', int(r.opened), 'cf', int(r.cf), 'rw', r.rw,
             'rf', int(r.rf), 'ps', int(r.ps), 'seq', int(r.seq))
  redis.call('PEXPIRE', H, ttl_ms)
end

-- Rules.move: a new generation with nothing counted, and no probe in flight.
local function move(r, to)
  local from = r.st
  r.st = to
  r.gen = r.gen + 1
  if to == 'o' then
    r.opened = now
  end
  r.cf, r.rw, r.rf, r.ps, r.seq = 0, '', 0, 0, 0
  redis.call('DEL', Z)
  return {names[from], names[to]}
end
"""

ENTER: Final = Script(
    "breaker_enter",
    _PRELUDE
    + """
local r = load()
if not r then
  r = {st = 'c', gen = now, opened = 0, cf = 0, rw = '', rf = 0, ps = 0, seq = 0}
  save(r)
end
if r.st == 'c' then
  return {int(r.gen), 0, '', ''}
end
local m = {'', ''}
if r.st == 'o' then
  local remaining = r.opened + reset_ms - now
  if remaining > 0 then
    return {'', remaining, '', ''}
  end
  m = move(r, 'h')
end
redis.call('ZREMRANGEBYSCORE', Z, '-inf', now)
if redis.call('ZCARD', Z) >= max_probes then
  if m[1] ~= '' then
    save(r)
  end
  return {'', 0, m[1], m[2]}
end
r.seq = r.seq + 1
local ticket = int(r.gen) .. ':' .. int(r.seq)
redis.call('ZADD', Z, now + lease_ms, ticket)
redis.call('PEXPIRE', Z, ttl_ms)
save(r)
return {ticket, 0, m[1], m[2]}
""",
)
"""Admit a call: `{ticket or '', ms until a probe, from, to}` (`from`/`to` empty when nothing moved)."""

SETTLE: Final = Script(
    "breaker_settle",
    _PRELUDE
    + """
local r = load()
local none = {'', ''}
if not r then
  return none
end
local ticket, outcome = ARGV[10], tonumber(ARGV[11])
local sep = string.find(ticket, ':', 1, true)
local gen = sep and string.sub(ticket, 1, sep - 1) or ticket
if gen ~= int(r.gen) then
  return none
end
local m = none
if r.st == 'h' then
  if not sep then
    return none
  end
  redis.call('ZREM', Z, ticket)
  if outcome == 1 then
    m = move(r, 'o')
  elseif outcome == 0 then
    r.ps = r.ps + 1
    if r.ps >= success_threshold then
      m = move(r, 'c')
    end
  end
elseif r.st == 'c' then
  if outcome == 2 then
    return none
  end
  local failed = outcome == 1
  if failed then
    r.cf = r.cf + 1
  else
    r.cf = 0
  end
  if ratio > 0 then
    r.rw = r.rw .. (failed and '1' or '0')
    if failed then
      r.rf = r.rf + 1
    end
    if #r.rw > window then
      if string.sub(r.rw, 1, 1) == '1' then
        r.rf = r.rf - 1
      end
      r.rw = string.sub(r.rw, 2)
    end
    if failed and #r.rw >= minimum and r.rf >= ratio * #r.rw then
      m = move(r, 'o')
    end
  end
  if m[1] == '' and failed and threshold > 0 and r.cf >= threshold then
    m = move(r, 'o')
  end
else
  return none
end
save(r)
return m
""",
)
"""Count a call's outcome: `{from, to}` of the transition it caused, both empty for none."""

RESET: Final = Script(
    "breaker_reset",
    _PRELUDE
    + """
local r = load()
if not r then
  return {'', ''}
end
local m = {'', ''}
if r.st ~= 'c' then
  m = move(r, 'c')
else
  r.cf, r.rw, r.rf = 0, '', 0
end
save(r)
return m
""",
)
"""Close the breaker and forget its counts: `{from, to}`, both empty when it was closed already."""

READ: Final = Script(
    "breaker_read",
    """
local st = redis.call('HGET', KEYS[1], 'st')
if not st then
  return 'closed'
end
return ({c = 'closed', o = 'open', h = 'half_open'})[st]
""",
)
"""The stored state's name; a missing record is closed (and is not created)."""
