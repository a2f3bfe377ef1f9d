"""Lua scripts of the Redis task queue: each is one atomic step, one round trip.

Key layout (prefix `reaper` by default):
  {p}:q:{agent_type}      stream of ready tasks, consumer group `workers`; entry fields
                          `t` (task JSON) and `b` (deliveries before this entry: a released
                          task is re-added with its count, so poison detection survives it)
  {p}:lease:{agent_type}  sorted set: stream id -> lease deadline (epoch ms)
  {p}:delayed             sorted set: "{agent_type}\\n{task JSON}" -> due time (epoch ms)
  {p}:seen:{task}:{n}     publish de-duplication marker per (task_id, attempt), with a TTL
  {p}:dlq:{agent_type}    dead-letter stream (poison tasks), capped

The scripts build some key names from the prefix (the delayed set feeds every agent type's
stream), which is fine on a single Redis and would need hash tags on a cluster.
Receipts are "{stream id}|{consumer}|{times delivered}": ack, extend and release act only if
the entry is still pending with that consumer and that delivery, so a worker whose lease ran
out and was handed to another cannot ack or extend the new holder's delivery.
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "EXTEND",
    "LEASE_NEW",
    "PRUNE_CONSUMERS",
    "PUBLISH",
    "RECLAIM",
    "RELEASE",
    "TRIM",
]

# ARGV: prefix, now_ms, seen_ttl_s, then per item: agent_type, task_id, attempt, due_ms, json
PUBLISH = """
local p, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local added = 0
for i = 4, #ARGV, 5 do
  local agent, body, due = ARGV[i], ARGV[i + 4], tonumber(ARGV[i + 3])
  if redis.call('SET', p .. ':seen:' .. ARGV[i + 1] .. ':' .. ARGV[i + 2], '1', 'NX', 'EX', ttl)
  then
    if due > now then
      redis.call('ZADD', p .. ':delayed', due, agent .. '\\n' .. body)
    else
      redis.call('XADD', p .. ':q:' .. agent, '*', 't', body, 'b', '0')
    end
    added = added + 1
  end
end
return added
"""

# Shared by RECLAIM: move due delayed tasks (of every agent type) into their streams.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  local nl = string.find(m, '\\n', 1, true)
  redis.call('XADD', p .. ':q:' .. string.sub(m, 1, nl - 1), '*',
             't', string.sub(m, nl + 1), 'b', '0')
  redis.call('ZREM', p .. ':delayed', m)
end
"""

# KEYS: stream, leases, dlq. ARGV: prefix, now_ms, group, consumer, lease_ms, max_items,
# max_deliveries, sweep (1: also claim entries pending without a lease, idle >= lease_ms:
# left by a worker that died between XREADGROUP and recording its lease).
# Then reads new entries (without blocking) up to max_items, leasing them in the same step.
# Returns {handed out {id, body, count, times}..., dead {id, body, count}...,
# next deadline ms or -1}.
RECLAIM = (
    """
local stream, leases, dlq = KEYS[1], KEYS[2], KEYS[3]
local p, now, group, consumer = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local lease_ms, max_items, max_del = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
"""
    + _PROMOTE
    + """
local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, max_items)
if ARGV[8] == '1' and #ids < max_items then
  for _, e in ipairs(redis.call('XPENDING', stream, group, 'IDLE', lease_ms, '-', '+', 100)) do
    if #ids >= max_items then break end
    if not redis.call('ZSCORE', leases, e[1]) then table.insert(ids, e[1]) end
  end
end
local out, dead = {}, {}
local function hand_out(id, fields, times)
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  local count = tonumber(f['b'] or '0') + times
  if count > max_del then
    redis.call('XADD', dlq, 'MAXLEN', '~', 10000, '*', 't', f['t'], 'n', count, 'src', id)
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    redis.call('ZREM', leases, id)
    table.insert(dead, {id, f['t'], count})
  else
    redis.call('ZADD', leases, now + lease_ms, id)
    table.insert(out, {id, f['t'], count, times})
  end
end
for _, id in ipairs(ids) do
  local entry = redis.call('XCLAIM', stream, group, consumer, 0, id)[1]
  if not entry or not entry[2] then
    -- acked or deleted in the meantime: nothing to hand out
    redis.call('ZREM', leases, id)
    redis.call('XACK', stream, group, id)
  else
    hand_out(id, entry[2], redis.call('XPENDING', stream, group, id, id, 1)[1][4])
  end
end
-- Fast path: new entries read here (no BLOCK inside a script) get their lease in the same
-- atomic step, so a worker dying right after the read leaves nothing without a lease.
if #out < max_items then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max_items - #out,
                      'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      if e[2] then hand_out(e[1], e[2], 1) end
    end
  end
end
local nxt = -1
local l = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
if l[2] then nxt = tonumber(l[2]) end
local d = redis.call('ZRANGE', p .. ':delayed', 0, 0, 'WITHSCORES')
if d[2] and (nxt < 0 or tonumber(d[2]) < nxt) then nxt = tonumber(d[2]) end
return {out, dead, tostring(nxt)}
"""
)

