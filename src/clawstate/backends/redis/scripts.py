"""The Redis backend's Lua scripts: every write unit, sweep and multi-key read is one
script call (one round trip, one atomic step).  The wire formats are described
with the write script below; :mod:`.backend` encodes and decodes them."""

from __future__ import annotations

import hashlib

__all__ = ["SCRIPTS", "Script"]

# -- Lua ---------------------------------------------------------------------------------
#
# Write-unit wire format (ARGV): [1] prefix, [2] number of units, then per unit
#   now, idempotency key ('' none), fingerprint, idempotency expires_at,
#   native TTL of the idempotency record (ms), number of writes, number of ARGV
#   entries its writes take,
# and per write 12 fields:
#   op ('0' put, '1' delete, '3' rewrap), ns, key, value, expires_at ('' none),
#   if_version ('' none), if_absent ('1'/''), log_value ('1'/''), seq ('' none),
#   keep_ttl ('1'/''), index generation the entries were computed for ('' for a
#   delete: not checked), and the entries ('' none): what the new value contributes
#   to its namespace's declared indexes, a msgpack array of (sorted-set key, score,
#   member) triples, strings only (which Lua's cmsgpack reads; built by Python).
# Index maintenance: an item's hash keeps its entries in field ``q``, so an
# overwrite, delete, rewrap or sweep removes exactly those in the same script, and an
# overwrite whose entries are unchanged touches no index.  A put or
# rewrap whose generation is not the namespace's current one (``P qgen``; an index was
# declared since the writer looked) fails its unit with {'g', ns}: the writer reloads
# the declarations and resends it.
# Versions never repeat across a key's incarnations (no ABA, see _apply): a put over
# an expired row goes on at its version + 1, a removal raises ``P floors`` (a hash:
# namespace -> the highest version a removed key had), and a new key starts at its
# namespace's floor + 1.
# Reply: one entry per unit —
#   {'o', outcomes}: outcomes joined with NUL, 9 fields each
#       (ns, key, op, applied '1'/'0', version, seq, created_at, updated_at, expires_at);
#       the same string is the idempotency record, so a replay returns it as it was;
#   {'c', write index, 'a' (if_absent) | 'v' (if_version), actual version or ''};
#   {'i'}: the idempotency key was used for another request.
# Keys and namespace names cannot contain NUL (the facade refuses them).

