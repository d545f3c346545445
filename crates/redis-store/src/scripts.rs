//! Lua scripts for the steps that must be atomic. Every script touches only
//! the keys passed in `KEYS`, and those share one hash tag: the tick
//! store's scripts (below) take one host's keys ([`crate::keys::Keys`]), the
//! alert store's (`scripts::alerts`, used by [`crate::alerts`]) take
//! [`crate::keys::AlertKeys`].

/// Lua helpers shared by the scripts that read a sealed chunk's timestamps
/// (`metrics_model::chunk`: version byte 1, tick count, first `ts`, then
/// zigzag delta-of-deltas, all LEB128 varints). `chunk_ts(blob)` returns
/// the set of its timestamps, or nil for a chunk of an unknown version;
/// `chunk_n(blob)` its tick count.
const CHUNK_LUA: &str = r"
local CHUNK_MS = 7200000
local function varint(s, pos)
  local v, mul = 0, 1
  while true do
    local b = string.byte(s, pos)
    if b == nil then return nil, pos end
    pos = pos + 1
    if b < 128 then return v + b * mul, pos end
    v = v + (b - 128) * mul
    mul = mul * 128
  end
end
local function chunk_n(blob)
  if string.byte(blob, 1) ~= 1 then return nil end
  local n = varint(blob, 2)
  return n
end
local function chunk_ts(blob)
  if string.byte(blob, 1) ~= 1 then return nil end
  local set = {}
  local n, pos = varint(blob, 2)
  local ts, delta = 0, 0
  for i = 1, n do
    local v
    v, pos = varint(blob, pos)
    if v == nil then return nil end
    if i == 1 then
      ts = v
    else
      if v % 2 == 0 then delta = delta + v / 2 else delta = delta - (v + 1) / 2 end
      ts = ts + delta
    end
    set[ts] = true
  end
  return set
end
local function last_id(stream)
  if redis.call('EXISTS', stream) == 0 then return '0-0' end
  local info = redis.call('XINFO', 'STREAM', stream)
  for j = 1, #info, 2 do
    if info[j] == 'last-generated-id' then return info[j + 1] end
  end
  return '0-0'
end
";

/// `KEYS`: ticks stream, late index, chunks hash. `ARGV`: `ts1, values1,
/// ts2, values2…` sorted by `ts`. Returns `{written, duplicates}`.
///
/// A tick whose `ts` lies in a sealed window (below the chunks hash's `h`,
/// with a chunk for its window) is a duplicate when the chunk holds its
/// `ts`. Otherwise: in-order ticks (`ts` above the stream's last ID) are
/// added with the ID `<ts>-0` and one field `v`. A tick at or below the
/// last ID is a duplicate when `<ts>-0` is in the stream or `ts` is in the
/// late index; otherwise it is added with the next ID after the stream's
/// last one and fields `t` (its `ts`) and `v`, and indexed in the late
/// index by `ts`.
pub fn append() -> String {
    format!("{CHUNK_LUA}{APPEND_BODY}")
}

const APPEND_BODY: &str = r"
local stream, late, chunks = KEYS[1], KEYS[2], KEYS[3]
local written, dups = 0, 0
local top_ms, top_seq = nil, nil
local sealed_to = tonumber(redis.call('HGET', chunks, 'h') or '-1')
local sealed = {}
local function in_chunk(t)
  local w = t - t % CHUNK_MS
  local set = sealed[w]
  if set == nil then
    local blob = redis.call('HGET', chunks, string.format('%d', w))
    if blob then
      set = chunk_ts(blob)
      if set == nil then
        return redis.error_reply('chunk ' .. string.format('%d', w) .. ' of ' .. chunks .. ' has an unknown version (written by a newer bp-monitoring?)')
      end
    else
      set = {}
    end
    sealed[w] = set
  end
  return set[t] == true