# KEYS: stream, leases, dlq. ARGV: group, deadline_ms, max_deliveries, then per entry read by
# XREADGROUP: id, count. Records the leases; dead-letters entries already over the limit
# (a task released again and again). Returns the ids dead-lettered.
LEASE_NEW = """
local stream, leases, dlq, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local deadline, max_del = tonumber(ARGV[2]), tonumber(ARGV[3])
local dead = {}
for i = 4, #ARGV, 2 do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  if count > max_del then
    local e = redis.call('XRANGE', stream, id, id)
    if e[1] then
      redis.call('XADD', dlq, 'MAXLEN', '~', 10000, '*', 't', e[1][2][2], 'n', count, 'src', id)
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    table.insert(dead, id)
  else
    redis.call('ZADD', leases, deadline, id)
  end
end
return dead
"""

# Checks a receipt: the entry is pending with this consumer at this delivery.
_HOLDS = """
local function holds(stream, group, id, consumer, times)
  local e = redis.call('XPENDING', stream, group, id, id, 1)[1]
  return e and e[2] == consumer and tostring(e[4]) == times
end
"""

# KEYS: stream, leases. ARGV: group, then id, consumer, times per receipt.
ACK = (
    _HOLDS
    + """
local n = 0
for i = 2, #ARGV, 3 do
  if holds(KEYS[1], ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""
)

# KEYS: stream, leases. ARGV: group, deadline_ms, then id, consumer, times per receipt.
# XCLAIM JUSTID resets the idle time (and does not count a delivery), so the orphan sweep
# also sees the entry as alive.
EXTEND = (
    _HOLDS
    + """
local n = 0
for i = 3, #ARGV, 3 do
  local id, consumer = ARGV[i], ARGV[i + 1]
  if holds(KEYS[1], ARGV[1], id, consumer, ARGV[i + 2]) then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[2], id)
    redis.call('XCLAIM', KEYS[1], ARGV[1], consumer, 0, id, 'JUSTID')
    n = n + 1
  end
end
return n
"""
)

# KEYS: stream, leases. ARGV: group, then id, consumer, times, count per receipt.
# Visible again at once = re-added at the stream's tail (waking blocked readers) carrying its
# delivery count, and the old entry acked and deleted.
RELEASE = (
    _HOLDS
    + """
local n = 0
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if holds(KEYS[1], ARGV[1], id, ARGV[i + 1], ARGV[i + 2]) then
    local e = redis.call('XRANGE', KEYS[1], id, id)
    if e[1] then
      redis.call('XADD', KEYS[1], '*', 't', e[1][2][2], 'b', ARGV[i + 3])
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    n = n + 1
  end
end
return n
"""
)

# KEYS: stream. ARGV: group. Redis 7.0 has no trim mode that spares unacknowledged entries:
# trim below the oldest entry still needed = min(oldest pending id, first undelivered id).
TRIM = """
local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = {}
  for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
  if t['name'] == ARGV[1] then last = t['last-delivered-id'] end
end
if not last then return 0 end
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
local minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
local pend = redis.call('XPENDING', KEYS[1], ARGV[1])
if pend[1] > 0 then
  local pms, pseq = string.match(pend[2], '^(%d+)-(%d+)$')
  if tonumber(pms) < tonumber(ms) or (pms == ms and tonumber(pseq) <= tonumber(seq)) then
    minid = pend[2]
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
"""

# KEYS: stream. ARGV: group, idle_ms. Deletes the group's consumers holding no pending entry
# and idle for at least idle_ms; returns how many. Check and delete are one atomic step: a
# consumer reading an entry in between would lose it (DELCONSUMER drops its pending entries,
# and a task no longer pending is never handed out again). No stream or group: nothing to do.
PRUNE_CONSUMERS = """
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers.err then return 0 end
local idle_ms, n = tonumber(ARGV[2]), 0
for _, c in ipairs(consumers) do
  local t = {}
  for i = 1, #c, 2 do t[c[i]] = c[i + 1] end
  if t['pending'] == 0 and t['idle'] >= idle_ms then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], t['name'])
    n = n + 1
  end
end
return n
"""