_WRITE_LUA = r"""#!lua
local P = ARGV[1]
local nunits = tonumber(ARGV[2])
local call = redis.call
local logkey, nskey, byteskey = P .. 'log', P .. 'namespaces', P .. 'bytes'
local floorkey = P .. 'floors'
local replies = {}
local a = 3
local gens = {}

-- index maintenance (see the wire format): remove the entries record ``q`` lists,
-- add entries ARGV[e .. e + 3 * ne - 1], keep the new record on ``ik``
local function unindex(q)
  if not q then return end
  local rec = cmsgpack.unpack(q)
  for j = 1, #rec, 3 do call('ZREM', rec[j], rec[j + 2]) end
end
-- old: the entries before (''/false: none); rq: the new ones ('' none), which the
-- caller stores in ``q``.  Unchanged entries (an overwrite that left the indexed
-- fields alone) cost nothing.
local function reindex(ik, old, rq)
  old = old or ''
  if old == rq then return end
  if old ~= '' then unindex(old) end
  if rq ~= '' then
    local t = cmsgpack.unpack(rq)
    for j = 1, #t, 3 do call('ZADD', t[j], t[j + 1], t[j + 2]) end
  elseif old ~= '' then
    call('HDEL', ik, 'q')
  end
end
-- the record of a row: as loaded, or (a row this unit wrote before) as stored now
local function record(row, ik)
  if row.overlay then return call('HGET', ik, 'q') end
  return row.q
end

local function load(ik)
  local h = call('HMGET', ik, 'ver', 'seq', 'c', 'x', 'n', 'q')
  if not h[1] then return {ex = false, x = '', len = 0} end
  return {ex = true, ver = tonumber(h[1]), seq = tonumber(h[2]), c = h[3], x = h[4] or '',
          len = tonumber(h[5]) or 0, q = h[6]}
end

local function last_seq()
  local top = call('XREVRANGE', logkey, '+', '-', 'COUNT', 1)
  if #top == 0 then return 0 end
  return tonumber(string.sub(top[1][1], 3))
end

for u = 1, nunits do
  local now_s, idem, fp, iexp, ittl = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local n = tonumber(ARGV[a + 5])
  local first = a + 7
  a = first + tonumber(ARGV[a + 6])
  local now = tonumber(now_s)
  local reply = nil
  local dk = nil
  if idem ~= '' then
    dk = P .. 'd:' .. idem
    local rec = call('HMGET', dk, 'f', 'r', 'e')
    if rec[1] and tonumber(rec[3]) > now then
      if rec[1] == fp then reply = {'o', rec[2]} else reply = {'i'} end
    end
  end
  if not reply then
    -- Pass 1: plan every write against an overlay; nothing is written yet.  A row
    -- written earlier in this unit has no seq yet: it holds its rank among the
    -- unit's log entries (pending), resolved against the log only if a rewrap asks.
    local rows, plan = {}, {}
    local logged, base = 0, nil
    -- this unit's view of the version floors (its deletes raise them for its later puts)
    local floors = {}
    local function floor_of(ns)
      local f = floors[ns]
      if f == nil then
        f = tonumber(call('HGET', floorkey, ns) or '0')
        floors[ns] = f
      end
      return f
    end
    local nb = first
    for i = 0, n - 1 do
      local b = nb
      nb = b + 12
      local op, ns, key, ifv = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 5]
      if op ~= '1' and op ~= '5' then
        local g = gens[ns]
        if g == nil then
          g = call('HGET', P .. 'qgen', ns) or '0'
          gens[ns] = g
        end
        if ARGV[b + 10] ~= g then reply = {'g', ns}; break end
      end
      local ik = P .. 'i:' .. ns .. '/' .. key
      local row = rows[ik]
      if row == nil then row = load(ik) end
      local live = row.ex and (row.x == '' or tonumber(row.x) > now)
      if op == '0' then
        local val, x = ARGV[b + 3], ARGV[b + 4]
        if ARGV[b + 6] == '1' and live then reply = {'c', i, 'a', row.ver}; break end
        if ifv ~= '' and (not live or row.ver ~= tonumber(ifv)) then
          reply = {'c', i, 'v', live and row.ver or ''}; break
        end
        local ver, c = 0, now_s
        if live then
          ver, c = row.ver + 1, row.c
          if ARGV[b + 9] == '1' then x = row.x end
        elseif row.ex then
          ver = row.ver + 1  -- expired, not yet swept: a new incarnation, a new version
        else
          ver = floor_of(ns) + 1
        end
        logged = logged + 1
        plan[#plan + 1] = {0, ik, ns, key, row, val, x, ver, c, ARGV[b + 7], ARGV[b + 11]}
        rows[ik] = {ex = true, ver = ver, pending = logged, c = c, x = x, len = #val,
                    overlay = true}
      elseif op == '1' then
        if ifv ~= '' and (not live or row.ver ~= tonumber(ifv)) then
          reply = {'c', i, 'v', live and row.ver or ''}; break
        end
        if live then
          logged = logged + 1
          plan[#plan + 1] = {1, ik, ns, key, row}
          rows[ik] = {ex = false, x = '', len = 0, overlay = true}
          if row.ver > floor_of(ns) then floors[ns] = row.ver end
        else
          plan[#plan + 1] = {2, ik, ns, key}
        end
      elseif op == '5' then
        -- a fencing check (OP_FENCE): the fence row must be live at exactly the token
        if not live or row.ver ~= tonumber(ifv) then
          reply = {'f', i, live and row.ver or ''}; break
        end
        plan[#plan + 1] = {4, ik, ns, key, row}
      else
        local wseq = ARGV[b + 8]
        local applied = false
        if row.ex and ifv ~= '' and wseq ~= '' and row.ver == tonumber(ifv) then
          local seq = row.seq
          if row.pending then
            if base == nil then base = last_seq() end
            seq = base + row.pending
          end
          applied = seq == tonumber(wseq)
        end
        local val = ARGV[b + 3]
        if applied then
          rows[ik] = {ex = true, ver = row.ver, seq = row.seq, pending = row.pending, c = row.c,
                      x = row.x, len = #val, overlay = true}
        end
        if ifv == '' then ifv = '0' end
        if wseq == '' then wseq = '0' end
        plan[#plan + 1] = {3, ik, ns, key, row, val, applied, ifv, wseq, ARGV[b + 11]}
      end
    end
    if not reply then
      -- Pass 2: every condition held; write the plan in order.  XADD 0-* takes the
      -- next seq (the log's last ID + 1) and returns it.
      local outs = {}
      for _, p in ipairs(plan) do
        local kind, ik, ns, key, row = p[1], p[2], p[3], p[4], p[5]
        local o = #outs
        if kind == 0 then
          local val, x, ver, c = p[6], p[7], p[8], p[9]
          local id
          if p[10] == '1' then
            id = call('XADD', logkey, '0-*', 'ns', ns, 'key', key, 'op', '0', 'ver', ver,
                      'ts', now_s, 'val', val)
          else
            id = call('XADD', logkey, '0-*', 'ns', ns, 'key', key, 'op', '0', 'ver', ver,
                      'ts', now_s)
          end
          local s = string.sub(id, 3)
          local rq, old = p[11], nil
          if row.q or row.overlay then old = record(row, ik) end
          local h = {'HSET', ik, 'v', val, 'ver', ver, 'seq', s, 'c', c, 'u', now_s, 'n', #val}
          if rq ~= '' then h[#h + 1], h[#h + 2] = 'q', rq end
          if x ~= '' then
            h[#h + 1], h[#h + 2] = 'x', x
            call(unpack(h))
            call('ZADD', P .. 'x:' .. ns, x, key)
          else
            call(unpack(h))
            if row.x ~= '' then
              call('HDEL', ik, 'x')
              call('ZREM', P .. 'x:' .. ns, key)
            end
          end
          if not row.ex then
            call('ZADD', P .. 'k:' .. ns, 0, key)
            call('SADD', nskey, ns)
          end
          reindex(ik, old, rq)
          if #val ~= row.len then call('HINCRBY', byteskey, ns, #val - row.len) end
          outs[o + 1], outs[o + 2], outs[o + 3], outs[o + 4], outs[o + 5] = ns, key, '0', '1', ver
          outs[o + 6], outs[o + 7], outs[o + 8], outs[o + 9] = s, c, now_s, x
        elseif kind == 1 then
          local id = call('XADD', logkey, '0-*', 'ns', ns, 'key', key, 'op', '1', 'ver', row.ver,
                          'ts', now_s)
          unindex(record(row, ik))
          call('DEL', ik)
          call('ZREM', P .. 'k:' .. ns, key)
          if row.x ~= '' then call('ZREM', P .. 'x:' .. ns, key) end
          if row.ver > tonumber(call('HGET', floorkey, ns) or '0') then
            call('HSET', floorkey, ns, row.ver)
          end
          if row.len ~= 0 then call('HINCRBY', byteskey, ns, -row.len) end
          outs[o + 1], outs[o + 2], outs[o + 3], outs[o + 4] = ns, key, '1', '1'
          outs[o + 5], outs[o + 6], outs[o + 7], outs[o + 8], outs[o + 9] =
            row.ver, string.sub(id, 3), row.c, now_s, ''
        elseif kind == 4 then
          outs[o + 1], outs[o + 2], outs[o + 3], outs[o + 4] = ns, key, '5', '1'
          outs[o + 5], outs[o + 6], outs[o + 7], outs[o + 8], outs[o + 9] =
            row.ver, '0', '0', '0', ''
        elseif kind == 2 then
          outs[o + 1], outs[o + 2], outs[o + 3], outs[o + 4], outs[o + 5] = ns, key, '1', '0', '0'
          outs[o + 6], outs[o + 7], outs[o + 8], outs[o + 9] = '0', '0', '0', ''
        else
          local val, applied = p[6], '0'
          if p[7] then
            local rq, old = p[10], nil
            if row.q or row.overlay then old = record(row, ik) end
            reindex(ik, old, rq)
            if rq ~= '' then
              call('HSET', ik, 'v', val, 'n', #val, 'q', rq)
            else
              call('HSET', ik, 'v', val, 'n', #val)
            end
            if #val ~= row.len then call('HINCRBY', byteskey, ns, #val - row.len) end
            applied = '1'
          end
          outs[o + 1], outs[o + 2], outs[o + 3], outs[o + 4] = ns, key, '3', applied
          outs[o + 5], outs[o + 6], outs[o + 7], outs[o + 8], outs[o + 9] = p[8], p[9], '0', '0', ''
        end
      end
      local flat = table.concat(outs, '\0')
      if dk then
        call('HSET', dk, 'f', fp, 'r', flat, 'e', iexp)
        call('PEXPIRE', dk, ittl)
        call('ZADD', P .. 'dx', iexp, idem)
      end
      reply = {'o', flat}
    end
  end
  replies[u] = reply
end
return replies
"""

