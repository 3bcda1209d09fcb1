"""The Lua scripts of the Redis book: each is one atomic step across every gateway process.

Redis is a cache of the ledger. Every script that reads an account's or key's figures first checks
the hash's `loaded` marker and answers a distinct status when it is missing (a flush, a restart, an
eviction), so the caller reloads the figures from the ledger and tries again. Money that moves while
a hash is not loaded is never dropped: a settlement's usage or a credit entry is parked in the
hash's pending set, and the loader counts each parked item exactly once (it asks the ledger, in the
same statement that sums the entries, which parked items the sums already include).

Key layout (PREFIX = tw:book:): acct:{id} and key:{id} hashes of figures; holds:{account} sorted set
of holds scored by expiry (member `process-hold|amount|key_id`); hold-expiries, a sorted set of
account ids scored by their earliest hold expiry, which the sweeper walks; pending:acct:{id} and
pending:key:{id} hashes of parked items; applied:{entry id} markers of credit entries counted;
epoch, present while Redis holds figures loaded since its last loss.
"""

from __future__ import annotations

PREFIX = "tw:book:"
HOLD_INDEX = PREFIX + "hold-expiries"
EPOCH = PREFIX + "epoch"  # a random token while Redis holds figures; a new one after each loss
MARKER_TTL_S = 7 * 24 * 3600
# A reload marks the usage entries settled in the last RECENT_USAGE_S as counted, so their settlement
# script (which runs right after the commit, within the flush timeout) does not count them again.
RECENT_USAGE_S = 120
COUNTED_TTL_S = 300
# A settlement marks its hold finished for this long: the runner sends a script again at once after a
# dropped connection (within its 2 s timeout), and a renewal is sent within a second of its snapshot of the
# open holds, so a retry or a late renewal finds the mark and does nothing.
RETRIED_TTL_S = 30
NOT_LOADED_ACCOUNT = -1
NOT_LOADED_KEY = -2
PENDING_CHANGED = -1


def account_hash(account_id: str) -> str:
    return f"{PREFIX}acct:{account_id}"


def key_hash(key_id: str) -> str:
    return f"{PREFIX}key:{key_id}"


def holds_set(account_id: str) -> str:
    return f"{PREFIX}holds:{account_id}"


def finished_mark(member: str) -> str:
    """Set by the settlement (or release) of the hold `member` for RETRIED_TTL_S: see SETTLE and RENEW."""
    return f"{PREFIX}finished:{member}"


def account_pending(account_id: str) -> str:
    return f"{PREFIX}pending:acct:{account_id}"


def key_pending(key_id: str) -> str:
    return f"{PREFIX}pending:key:{key_id}"


# Drop holds whose expiry passed, giving their amounts back to the account and the key. A hold expires
# when its process died (or stalled past the TTL): that process may have committed a settlement it never
# counted here, so the account and the keys concerned are unloaded and reload from the ledger.
PURGE = """
local function unload(hash)
  for _, field in ipairs(redis.call('HKEYS', hash)) do
    if field ~= 'held' and field ~= 'v' then redis.call('HDEL', hash, field) end
  end
  redis.call('HINCRBY', hash, 'v', 1)  -- a load that began before this must begin again
end
local function purge(prefix, acct, holds, now)
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, member in ipairs(expired) do
    local _, _, amount, key_id = string.find(member, '^[^|]*|([^|]*)|(.*)$')
    if amount ~= '0' then redis.call('HINCRBY', acct, 'held', '-' .. amount) end
    if key_id ~= '' then
      local key_hash = prefix .. 'key:' .. key_id
      if amount ~= '0' then redis.call('HINCRBY', key_hash, 'held', '-' .. amount) end
      unload(key_hash)
    end
    redis.call('ZREM', holds, member)
  end
  if #expired > 0 then unload(acct) end
  return #expired
end
"""

# A rider is another component's step run inside the book's own script (see book.Rider), so that a
# request's rate limits and its hold are taken in one atomic round trip, and released in one. Its Lua
# defines three hooks; these are the hooks of the book alone.
NO_RIDER = """
local function rider_check(keys, argv) return true, {}, nil end
local function rider_take(keys, argv, state) end
local function rider_end(keys, argv) end
"""
RIDER_REFUSED = -3

