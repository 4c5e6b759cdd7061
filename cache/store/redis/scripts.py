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

from .keys import RedisClient, RedisKeys
from .wire import Wire

# A Lua function for scripts whose KEYS start with counters, ledger, sizes: reserve `size`
# for `id` due at `deadline` -> {1, bytes, items} reserved, or {0, bytes, items, the
# deadline by which the earliest reservations free room for this one}: the ledger walked in
# deadline order, at most 256 entries (past that, the last one walked: a lower bound). A
# retried call finds its id in the ledger (ZADD NX answers 0) and reserves nothing twice.
# Taken first, checked after, given back when over: four calls on the way that succeeds.
RESERVE_FUNCTION = """
local function reserve(id, size, deadline, max_bytes, max_items)
  if redis.call('ZADD', KEYS[2], 'NX', deadline, id) == 0 then
    local c = redis.call('HMGET', KEYS[1], 'bytes', 'items')
    return {1, tonumber(c[1] or '0'), tonumber(c[2] or '0')}
  end
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', size)
  local items = redis.call('HINCRBY', KEYS[1], 'items', 1)
  local over_bytes = bytes - max_bytes
  local over_items = items - max_items
  if over_items > 0 or over_bytes > 0 then
    redis.call('ZREM', KEYS[2], id)
    bytes = redis.call('HINCRBY', KEYS[1], 'bytes', 0 - size)
    items = redis.call('HINCRBY', KEYS[1], 'items', -1)
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
  redis.call('HSET', KEYS[3], id, size)
  return {1, bytes, items}
end
"""

# KEYS: counters, ledger, sizes. ARGV: id, size, deadline_ms, max_bytes, max_items.
RESERVE = (
    RESERVE_FUNCTION
    + """
return reserve(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
"""
)

# A Lua function for scripts whose KEYS start with counters, ledger, sizes (`keys.capacity`):
# give back the capacity reserved for `ids` -> {bytes, items, released}. Only an id still in
# the ledger is released (ZREM answers to exactly one caller): a release never doubles.
# `sizes`, when the caller knows them (a TAKE read them from the item), saves reading the
# ledger's; one id (a DELETE, a last read) is one ZREM, not a ZMSCORE and a ZREM.
RELEASE_HELD = """
local function release_held(ids, sizes)
  local held, seen, freed, known = {}, {}, 0, {}
  if #ids == 1 then
    if redis.call('ZREM', KEYS[2], ids[1]) == 1 then
      held[1] = ids[1]
      known[1] = sizes and sizes[1]
    end
  elseif #ids > 0 then
    local scores = redis.call('ZMSCORE', KEYS[2], unpack(ids))
    for i = 1, #ids do
      if scores[i] and not seen[ids[i]] then
        seen[ids[i]] = true
        held[#held + 1] = ids[i]
        known[#held] = sizes and sizes[i]
      end
    end
    if #held > 0 then redis.call('ZREM', KEYS[2], unpack(held)) end
  end
  if #held == 0 then
    local c = redis.call('HMGET', KEYS[1], 'bytes', 'items')
    return {tonumber(c[1] or '0'), tonumber(c[2] or '0'), 0}
  end
  if not sizes then known = redis.call('HMGET', KEYS[3], unpack(held)) end
  for i = 1, #held do freed = freed + tonumber(known[i] or '0') end
  redis.call('HDEL', KEYS[3], unpack(held))
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', 0 - freed)
  local items = redis.call('HINCRBY', KEYS[1], 'items', 0 - #held)
  return {bytes, items, #held}
end
"""

# KEYS: counters, ledger, sizes. ARGV: ids. -> {bytes, items, released}.
RELEASE = RELEASE_HELD + "return release_held(ARGV, nil)\n"

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
local counters = release_held(held, nil)
return {counters[1], counters[2], table.concat(out, '\\n')}
"""
)

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
    data: bytes | None = None  # set when SERVED or LAST_READ
    meta: Mapping[str, str] | None = None


class Scripts:
    def __init__(self, client: RedisClient, layout: RedisKeys, wire: Wire | None) -> None:
        self._layout = layout
        self._wire = wire  # the request path's connection (one server), else redis-py
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)

    async def reserve(
        self, item_id: str, size: int, deadline_ms: int, max_bytes: int, max_items: int
    ) -> Reservation:
        args: list[str | int] = [item_id, size, deadline_ms, max_bytes, max_items]
        keys = self._layout.capacity
        if self._wire is not None:
            (reply,) = await self._wire.run([[len(keys), *keys, *args]], [self._reserve])
            if isinstance(reply, BaseException):
                raise reply
        else:
            reply = await self._reserve(keys=keys, args=args)
        counters = Counters(int(reply[1]), int(reply[2]))
        if int(reply[0]) == 1:
            return Reservation(True, counters)
        earliest = reply[3] if len(reply) > 3 else None
        return Reservation(False, counters, None if earliest is None else int(float(earliest)))

    async def release(self, ids: Sequence[str]) -> tuple[Counters, int]:
        """-> the counters after, and how many of `ids` were still reserved."""
        reply = await self._release(keys=self._layout.capacity, args=list(ids))
        return Counters(int(reply[0]), int(reply[1])), int(reply[2])