# ARGV: prefix, now, changelog_before, max expired, max idempotency records, max trimmed.
# Reply: {expired, idempotency records, log entries trimmed}.
_SWEEP_LUA = r"""#!lua
local P, now_s, before_s = ARGV[1], ARGV[2], ARGV[3]
local max_expire, max_idem, max_trim = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now, before = tonumber(now_s), tonumber(before_s)
local call = redis.call
local logkey, byteskey, floorkey = P .. 'log', P .. 'bytes', P .. 'floors'
local expired = 0
for _, ns in ipairs(call('SMEMBERS', P .. 'namespaces')) do
  if expired >= max_expire then break end
  local xk = P .. 'x:' .. ns
  local due = call('ZRANGEBYSCORE', xk, '-inf', now_s, 'LIMIT', 0, max_expire - expired)
  for _, key in ipairs(due) do
    local ik = P .. 'i:' .. ns .. '/' .. key
    local h = call('HMGET', ik, 'ver', 'x', 'n', 'q')
    if h[1] and h[2] and tonumber(h[2]) > now then
      call('ZADD', xk, h[2], key)  -- a stale index entry: repair it
    else
      call('ZREM', xk, key)
      if h[1] and h[2] then
        call('XADD', logkey, '0-*', 'ns', ns, 'key', key, 'op', '2', 'ver', h[1], 'ts', now_s)
        if h[4] then
          local rec = cmsgpack.unpack(h[4])
          for j = 1, #rec, 3 do call('ZREM', rec[j], rec[j + 2]) end
        end
        call('DEL', ik)
        if tonumber(h[1]) > tonumber(call('HGET', floorkey, ns) or '0') then
          call('HSET', floorkey, ns, h[1])  -- no ABA: a re-created key starts above it
        end
        call('ZREM', P .. 'k:' .. ns, key)
        local len = tonumber(h[3]) or 0
        if len ~= 0 then call('HINCRBY', byteskey, ns, -len) end
        expired = expired + 1
      end
    end
  end
end

local idem = 0
local dx = P .. 'dx'
for _, id in ipairs(call('ZRANGEBYSCORE', dx, '-inf', now_s, 'LIMIT', 0, max_idem)) do
  local dk = P .. 'd:' .. id
  local e = call('HGET', dk, 'e')
  if e and tonumber(e) <= now then
    call('DEL', dk)
    idem = idem + 1
  end
  if not e or tonumber(e) <= now then call('ZREM', dx, id) end
end

local trimmed = 0
local newest = call('XREVRANGE', logkey, '+', '-', 'COUNT', 1)
if #newest > 0 then
  local newest_id = newest[1][1]
  local start, cut, scanned, done = '-', nil, 0, false
  while not done do
    local rows = call('XRANGE', logkey, start, '+', 'COUNT', 1000)
    if #rows == 0 then break end
    for _, r in ipairs(rows) do
      if r[1] == newest_id or scanned >= max_trim then done = true; break end
      local f, ts = r[2], nil
      for j = 1, #f, 2 do
        if f[j] == 'ts' then ts = tonumber(f[j + 1]); break end
      end
      if ts == nil or ts >= before then done = true; break end
      cut = r[1]
      scanned = scanned + 1
    end
    start = '(' .. rows[#rows][1]
  end
  if cut then
    local s = tonumber(string.sub(cut, 3))
    trimmed = call('XTRIM', logkey, 'MINID', string.format('0-%d', s + 1))
  end
end
return {expired, idem, trimmed}
"""