end
for i = 1, #ARGV, 2 do
  local ts, enc = ARGV[i], ARGV[i + 1]
  local t = tonumber(ts)
  local dup = false
  if t < sealed_to then
    dup = in_chunk(t)
    if type(dup) == 'table' then return dup end
  end
  if dup then
    dups = dups + 1
  else
    local ok = redis.pcall('XADD', stream, ts .. '-0', 'v', enc)
    if type(ok) == 'table' and ok.err then
      if not (string.find(ok.err, 'equal or smaller', 1, true) or string.find(ok.err, '0-0', 1, true)) then
        return redis.error_reply(ok.err)
      end
      if #redis.call('XRANGE', stream, ts .. '-0', ts .. '-0') > 0
        or #redis.call('ZRANGEBYSCORE', late, ts, ts, 'LIMIT', 0, 1) > 0 then
        dups = dups + 1
      else
        if top_ms == nil then
          local ms, seq = string.match(last_id(stream), '^(%d+)-(%d+)$')
          top_ms, top_seq = ms, tonumber(seq)
        end
        top_seq = top_seq + 1
        local id = top_ms .. '-' .. top_seq
        redis.call('XADD', stream, id, 't', ts, 'v', enc)
        redis.call('ZADD', late, ts, id)
        written = written + 1
      end
    else
      top_ms, top_seq = ts, 0
      written = written + 1
    end
  end
end
return {written, dups}
";

/// `KEYS`: ticks stream, late index, chunks hash. `ARGV`: `before` (a
/// window boundary), `count`. What sealing the first `count` entries with a
/// stream ID below `before` needs, read at one instant: `{last generated
/// ID, generation, entries (as XRANGE gives them), window1, chunk1, window2,
/// chunk2…}` — the existing chunks of the windows those entries fall in.
pub fn seal_read() -> String {
    format!("{CHUNK_LUA}{SEAL_READ_BODY}")
}