_RESERVE = """
-- KEYS: account hash, key hash, holds zset, hold index, then the rider's keys. ARGV: prefix, now, amount,
--       limit (-1 none), window field, member, expiry, day field, week field, month field, account id, then
--       the rider's arguments.
if redis.call('HEXISTS', KEYS[1], 'loaded') == 0 then return {-1} end
if redis.call('HEXISTS', KEYS[2], 'loaded') == 0 then return {-2} end
local now = tonumber(ARGV[2])
if purge(ARGV[1], KEYS[1], KEYS[3], now) > 0 then return {-1} end
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local a = redis.call('HMGET', KEYS[1], 'credits', 'usage', 'held')
local credits, usage, held = tonumber(a[1] or '0'), tonumber(a[2] or '0'), tonumber(a[3] or '0')
local k = redis.call('HMGET', KEYS[2], ARGV[5], 'held')
local window_used, key_held = tonumber(k[1] or '0'), tonumber(k[2] or '0')
local ok
if amount == 0 then ok = credits - usage >= 0 else ok = credits - usage - held >= amount end
if limit >= 0 then
  local left = limit - window_used - key_held
  ok = ok and left > 0 and left >= amount
end
local rider_reply = {}
-- A retry after a lost reply finds its hold already placed: the same answer, nothing counted twice
-- (the rider's step was taken with the hold).
if redis.call('ZSCORE', KEYS[3], ARGV[6]) then
  ok = true
else
  -- The rider decides first (a rate limit refuses before credits are looked at); when it or the hold
  -- refuses, neither takes anything.
  local rider_keys, rider_argv = {unpack(KEYS, 5)}, {unpack(ARGV, 12)}
  local allowed, reply, state = rider_check(rider_keys, rider_argv)
  if not allowed then
    table.insert(reply, 1, RIDER_REFUSED)
    return reply
  end
  rider_reply = reply
  if ok then
    redis.call('HINCRBY', KEYS[1], 'held', ARGV[3])
    redis.call('HINCRBY', KEYS[2], 'held', ARGV[3])
    redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
    redis.call('ZADD', KEYS[4], 'LT', ARGV[7], ARGV[11])
    rider_take(rider_keys, rider_argv, state)
  end
end
-- The figures before this reservation, so a refusal can be explained without another round trip.
local extra = redis.call('HMGET', KEYS[1], 'purchased', 'granted')
local windows = redis.call('HMGET', KEYS[2], 'total', ARGV[8], ARGV[9], ARGV[10])
local result = {ok and 1 or 0, credits, usage, held, tonumber(extra[1] or '0'), tonumber(extra[2] or '0'),
        tonumber(windows[1] or '0'), tonumber(windows[2] or '0'), tonumber(windows[3] or '0'),
        tonumber(windows[4] or '0'), key_held}
for _, value in ipairs(rider_reply) do result[#result + 1] = value end
return result
""".replace("RIDER_REFUSED", str(RIDER_REFUSED))

_SETTLE = """
-- KEYS: account hash, key hash, holds zset, account pending, key pending, account counted marker, key counted
--       marker, the hold's finished mark, then the rider's keys. ARGV: member, amount, cost, day field, week
--       field, month field, count usage (1/0), generation id, has key (1/0), then the rider's arguments. A
--       counted marker means a reload already counted this settlement from the ledger.
-- The finished mark: run again after its reply was lost with the connection (the runner's one retry), the
-- script finds it and changes nothing (no cost, no limit correction counted twice); and a renewal sent
-- before this settlement but run after it (another connection) finds it and does not put the hold back.
if ARGV[1] ~= '' and not redis.call('SET', KEYS[8], '1', 'NX', 'EX', RETRIED_TTL) then return 1 end
local has_key = ARGV[9] == '1'
if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 and ARGV[2] ~= '0' then
  redis.call('HINCRBY', KEYS[1], 'held', '-' .. ARGV[2])
  if has_key then redis.call('HINCRBY', KEYS[2], 'held', '-' .. ARGV[2]) end
end
if ARGV[3] ~= '0' and ARGV[7] == '1' then
  if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then
    if redis.call('DEL', KEYS[6]) == 0 then redis.call('HINCRBY', KEYS[1], 'usage', ARGV[3]) end
  else
    redis.call('HSET', KEYS[4], 'g:' .. ARGV[8], 'u|' .. ARGV[3])
  end
  if has_key then
    local key_loaded = redis.call('HEXISTS', KEYS[2], 'loaded') == 1
    if key_loaded and redis.call('DEL', KEYS[7]) == 0 then
      redis.call('HINCRBY', KEYS[2], 'total', ARGV[3])
      redis.call('HINCRBY', KEYS[2], ARGV[4], ARGV[3])
      redis.call('HINCRBY', KEYS[2], ARGV[5], ARGV[3])
      redis.call('HINCRBY', KEYS[2], ARGV[6], ARGV[3])
    elseif not key_loaded then
      redis.call('HSET', KEYS[5], ARGV[8], ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6])
    end
  end
end
rider_end({unpack(KEYS, 9)}, {unpack(ARGV, 10)})
return 1
""".replace("RETRIED_TTL", str(RETRIED_TTL_S))