# ARGV: prefix, ns, min, max (ZRANGEBYLEX bounds), limit, now ('' = every stored item).
# Reply: 7 fields per item: key, v, ver, seq, c, u, x ('' when none).
_SCAN_LUA = r"""#!lua flags=no-writes
local P, ns, min, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local now = nil
if ARGV[6] ~= '' then now = tonumber(ARGV[6]) end
local zk, pre = P .. 'k:' .. ns, P .. 'i:' .. ns .. '/'
local out, got = {}, 0
local batch = limit
if batch < 64 then batch = 64 end
while got < limit do
  local keys = redis.call('ZRANGEBYLEX', zk, min, max, 'LIMIT', 0, batch)
  for _, key in ipairs(keys) do
    local h = redis.call('HMGET', pre .. key, 'v', 'ver', 'seq', 'c', 'u', 'x')
    if h[2] and (now == nil or not h[6] or tonumber(h[6]) > now) then
      local o = #out
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = key, h[1], h[2], h[3]
      out[o + 5], out[o + 6], out[o + 7] = h[4], h[5], h[6] or ''
      got = got + 1
      if got >= limit then break end
    end
  end
  if #keys < batch then break end
  min = '(' .. keys[#keys]
end
return out
"""

# ARGV: prefix, ns, key...  Reply: 7 fields per stored item (as _SCAN_LUA), expired included.
_GET_MANY_LUA = r"""#!lua flags=no-writes
local pre = ARGV[1] .. 'i:' .. ARGV[2] .. '/'
local out = {}
for i = 3, #ARGV do
  local key = ARGV[i]
  local h = redis.call('HMGET', pre .. key, 'v', 'ver', 'seq', 'c', 'u', 'x')
  if h[2] then
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = key, h[1], h[2], h[3]
    out[o + 5], out[o + 6], out[o + 7] = h[4], h[5], h[6] or ''
  end
end
return out
"""