const SEAL_READ_BODY: &str = r"
local stream, late, chunks, before = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local entries = redis.call('XRANGE', stream, '-', '(' .. before .. '-0', 'COUNT', ARGV[2])
local out = {last_id(stream), redis.call('HGET', chunks, 'g') or '0', entries}
local seen = {}
for _, e in ipairs(entries) do
  local ms = tonumber(string.match(e[1], '^(%d+)-'))
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 't' then ms = tonumber(f[j + 1]) end
  end
  local w = ms - ms % CHUNK_MS
  if not seen[w] then
    seen[w] = true
    local blob = redis.call('HGET', chunks, string.format('%d', w))
    if blob then
      out[#out + 1] = string.format('%d', w)
      out[#out + 1] = blob
    end
  end
end
return out
";

/// `KEYS`: ticks stream, late index, chunks hash. `ARGV`: the last
/// generated ID (`''`: do not check the stream) and the generation read
/// before, the stream ID to trim to (`''`: no trim), the sealed horizon
/// (`''`: unchanged), late IDs sealed (`n`, then `n` IDs), then `window1,
/// chunk1, …` (an empty chunk deletes the window). Returns 1 when written,
/// 0 when the stream or the chunks changed since the read (nothing
/// written; the caller retries later).
///
/// Sealing trims every entry with an ID below the trim ID, removes the
/// sealed late entries from the late index, raises `h` (the sealed
/// horizon), writes the chunks and bumps the generation `g`.
pub fn seal_commit() -> String {
    format!("{CHUNK_LUA}{SEAL_COMMIT_BODY}")
}

const SEAL_COMMIT_BODY: &str = r"
local stream, late, chunks = KEYS[1], KEYS[2], KEYS[3]
if ARGV[1] ~= '' and last_id(stream) ~= ARGV[1] then return 0 end
if (redis.call('HGET', chunks, 'g') or '0') ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[5])
if ARGV[3] ~= '' then
  redis.call('XTRIM', stream, 'MINID', ARGV[3])
  for i = 6, 5 + n, 500 do
    redis.call('ZREM', late, unpack(ARGV, i, math.min(i + 499, 5 + n)))
  end
end
if ARGV[4] ~= '' then
  local h = tonumber(redis.call('HGET', chunks, 'h') or '0')
  if tonumber(ARGV[4]) > h then redis.call('HSET', chunks, 'h', ARGV[4]) end
end
for i = 6 + n, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', chunks, ARGV[i])
  else
    redis.call('HSET', chunks, ARGV[i], ARGV[i + 1])
  end
end
redis.call('HINCRBY', chunks, 'g', 1)
return 1
";

/// `KEYS`: ticks stream, late index. `ARGV`: `from, to`. Returns the late
/// ticks with `from ≤ ts ≤ to` as `{ts1, values1, ts2, values2…}`.
pub const RANGE_LATE: &str = r"
local stream, late = KEYS[1], KEYS[2]
local out = {}
local ids = redis.call('ZRANGEBYSCORE', late, ARGV[1], ARGV[2])
for _, id in ipairs(ids) do
  local e = redis.call('XRANGE', stream, id, id)
  if #e > 0 then
    local f = e[1][2]
    local ts, v = nil, nil
    for j = 1, #f, 2 do
      if f[j] == 't' then ts = f[j + 1] elseif f[j] == 'v' then v = f[j + 1] end
    end
    if ts and v then
      out[#out + 1] = ts
      out[#out + 1] = v
    end
  end
end
return out
";

/// `KEYS`: ticks stream, late index, chunks hash. `ARGV`: `before` (≥ 0).
/// Removes the ticks with `ts < before`: stream entries, and sealed chunks
/// whose whole window is before it; deletes every key when no tick is
/// left. Returns `{ticks removed, 1 if the host has no tick left else 0,
/// generation, window1, window2…}` — the chunks that straddle `before`, for
/// the caller to rewrite (it cannot decode their values here).
pub fn prune() -> String {
    format!("{CHUNK_LUA}{PRUNE_BODY}")
}

const PRUNE_BODY: &str = r"
local stream, late, chunks, before = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local b = tonumber(before)
local removed = 0
local ids = redis.call('ZRANGEBYSCORE', late, '-inf', '(' .. before)
for i = 1, #ids, 500 do
  removed = removed + redis.call('XDEL', stream, unpack(ids, i, math.min(i + 499, #ids)))
end
redis.call('ZREMRANGEBYSCORE', late, '-inf', '(' .. before)
removed = removed + redis.call('XTRIM', stream, 'MINID', before)
local straddle = {}
local windows = 0
local changed = false
for _, f in ipairs(redis.call('HKEYS', chunks)) do
  local w = tonumber(f)
  if w and string.match(f, '^%d+$') then
    if w + CHUNK_MS <= b then
      local blob = redis.call('HGET', chunks, f)
      removed = removed + (chunk_n(blob) or 0)
      redis.call('HDEL', chunks, f)
      changed = true
    else
      windows = windows + 1
      if w < b then straddle[#straddle + 1] = f end
    end
  end
end
if changed then redis.call('HINCRBY', chunks, 'g', 1) end
if windows == 0 and (redis.call('EXISTS', stream) == 0 or redis.call('XLEN', stream) == 0) then
  redis.call('DEL', stream, late, chunks)
  return {removed, 1, '0'}
end
local out = {removed, 0, redis.call('HGET', chunks, 'g') or '0'}
for _, f in ipairs(straddle) do out[#out + 1] = f end
return out
";

/// `KEYS`: the registry. `ARGV`: `before, host1, host2…`. Removes each host
/// whose last-seen `ts` is still below `before` (a concurrent append of a
/// newer tick raised it). Returns how many were removed.
pub const FORGET: &str = r"
local n = 0
local before = tonumber(ARGV[1])
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) < before then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
";

/// The alert store's scripts. `KEYS` are [`crate::keys::AlertKeys`]' keys;
/// every key shares the hash tag `{<scope>:alerts}`.
pub(crate) mod alerts {
    /// `KEYS`: lease, token counter, meta. `ARGV`: holder, ttl (ms), a fresh
    /// epoch (used when the store has none), the caller's known epoch (`''`:
    /// none), grace (ms). Returns `{token or 0, renewed 0/1, epoch, wait ms or
    /// -1}`.
    ///
    /// The store's epoch (meta fields `epoch`, `epoch_at`) is created when
    /// missing: on first use, or when the store lost its data. A free lease is
    /// taken unless the caller knows another epoch and the store's is younger
    /// than the grace period (then it returns how long to wait).
    pub const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[3], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[3], 'epoch', epoch, 'epoch_at', string.format('%d', now))
end
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, holder = string.match(cur, '^(%d+):(.*)$')
  if tok and holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(tok), 1, epoch, -1}
  end
  return {0, 0, epoch, -1}
end
if ARGV[4] ~= '' and ARGV[4] ~= epoch then
  local age = now - (tonumber(redis.call('HGET', KEYS[3], 'epoch_at')) or 0)
  local grace = tonumber(ARGV[5])
  if age < grace then
    return {0, 0, epoch, grace - age}
  end
end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', tok) .. ':' .. ARGV[1], 'PX', ARGV[2])
return {tok, 0, epoch, -1}
";

    /// `KEYS`: lease, token counter, states, meta, outbox, outbox data,
    /// resolved, resolved data, dead list. `ARGV`: the caller's lease value,
    /// last evaluated (`''`: none), outbox seq, token floor, number of
    /// states, of outbox entries, of resolved incidents, of dead letters;
    /// then `key json` per state, `seq payload` per outbox entry, `end id
    /// json` per resolved incident, `at hook error payload` per dead letter
    /// (newest first). Fenced and type-checked as `COMMIT`. Replaces the
    /// states; adds the outbox entries under their own seqs, the resolved
    /// incidents, and the dead letters when the list is empty; raises the
    /// token counter and the outbox seq to at least the values given.
    pub const RESTORE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('BPFENCED the lease is not ' .. ARGV[1])
end
local expect = {'string', 'hash', 'hash', 'zset', 'hash', 'zset', 'hash', 'list'}
for k = 2, 9 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= expect[k - 1] then
    return redis.error_reply('BPCORRUPT key ' .. KEYS[k] .. ' is a ' .. t .. ', not a ' .. expect[k - 1])
  end
end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tonumber(ARGV[4]) > cur then
  redis.call('SET', KEYS[2], ARGV[4])
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[4], 'last_evaluated', ARGV[2])
end
local seq = tonumber(redis.call('HGET', KEYS[4], 'outbox_seq') or '0') or 0
if tonumber(ARGV[3]) > seq then seq = tonumber(ARGV[3]) end
local n_st, n_out, n_res, n_dead = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
redis.call('DEL', KEYS[3])
for _ = 1, n_st do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_out do
  redis.call('ZADD', KEYS[5], ARGV[i], ARGV[i])
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  if tonumber(ARGV[i]) > seq then seq = tonumber(ARGV[i]) end
  i = i + 2
end
redis.call('HSET', KEYS[4], 'outbox_seq', string.format('%d', seq))
for _ = 1, n_res do
  redis.call('ZADD', KEYS[7], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[8], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
local fill = redis.call('LLEN', KEYS[9]) == 0
for _ = 1, n_dead do
  if fill then
    redis.call('RPUSH', KEYS[9], '{"at":' .. ARGV[i] .. ',"hook":' .. cjson.encode(ARGV[i + 1])
      .. ',"error":' .. cjson.encode(ARGV[i + 2]) .. ',"payload":' .. cjson.encode(ARGV[i + 3]) .. '}')
  end
  i = i + 4
end
return seq
"#;

    /// `KEYS`: lease. `ARGV`: token, holder. Deletes the lease if it is
    /// exactly theirs.
    pub const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] .. ':' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

    /// `KEYS`: lease. Returns nil or `{value, pttl}`.
    pub const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
return {cur, redis.call('PTTL', KEYS[1])}
";

    /// `KEYS`: states, meta. Returns `{last_evaluated or nil, {k1, v1, ...}}`.
    pub const LOAD: &str = r"
return {redis.call('HGET', KEYS[2], 'last_evaluated'), redis.call('HGETALL', KEYS[1])}
";

    /// `KEYS`: lease, states, meta, outbox, outbox data, resolved, resolved
    /// data. `ARGV`: the caller's lease value `<token>:<holder>`,
    /// `evaluated_at`, number of state ops, of outbox entries, of resolved
    /// incidents, the expected last evaluated instant (`''`: no check); then
    /// the state ops in order (`s key json` or `d key`), the
    /// outbox payloads, and `end id json` per resolved incident. Returns the
    /// outbox seq after the commit. Fails with
    /// `BPFENCED` unless the lease is exactly the caller's (token *and* holder:
    /// a failover that loses the counter's last `INCR` can hand one token to two
    /// holders), with `BPCORRUPT` when a key has the wrong type, with
    /// `BPBEHIND <found>` when the expected last evaluated instant is not the
    /// stored one; all before any write.
    pub const COMMIT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('BPFENCED the lease is not ' .. ARGV[1])
end
local expect = {'hash', 'hash', 'zset', 'hash', 'zset', 'hash'}
for k = 2, 7 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= expect[k - 1] then
    return redis.error_reply('BPCORRUPT key ' .. KEYS[k] .. ' is a ' .. t .. ', not a ' .. expect[k - 1])
  end
end
local seq0 = redis.call('HGET', KEYS[3], 'outbox_seq')
local seq = 0
if seq0 then
  seq = tonumber(seq0)
  if not seq then
    return redis.error_reply('BPCORRUPT key ' .. KEYS[3] .. ' field outbox_seq is not a number')
  end
end
if ARGV[6] ~= '' then
  local last = redis.call('HGET', KEYS[3], 'last_evaluated')
  if last ~= ARGV[6] then
    return redis.error_reply('BPBEHIND ' .. (last or ''))
  end
end
local n_ops, n_out, n_res = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 7
for _ = 1, n_ops do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('HSET', KEYS[3], 'last_evaluated', ARGV[2])
for _ = 1, n_out do
  seq = seq + 1
  local s = string.format('%d', seq)
  redis.call('ZADD', KEYS[4], s, s)
  redis.call('HSET', KEYS[5], s, ARGV[i])
  i = i + 1
end
if n_out > 0 then
  redis.call('HSET', KEYS[3], 'outbox_seq', string.format('%d', seq))
end
for _ = 1, n_res do
  redis.call('ZADD', KEYS[6], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[7], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
return seq
";

    /// `KEYS`: outbox, outbox data. `ARGV`: last rank (limit - 1). Returns
    /// `{seq1, payload1, ...}`, oldest first.
    pub const OUTBOX: &str = r"
local seqs = redis.call('ZRANGE', KEYS[1], 0, ARGV[1])
local out = {}
for _, s in ipairs(seqs) do
  local p = redis.call('HGET', KEYS[2], s)
  if p then
    out[#out + 1] = s
    out[#out + 1] = p
  end
end
return out
";

    /// `KEYS`: outbox, outbox data. `ARGV`: seqs. Returns how many were there.
    pub const ACK: &str = r"
local n = 0
for _, s in ipairs(ARGV) do
  n = n + redis.call('ZREM', KEYS[1], s)
  redis.call('HDEL', KEYS[2], s)
end
return n
";

    /// `KEYS`: dead list. `ARGV`: at (integer), hook, error, payload, last
    /// index kept (max - 1).
    pub const DEAD_LETTER: &str = r#"
local j = '{"at":' .. ARGV[1] .. ',"hook":' .. cjson.encode(ARGV[2])
  .. ',"error":' .. cjson.encode(ARGV[3]) .. ',"payload":' .. cjson.encode(ARGV[4]) .. '}'
redis.call('LPUSH', KEYS[1], j)
redis.call('LTRIM', KEYS[1], 0, ARGV[5])
return 1
"#;

    /// `KEYS`: dead list. `ARGV`: last index (limit - 1). Returns `{skipped,
    /// at1, hook1, error1, payload1, ...}`, newest first; `skipped` counts
    /// entries that are not dead letters.
    pub const DEAD_LETTERS: &str = r"
local raw = redis.call('LRANGE', KEYS[1], 0, ARGV[1])
local out = {0}
for _, r in ipairs(raw) do
  local ok, d = pcall(cjson.decode, r)
  if ok and type(d) == 'table' and type(d.at) == 'number' and type(d.hook) == 'string'
    and type(d.error) == 'string' and type(d.payload) == 'string' then
    out[#out + 1] = string.format('%.0f', d.at)
    out[#out + 1] = d.hook
    out[#out + 1] = d.error
    out[#out + 1] = d.payload
  else
    out[1] = out[1] + 1
  end
end
return out
";

    /// `KEYS`: resolved, resolved data. `ARGV`: from, to, limit. Returns the
    /// JSON of incidents that ended within `from..=to`, oldest first.
    pub const RESOLVED: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local j = redis.call('HGET', KEYS[2], id)
  if j then out[#out + 1] = j end
end
return out
";

    /// `KEYS`: resolved, resolved data. `ARGV`: before, chunk. Removes up to
    /// `chunk` incidents that ended before `before`; returns how many.
    pub const PRUNE_RESOLVED: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #ids
";

    /// `KEYS`: the records hash of one kind. `ARGV`: id, expected version
    /// (0: none), keep-until ms, json, the most records. A record is the
    /// string `<version> <keep-until> <json>`. Returns `{1, new version}`,
    /// `{0, found version}` on a version mismatch, or `{-1, count}` when a
    /// new record would exceed the limit.
    pub const PUT_RECORD: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local v = 0
if cur then v = tonumber(string.match(cur, '^(%d+) ')) or 0 end
if v ~= tonumber(ARGV[2]) then return {0, v} end
if v == 0 then
  local n = redis.call('HLEN', KEYS[1])
  if n >= tonumber(ARGV[5]) then return {-1, n} end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', v + 1) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return {1, v + 1}
";

    /// `KEYS`: the records hashes. `ARGV`: before. Removes the records kept
    /// until before `before`; returns how many.
    pub const PRUNE_RECORDS: &str = r"
local removed = 0
for _, key in ipairs(KEYS) do
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local keep = tonumber(string.match(all[i + 1], '^%d+ (%-?%d+) '))
    if keep and keep < tonumber(ARGV[1]) then
      redis.call('HDEL', key, all[i])
      removed = removed + 1
    end
  end
end
return removed
";
}
