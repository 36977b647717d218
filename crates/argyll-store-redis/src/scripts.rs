//! The server-side scripts. Each touches keys of one hash slot only (every key of one call
//! shares a `{hash tag}`), so they run unchanged on Redis Cluster. They are loaded once per
//! server and called by their SHA (`EVALSHA`, reloaded on `NOSCRIPT`).

/// Optimistic append. KEYS: events list. ARGV: expected next sequence, records...
/// Returns `{1, first_sequence}` or `{0, actual_next_sequence}`.
pub(crate) const APPEND: &str = r#"
local len = redis.call('LLEN', KEYS[1])
if len ~= tonumber(ARGV[1]) then return {0, len} end
for i = 2, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return {1, len}
"#;

/// Optimistic append that also publishes the batch on the feed stream, atomically — for a
/// single server, where the aggregate's keys and the feed live on one node (on a cluster the
/// feed is published by a separate `XADD`). KEYS: events list, feed stream. ARGV: expected next
/// sequence, stream max length, batch JSON, records... Replies as [`APPEND`].
pub(crate) const APPEND_PUBLISH: &str = r#"
local len = redis.call('LLEN', KEYS[1])
if len ~= tonumber(ARGV[1]) then return {0, len} end
for i = 4, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[3])
return {1, len}
"#;

/// Snapshot + tail in one atomic read. KEYS: events list, snapshot hash.
/// Returns `{snapshot_sequence or false, snapshot_state or false, {records...}, next_sequence}`.
pub(crate) const LOAD: &str = r#"
local snap = redis.call('HMGET', KEYS[2], 'seq', 'state')
local from = 0
if snap[1] then from = tonumber(snap[1]) end
local tail = redis.call('LRANGE', KEYS[1], from, -1)
return {snap[1], snap[2], tail, from + #tail}
"#;

/// Stores a snapshot unless an equal or newer one exists. KEYS: events list, snapshot hash.
/// ARGV: sequence, state. Returns the log length (the caller rejects a snapshot beyond it)
/// as `{stored (0/1), log_length}`.
pub(crate) const PUT_SNAPSHOT: &str = r#"
local len = redis.call('LLEN', KEYS[1])
local seq = tonumber(ARGV[1])
if seq > len then return {0, len} end
local current = redis.call('HGET', KEYS[2], 'seq')
if current and tonumber(current) >= seq then return {0, len} end
redis.call('HSET', KEYS[2], 'seq', ARGV[1], 'state', ARGV[2])
return {1, len}
"#;

/// Index insert-if-absent. KEYS: entries hash, ids zset, one ids zset per phase (active,
/// deactivated, archiving, archived), the deactivated ids scored by completion time, then all
/// ids scored by creation time. ARGV: id, entry, phase number (1-4), completion time (ms),
/// creation time (µs).
pub(crate) const INDEX_INSERT: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  redis.call('ZADD', KEYS[2 + tonumber(ARGV[3])], 0, ARGV[1])
  if tonumber(ARGV[3]) == 2 then redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1]) end
  redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
  return 1
end
return 0
"#;

/// Index put: the entry, its id in its phase's set only, in the recency set while
/// deactivated, and in the creation-time set. KEYS and ARGV as [`INDEX_INSERT`].
pub(crate) const INDEX_PUT: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
for i = 3, 6 do
  if i == 2 + tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[i], 0, ARGV[1])
  else
    redis.call('ZREM', KEYS[i], ARGV[1])
  end
end
if tonumber(ARGV[3]) == 2 then
  redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[7], ARGV[1])
end
redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
return 1
"#;

/// A script that selects `ids` with `$select` (KEYS[2] is the zset to read) and answers
/// `{id, entry, id, entry, ...}` with each id's entry from the hash KEYS[1] ('' if gone).
macro_rules! ids_with_entries {
    ($select:literal) => {
        concat!(
            "\n",
            $select,
            r#"
local out = {}
if #ids == 0 then return out end
local entries = redis.call('HMGET', KEYS[1], unpack(ids))
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = entries[i] or ''
end
return out
"#
        )
    };
}

/// The most recently deactivated flows. KEYS: entries hash, the recency zset. ARGV: count.
/// Returns `{id, entry, ...}` newest first (by completion time, then id).
pub(crate) const INDEX_RECENT: &str =
    ids_with_entries!("local ids = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)");

/// The oldest deactivated flows that finished before a time. KEYS: entries hash, the recency
/// zset. ARGV: the time (ms, exclusive), count. Returns `{id, entry, ...}` oldest first.
pub(crate) const INDEX_OLDEST: &str = ids_with_entries!(
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))"
);

/// Index remove (from every set, the creation-time set too). KEYS as [`INDEX_INSERT`].
/// ARGV: id.
pub(crate) const INDEX_REMOVE: &str = r#"
for i = 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return redis.call('HDEL', KEYS[1], ARGV[1])
"#;

/// One index page candidate batch. KEYS: entries hash, the ids zset to walk (all ids, or one
/// phase's). ARGV: min (lex), count. Returns `{id, entry, id, entry, ...}` in id order.
pub(crate) const INDEX_RANGE: &str = ids_with_entries!(
    "local ids = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))"
);