# ARGV: prefix, ns, now.  Reply: live items of the namespace.
_COUNT_LUA = r"""#!lua flags=no-writes
local P, ns = ARGV[1], ARGV[2]
return redis.call('ZCARD', P .. 'k:' .. ns) - redis.call('ZCOUNT', P .. 'x:' .. ns, '-inf', ARGV[3])
"""

# ARGV: prefix.  Reply: {oldest retained seq or 0, last seq}.
_BOUNDS_LUA = r"""#!lua flags=no-writes
local logkey = ARGV[1] .. 'log'
local first = redis.call('XRANGE', logkey, '-', '+', 'COUNT', 1)
if #first == 0 then return {0, 0} end
local last = redis.call('XREVRANGE', logkey, '+', '-', 'COUNT', 1)
return {tonumber(string.sub(first[1][1], 3)), tonumber(string.sub(last[1][1], 3))}
"""


# Index declarations.  ARGV: prefix, ns, dotted path...  Declares each path not yet
# declared (``P qdef:{ns}``: path -> 'b' building / 'r' ready) and, when one was new,
# bumps the namespace's generation (``P qgen``) so that every writer still computing
# entries for the old set of indexes is refused and resends ({'g', ns}).
# Reply: {generation, state of each path}.
_DECLARE_LUA = r"""#!lua
local P, ns = ARGV[1], ARGV[2]
local dk = P .. 'qdef:' .. ns
local added = false
for i = 3, #ARGV do
  if redis.call('HSETNX', dk, ARGV[i], 'b') == 1 then added = true end
end
if added then redis.call('HINCRBY', P .. 'qgen', ns, 1) end
local out = {redis.call('HGET', P .. 'qgen', ns) or '0'}
for i = 3, #ARGV do out[#out + 1] = redis.call('HGET', dk, ARGV[i]) end
return out
"""