def reserve_script(rider: str = NO_RIDER) -> str:
    """Place a hold (and take the rider's step with it), or take nothing."""
    return PURGE + rider + _RESERVE


def settle_script(rider: str = NO_RIDER) -> str:
    """Replace a hold by its cost (and end the rider's step in the same script)."""
    return rider + _SETTLE


RESERVE = reserve_script()
SETTLE = settle_script()

# A live request keeps its hold: push the expiry out; a hold that vanished (flush, expiry) is put back.
RENEW = """
-- KEYS: account hash, key hash, holds zset, hold index, the hold's finished mark. ARGV: member, amount,
--       expiry, account id, has key. A hold settled or released since the renewal was sent stays gone.
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local added = redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], 'held', ARGV[2])
  if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[2], 'held', ARGV[2]) end
end
redis.call('ZADD', KEYS[4], 'LT', ARGV[3], ARGV[4])
return added
"""

# Release every expired hold of every account: the index names the accounts whose earliest hold expired.
SWEEP = (
    PURGE
    + """
-- KEYS: hold index. ARGV: prefix, now, batch size
local accounts = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local released = 0
for _, account in ipairs(accounts) do
  local holds = ARGV[1] .. 'holds:' .. account
  released = released + purge(ARGV[1], ARGV[1] .. 'acct:' .. account, holds, tonumber(ARGV[2]))
  local first = redis.call('ZRANGE', holds, 0, 0, 'WITHSCORES')
  if #first == 0 then redis.call('ZREM', KEYS[1], account) else redis.call('ZADD', KEYS[1], first[2], account) end
end
return released
"""
)

APPLY_ONCE = """
-- KEYS: account hash, marker, account pending. ARGV: entry id, amount, purchased delta, granted delta
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'loaded') == 0 then
  -- Not loaded: park it; the loader counts it unless the ledger sums it already include it.
  redis.call('HSET', KEYS[3], 'e:' .. ARGV[1], 'c|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
  return 2
end
redis.call('SET', KEYS[2], '1', 'EX', MARKER_TTL)
redis.call('HINCRBY', KEYS[1], 'credits', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'purchased', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'granted', ARGV[4])
return 1
""".replace("MARKER_TTL", str(MARKER_TTL_S))

# Shared by both loaders. A load is undone by anything that happened since it began reading: Redis
# lost everything (the epoch token changed), the hash was unloaded again (its version changed), or items
# were parked that the loader did not see. Then it answers -1 and the loader begins again.
_READ_SETS = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return {-1} end
if (redis.call('HGET', KEYS[1], 'v') or '') ~= ARGV[3] then return {-1} end
local i = 4
local seen, included = {}, {}
local n = tonumber(ARGV[i])
for j = 1, n do seen[ARGV[i + j]] = true end
i = i + n + 1
n = tonumber(ARGV[i])
for j = 1, n do included[ARGV[i + j]] = true end
i = i + n + 1
local parked = redis.call('HGETALL', KEYS[2])
for j = 1, #parked, 2 do
  if not seen[parked[j]] then return {-1} end
end
"""

LOAD_ACCOUNT = (
    """
-- KEYS: account hash, account pending, epoch. ARGV: prefix, epoch token, version ('' for none) read before
--       the pending set, n seen, seen..., n included, included...,
--       credits, usage, purchased, granted, n, ids of recent credit entries the sums include...,
--       generation ids of recent usage entries the sums include (their settlement may not have reached Redis)
if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then return {0} end
"""
    + _READ_SETS
    + """