/// One batch of the creation-time order after a cursor. KEYS: entries hash, the creation-time
/// zset (ids scored by creation time in µs; equal scores in id order). ARGV: `asc` or `desc`,
/// count, and optionally the cursor's score and id. Returns `{id, score, entry, ...}` (entry
/// `''` if gone) of the `count` ids after the cursor in (score, id) order — before it, for
/// `desc`. The cursor's place is found by rank (`ZCOUNT` for its score, then a binary search
/// among the ids sharing it), so it holds when its own id was removed meanwhile, and a batch
/// costs O(log n + count). Ids compare byte by byte, as the zset orders them (Lua's own
/// string order follows the server's locale).
pub(crate) const INDEX_BY_CREATED: &str = r#"
local key = KEYS[2]
local count = tonumber(ARGV[2])
local function less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- How many members sort before (score, id), or up to it with `inclusive`.
local function position(score, id, inclusive)
  local lo = redis.call('ZCOUNT', key, '-inf', '(' .. score)
  local hi = lo + redis.call('ZCOUNT', key, score, score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local member = redis.call('ZRANGE', key, mid, mid)[1]
    if less(member, id) or (inclusive and member == id) then lo = mid + 1 else hi = mid end
  end
  return lo
end
local items
if ARGV[1] == 'asc' then
  local from = 0
  if ARGV[3] then from = position(ARGV[3], ARGV[4], true) end
  items = redis.call('ZRANGE', key, from, from + count - 1, 'WITHSCORES')
else
  local total = redis.call('ZCARD', key)
  local before = total
  if ARGV[3] then before = position(ARGV[3], ARGV[4], false) end
  if before == 0 then
    items = {}
  else
    items = redis.call('ZREVRANGE', key, total - before, total - before + count - 1, 'WITHSCORES')
  end
end
local out = {}
if #items == 0 then return out end
local ids = {}
for i = 1, #items, 2 do ids[#ids + 1] = items[i] end
local entries = redis.call('HMGET', KEYS[1], unpack(ids))
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = items[2 * i]
  out[#out + 1] = entries[i] or ''
end
return out
"#;

/// Backfills the creation-time zset with flows indexed before it existed. KEYS: entries hash,
/// the creation-time zset. ARGV: score, id, score, id... Adds each id still in the index (a
/// flow removed meanwhile stays out) unless it is there.
pub(crate) const INDEX_BACKFILL_CREATED: &str = r#"
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i + 1]) == 1 then
    added = added + redis.call('ZADD', KEYS[2], 'NX', ARGV[i], ARGV[i + 1])
  end
end
return added
"#;

/// Lease acquire. KEYS: expiries zset, owners hash. ARGV: key, owner, now_ms, expires_ms.
pub(crate) const LEASE_ACQUIRE: &str = r#"
local owner = redis.call('HGET', KEYS[2], ARGV[1])
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] and expires and tonumber(expires) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return 1
"#;

/// Lease renew. KEYS: expiries zset, owners hash. ARGV: key, owner, expires_ms.
pub(crate) const LEASE_RENEW: &str = r#"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"#;

/// Lease release. KEYS: expiries zset, owners hash. ARGV: key, owner.
pub(crate) const LEASE_RELEASE: &str = r#"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#;

/// Lease release-then-acquire, for any number of keys of each. KEYS: expiries zset, owners hash.
/// ARGV: owner, now_ms, expires_ms, release_count, released key..., acquired key... Returns one
/// 0/1 per key, released keys first (whether the owner held it), then acquired keys (whether it
/// was taken).
pub(crate) const LEASE_EXCHANGE: &str = r#"
local first = 5 + tonumber(ARGV[4])
local out = {}
for i = 5, first - 1 do
  local key = ARGV[i]
  if redis.call('HGET', KEYS[2], key) == ARGV[1] then
    redis.call('HDEL', KEYS[2], key)
    redis.call('ZREM', KEYS[1], key)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
for i = first, #ARGV do
  local key = ARGV[i]
  local owner = redis.call('HGET', KEYS[2], key)
  local expires = redis.call('ZSCORE', KEYS[1], key)
  if owner and owner ~= ARGV[1] and expires and tonumber(expires) >= tonumber(ARGV[2]) then
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[2], key, ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[3], key)
    out[#out + 1] = 1
  end
end
return out
"#;

/// Lapsed leases with a key prefix. KEYS: expiries zset, owners hash. ARGV: now_ms, limit,
/// prefix. Returns `{key, owner, expires_ms, ...}`.
pub(crate) const LEASE_LAPSED: &str = r#"
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'WITHSCORES')
local out = {}
local limit = tonumber(ARGV[2])
local prefix = ARGV[3]
for i = 1, #keys, 2 do
  if #out >= limit * 3 then break end
  if string.sub(keys[i], 1, #prefix) == prefix then
    out[#out + 1] = keys[i]
    out[#out + 1] = redis.call('HGET', KEYS[2], keys[i]) or ''
    out[#out + 1] = keys[i + 1]
  end
end
return out
"#;

/// Deletes an aggregate. KEYS: events list, snapshot hash. Returns how many keys existed.
pub(crate) const DELETE: &str = r#"
return redis.call('DEL', KEYS[1], KEYS[2])
"#;

/// Timer schedule. KEYS: due zset, payloads hash. ARGV: key, due_ms, payload.
pub(crate) const TIMER_SCHEDULE: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"#;

/// Timer cancel. KEYS: due zset, payloads hash. ARGV: key.
pub(crate) const TIMER_CANCEL: &str = r#"
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"#;

/// Claims due timers exactly once. KEYS: due zset, payloads hash. ARGV: now_ms, limit.
/// Returns `{key, payload, due_ms, ...}` (the shape of [`LEASE_LAPSED`]).
pub(crate) const TIMER_TAKE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
  out[#out + 1] = due[i]
  out[#out + 1] = redis.call('HGET', KEYS[2], due[i]) or ''
  out[#out + 1] = due[i + 1]
  redis.call('HDEL', KEYS[2], due[i])
end
return out
"#;