# Backfill one chunk of an index.  ARGV: prefix, ns, dotted path, the prefix shared
# by that index's sorted-set keys, the chunk's last key, then per item: key, ver, seq,
# SHA1 of the value the entries were computed from, E, E triples (as _WRITE).  An item
# changed since it was read (another version, seq or value: a writer already keeps
# this index for it) is left alone.  The item's record keeps its entries of other
# indexes.  Then the resume point (``P qcur:{ns}``) moves to the chunk's last key; the
# last chunk (``ready`` = '1') marks the index ready instead.
# ARGV: ..., [6] ready ('1'/''), then items.  Reply: items updated.
_BACKFILL_LUA = r"""#!lua
local P, ns, field, zpre, last, ready = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local call = redis.call
local pre = P .. 'i:' .. ns .. '/'
local updated = 0
local a = 7
while a <= #ARGV do
  local key, ver, seq, sha = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local ne = tonumber(ARGV[a + 4])
  local e = a + 5
  a = e + 3 * ne
  local ik = pre .. key
  local h = call('HMGET', ik, 'ver', 'seq', 'v', 'q')
  if h[1] == ver and h[2] == seq and redis.sha1hex(h[3]) == sha then
    local rec = {}
    if h[4] then
      local old = cmsgpack.unpack(h[4])
      for j = 1, #old, 3 do
        if string.sub(old[j], 1, #zpre) == zpre then
          call('ZREM', old[j], old[j + 2])
        else
          rec[#rec + 1], rec[#rec + 2], rec[#rec + 3] = old[j], old[j + 1], old[j + 2]
        end
      end
    end
    for j = 0, ne - 1 do
      local zk, score, member = ARGV[e + 3 * j], ARGV[e + 3 * j + 1], ARGV[e + 3 * j + 2]
      call('ZADD', zk, score, member)
      rec[#rec + 1], rec[#rec + 2], rec[#rec + 3] = zk, score, member
    end
    if #rec > 0 then call('HSET', ik, 'q', cmsgpack.pack(rec))
    elseif h[4] then call('HDEL', ik, 'q') end
    updated = updated + 1
  end
end
if ready == '1' then
  if call('HGET', P .. 'qdef:' .. ns, field) then call('HSET', P .. 'qdef:' .. ns, field, 'r') end
  call('HDEL', P .. 'qcur:' .. ns, field)
else
  call('HSET', P .. 'qcur:' .. ns, field, last)
end
return updated
"""

# Candidate keys of an index lookup.  ARGV: prefix, then triples: kind ('l' a
# ZRANGEBYLEX over type-tagged members "<tag><value>\0<key>", 'n' a ZRANGEBYSCORE over
# numbers, 'o' every member: the opaque keys), sorted-set key, min, max.  Reply: the
# distinct keys, in no particular order.
_CANDIDATES_LUA = r"""#!lua flags=no-writes
local seen, out = {}, {}
for i = 2, #ARGV, 4 do
  local kind, zk, lo, hi = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local got
  if kind == 'l' then
    got = redis.call('ZRANGEBYLEX', zk, lo, hi)
    for j = 1, #got do
      local at = string.find(got[j], '\0', 1, true)
      got[j] = string.sub(got[j], at + 1)
    end
  elseif kind == 'n' then
    got = redis.call('ZRANGEBYSCORE', zk, lo, hi)
  else
    got = redis.call('ZRANGE', zk, 0, -1)
  end
  for _, key in ipairs(got) do
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = key
    end
  end
end
return out
"""


class Script:
    """A Lua script and its SHA1 (the ``EVALSHA`` name)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_WRITE = Script(_WRITE_LUA)
_SWEEP = Script(_SWEEP_LUA)
_SCAN = Script(_SCAN_LUA)
_GET_MANY = Script(_GET_MANY_LUA)
_COUNT = Script(_COUNT_LUA)
_BOUNDS = Script(_BOUNDS_LUA)
_DECLARE = Script(_DECLARE_LUA)
_BACKFILL = Script(_BACKFILL_LUA)
_CANDIDATES = Script(_CANDIDATES_LUA)
SCRIPTS = (_WRITE, _SWEEP, _SCAN, _GET_MANY, _COUNT, _BOUNDS, _DECLARE, _BACKFILL, _CANDIDATES)