local prefix = ARGV[1]
redis.call('HINCRBY', KEYS[1], 'credits', ARGV[i])
redis.call('HINCRBY', KEYS[1], 'usage', ARGV[i + 1])
redis.call('HINCRBY', KEYS[1], 'purchased', ARGV[i + 2])
redis.call('HINCRBY', KEYS[1], 'granted', ARGV[i + 3])
for j = 1, #parked, 2 do
  local field, value = parked[j], parked[j + 1]
  if string.sub(field, 1, 2) == 'e:' then
    redis.call('SET', prefix .. 'applied:' .. string.sub(field, 3), '1', 'EX', MARKER_TTL)
  end
  if not included[field] then
    if string.sub(value, 1, 2) == 'u|' then
      redis.call('HINCRBY', KEYS[1], 'usage', string.sub(value, 3))
    else
      local _, _, amount, purchased, granted = string.find(value, '^c|([^|]*)|([^|]*)|(.*)$')
      redis.call('HINCRBY', KEYS[1], 'credits', amount)
      redis.call('HINCRBY', KEYS[1], 'purchased', purchased)
      redis.call('HINCRBY', KEYS[1], 'granted', granted)
    end
  end
end
local n_credits = tonumber(ARGV[i + 4])
for j = i + 5, i + 4 + n_credits do
  redis.call('SET', prefix .. 'applied:' .. ARGV[j], '1', 'NX', 'EX', MARKER_TTL)
end
for j = i + 5 + n_credits, #ARGV do
  redis.call('SET', prefix .. 'counted:a:' .. ARGV[j], '1', 'EX', COUNTED_TTL)
end
redis.call('HSET', KEYS[1], 'loaded', '1')
redis.call('DEL', KEYS[2])
return {1}
""".replace("MARKER_TTL", str(MARKER_TTL_S)).replace("COUNTED_TTL", str(COUNTED_TTL_S))
)

LOAD_KEY = (
    """
-- KEYS: key hash, key pending, epoch. ARGV: prefix, epoch token, version, n seen, seen..., n included,
--       included..., n, generation ids
--       of recent usage entries the sums include..., field, value, ... (total and the current windows)
if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then return {0} end
"""
    + _READ_SETS
    + """
local n_recent = tonumber(ARGV[i])
for j = i + 1, i + n_recent do
  redis.call('SET', ARGV[1] .. 'counted:k:' .. ARGV[j], '1', 'EX', COUNTED_TTL)
end
for j = i + n_recent + 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[j], ARGV[j + 1]) end
for j = 1, #parked, 2 do
  if not included[parked[j]] then
    local _, _, cost, day, week, month = string.find(parked[j + 1], '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    redis.call('HINCRBY', KEYS[1], 'total', cost)
    redis.call('HINCRBY', KEYS[1], day, cost)
    redis.call('HINCRBY', KEYS[1], week, cost)
    redis.call('HINCRBY', KEYS[1], month, cost)
  end
end
redis.call('HSET', KEYS[1], 'loaded', '1')
redis.call('DEL', KEYS[2])
return {1}
""".replace("COUNTED_TTL", str(COUNTED_TTL_S))
)

# reconcile --fix: held becomes the sum of the live holds, and the other figures are dropped so the
# next reader reloads them from the ledger (parked items then count as for any reload).
REPAIR = (
    PURGE
    + """
-- KEYS: account hash, holds zset. ARGV: prefix, now, unload account (1/0), then key ids of the account,
--       each followed by 1/0 (unload that key)
local prefix = ARGV[1]
purge(prefix, KEYS[1], KEYS[2], tonumber(ARGV[2]))
local by_key, total = {}, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local _, _, amount, key_id = string.find(member, '^[^|]*|([^|]*)|(.*)$')
  total = total + tonumber(amount)
  by_key[key_id] = (by_key[key_id] or 0) + tonumber(amount)
end
redis.call('HSET', KEYS[1], 'held', string.format('%.0f', total))
if ARGV[3] == '1' then unload(KEYS[1]) end
for j = 4, #ARGV, 2 do
  local hash = prefix .. 'key:' .. ARGV[j]
  redis.call('HSET', hash, 'held', string.format('%.0f', by_key[ARGV[j]] or 0))
  if ARGV[j + 1] == '1' then unload(hash) end
end
return 1
"""
)

# Figures that may miss a settlement committed late (after its Redis step): reload them from the ledger.
FORGET = """
-- KEYS: account and key hashes
for _, hash in ipairs(KEYS) do
  for _, field in ipairs(redis.call('HKEYS', hash)) do
    if field ~= 'held' and field ~= 'v' then redis.call('HDEL', hash, field) end
  end
  redis.call('HINCRBY', hash, 'v', 1)
end
return #KEYS
"""
