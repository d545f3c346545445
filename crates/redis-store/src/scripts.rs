//! Lua scripts for the steps that must be atomic. Every script touches only
//! the keys passed in `KEYS`, and those share one hash tag.

/// `KEYS`: ticks stream, late index. `ARGV`: `ts1, values1, ts2, values2…`
/// sorted by `ts`. Returns `{written, duplicates}`.
///
/// In-order ticks (`ts` above the stream's last ID) are added with the ID
/// `<ts>-0` and one field `v`. A tick at or below the last ID is a duplicate
/// when `<ts>-0` is in the stream or `ts` is in the late index; otherwise it
/// is added with the next ID after the stream's last one and fields `t`
/// (its `ts`) and `v`, and indexed in the late index by `ts`.
pub const APPEND: &str = r"
local stream, late = KEYS[1], KEYS[2]
local written, dups = 0, 0
local top_ms, top_seq = nil, nil
for i = 1, #ARGV, 2 do
  local ts, enc = ARGV[i], ARGV[i + 1]
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
        top_ms, top_seq = '0', 0
        if redis.call('EXISTS', stream) == 1 then
          local info = redis.call('XINFO', 'STREAM', stream)
          for j = 1, #info, 2 do
            if info[j] == 'last-generated-id' then
              local ms, seq = string.match(info[j + 1], '^(%d+)-(%d+)$')
              top_ms, top_seq = ms, tonumber(seq)
            end
          end
        end
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
return {written, dups}
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

/// `KEYS`: ticks stream, late index. `ARGV`: `before` (≥ 0). Removes the
/// ticks with `ts < before`; deletes both keys when no tick is left.
/// Returns `{ticks removed, 1 if the host has no tick left else 0}`.
pub const PRUNE: &str = r"
local stream, late, before = KEYS[1], KEYS[2], ARGV[1]
local removed = 0
local ids = redis.call('ZRANGEBYSCORE', late, '-inf', '(' .. before)
for i = 1, #ids, 500 do
  removed = removed + redis.call('XDEL', stream, unpack(ids, i, math.min(i + 499, #ids)))
end
redis.call('ZREMRANGEBYSCORE', late, '-inf', '(' .. before)
if redis.call('EXISTS', stream) == 0 then
  redis.call('DEL', late)
  return {removed, 1}
end
removed = removed + redis.call('XTRIM', stream, 'MINID', before)
if redis.call('XLEN', stream) == 0 then
  redis.call('DEL', stream, late)
  return {removed, 1}
end
return {removed, 0}
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
