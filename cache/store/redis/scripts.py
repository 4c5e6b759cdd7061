"""The Lua scripts that make each shared step atomic, and typed calls to them.

Each script touches keys of one hash tag only (one item, the capacity slot, one sha256
set), so it runs on a Redis Cluster as well as on one server. Scripts are sent with
EVALSHA and loaded again on NOSCRIPT (redis-py `register_script`). Times are Unix ms from
the calling node's injected clock, never Redis's own clock, so a ManualClock test controls
them and every node judges a deadline by the same wall clock it wrote it with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .codec import from_json, text
from .keys import RedisClient, RedisKeys

# KEYS: counters, ledger, sizes. ARGV: id, size, deadline_ms, max_bytes, max_items.
# -> {1, bytes, items} reserved, or {0, bytes, items, the deadline by which the earliest
# reservations free room for this one}: the ledger walked in deadline order, at most 256
# entries (past that, the last one walked: a lower bound). A retried call finds its id in
# the ledger and reserves nothing twice.
RESERVE = """
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local items = tonumber(redis.call('HGET', KEYS[1], 'items') or '0')
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {1, bytes, items} end
local size = tonumber(ARGV[2])
local over_bytes = bytes + size - tonumber(ARGV[4])
local over_items = items + 1 - tonumber(ARGV[5])
if over_items > 0 or over_bytes > 0 then
  local at = false
  local walk = redis.call('ZRANGE', KEYS[2], 0, 255, 'WITHSCORES')
  for i = 1, #walk, 2 do
    if over_bytes <= 0 and over_items <= 0 then break end
    over_bytes = over_bytes - tonumber(redis.call('HGET', KEYS[3], walk[i]) or '0')
    over_items = over_items - 1
    at = walk[i + 1]
  end
  return {0, bytes, items, at}
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], size)
bytes = redis.call('HINCRBY', KEYS[1], 'bytes', size)
items = redis.call('HINCRBY', KEYS[1], 'items', 1)
return {1, bytes, items}
"""

# A Lua function for scripts whose KEYS start with counters, ledger, sizes (`keys.capacity`):
# give back the capacity reserved for `ids` -> {bytes, items, released}. Only an id still in
# the ledger is released (ZREM answers to exactly one caller): a release never doubles.
RELEASE_HELD = """
local function release_held(ids)
  local held, seen, freed = {}, {}, 0
  if #ids > 0 then
    local scores = redis.call('ZMSCORE', KEYS[2], unpack(ids))
    for i = 1, #ids do
      if scores[i] and not seen[ids[i]] then
        seen[ids[i]] = true
        held[#held + 1] = ids[i]
      end
    end
  end
  if #held > 0 then
    redis.call('ZREM', KEYS[2], unpack(held))
    for _, size in ipairs(redis.call('HMGET', KEYS[3], unpack(held))) do
      freed = freed + tonumber(size or '0')
    end
    redis.call('HDEL', KEYS[3], unpack(held))
  end
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', 0 - freed)
  local items = redis.call('HINCRBY', KEYS[1], 'items', 0 - #held)
  return {bytes, items, #held}
end
"""

# KEYS: counters, ledger, sizes. ARGV: ids. -> {bytes, items, released}.
RELEASE = RELEASE_HELD + "return release_held(ARGV)\n"

# KEYS: counters, ledger, sizes. ARGV: ids. -> {bytes, items, lines "id size"}: the ids
# still reserved, now released. An id of a TAKE that found its keys gone but still
# reserved was deleted by no node (a TAKE releases in the same script): Redis lost it.
RELEASE_LOST = (
    RELEASE_HELD
    + """
local held, out = {}, {}
for i = 1, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    held[#held + 1] = ARGV[i]
    out[#out + 1] = ARGV[i] .. ' ' .. (redis.call('HGET', KEYS[3], ARGV[i]) or '0')
  end
end
local counters = release_held(held)
return {counters[1], counters[2], table.concat(out, '\\n')}
"""
)

# KEYS: data, meta. ARGV: px, bytes, then meta field/value pairs. Both keys or neither;
# keys already there mean a retried call that had succeeded (ids are 128 random bits).
WRITE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# Metadata comes back as one JSON string: a flat HGETALL reply costs redis-py's pure-Python
# parser a read per field, the dominant cost of a purge.
META_JSON = """
local function meta_json(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return false end
  local meta = {}
  for i = 1, #flat, 2 do meta[flat[i]] = flat[i + 1] end
  return cjson.encode(meta)
end
"""

# KEYS: data, meta. ARGV: now_ms, count (1 or 0).
# -> {0} unknown, {-1} past its deadline, {1, data, meta} served, {2, data, meta} served and
# deleted (its last read). Check, decrement and delete are one step: concurrent readers on
# any number of nodes get exactly max_reads bodies.
READ = (
    META_JSON
    + """
local deadline = redis.call('HGET', KEYS[2], 'deadline_ms')
if not deadline then return {0} end
if tonumber(ARGV[1]) >= tonumber(deadline) then return {-1} end
local data = redis.call('GET', KEYS[1])
if not data then return {0} end
local left = nil
if ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[2], 'reads', 1)
  if redis.call('HEXISTS', KEYS[2], 'reads_left') == 1 then
    left = redis.call('HINCRBY', KEYS[2], 'reads_left', -1)
  end
end
local meta = meta_json(KEYS[2])
if left ~= nil and left <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {2, data, meta}
end
return {1, data, meta}
"""
)

# KEYS: sha256 set. ARGV: id, px. The set lives as long as its longest-lived item.
SHA_ADD = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

# KEYS: one kind's blocklist set, the version counter. ARGV: 'add' or 'rem', then hashes.
# -> {how many were new (or gone), the version}. The version moves only on a real change.
BLOCKLIST_CHANGE = """
local n = 0
for i = 2, #ARGV do
  if ARGV[1] == 'add' then
    n = n + redis.call('SADD', KEYS[1], ARGV[i])
  else
    n = n + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
if n > 0 then return {n, redis.call('INCR', KEYS[2])} end
return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

MISSING, EXPIRED, SERVED, LAST_READ = 0, -1, 1, 2


@dataclass(frozen=True, slots=True)
class Counters:
    bytes: int
    items: int


@dataclass(frozen=True, slots=True)
class Reservation:
    ok: bool
    counters: Counters
    earliest_deadline_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    status: int
    data: bytes = b""
    meta: Mapping[str, str] | None = None


class Scripts:
    def __init__(self, client: RedisClient, layout: RedisKeys) -> None:
        self._layout = layout
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)
        self._read = client.register_script(READ)

    async def reserve(
        self, item_id: str, size: int, deadline_ms: int, max_bytes: int, max_items: int
    ) -> Reservation:
        reply = await self._reserve(
            keys=self._layout.capacity, args=[item_id, size, deadline_ms, max_bytes, max_items]
        )
        counters = Counters(int(reply[1]), int(reply[2]))
        if int(reply[0]) == 1:
            return Reservation(True, counters)
        earliest = reply[3] if len(reply) > 3 else None
        return Reservation(False, counters, None if earliest is None else int(float(earliest)))

    async def release(self, ids: Sequence[str]) -> tuple[Counters, int]:
        """-> the counters after, and how many of `ids` were still reserved."""
        reply = await self._release(keys=self._layout.capacity, args=list(ids))
        return Counters(int(reply[0]), int(reply[1])), int(reply[2])

    async def read(self, item_id: str, now_ms: int, count: bool) -> ReadResult:
        keys = [self._layout.data(item_id), self._layout.meta(item_id)]
        reply = await self._read(keys=keys, args=[now_ms, 1 if count else 0])
        status = int(reply[0])
        if status in (MISSING, EXPIRED):
            return ReadResult(status)
        data = reply[1] if isinstance(reply[1], bytes) else text(reply[1]).encode()
        return ReadResult(status, data, from_json(reply[2]))
