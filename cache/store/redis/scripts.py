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
from typing import Any

from redis.commands.core import AsyncScript

from .codec import text
from .keys import RedisClient, RedisKeys
from .wire import Wire

# The ledger's members are "<id> <size>": the size of a reservation travels with it, so a
# reservation is released (its bytes given back) by whoever knows the item: the TAKE that
# read the item's `size`, the node that stored it, or the scan that read the member.
# Items held are the ledger's ZCARD: there is no separate count to keep in step.

# KEYS: counters, ledger. ARGV: id, size, deadline_ms, max_bytes, max_items. Reserve `size`
# for `id` due at `deadline_ms` -> {1, bytes, items} reserved, or {0, bytes, items, the
# deadline by which the earliest reservations free room for this one}: the ledger walked in
# deadline order, at most 256 entries (past that, the last one walked: a lower bound). A
# retried call finds its member in the ledger (ZADD NX answers 0) and reserves nothing
# twice. Taken first, checked after, given back when over: three calls on the way that
# succeeds, in straight-line code (a function defined per call costs Redis a few µs more).
RESERVE = """
local size = tonumber(ARGV[2])
local member = ARGV[1] .. ' ' .. ARGV[2]
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], member) == 0 then
  local held = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
  return {1, held, redis.call('ZCARD', KEYS[2])}
end
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', size)
local items = redis.call('ZCARD', KEYS[2])
local over_bytes = bytes - tonumber(ARGV[4])
local over_items = items - tonumber(ARGV[5])
if over_items <= 0 and over_bytes <= 0 then return {1, bytes, items} end
redis.call('ZREM', KEYS[2], member)
bytes = redis.call('HINCRBY', KEYS[1], 'bytes', 0 - size)
items = items - 1
local at = false
local walk = redis.call('ZRANGE', KEYS[2], 0, 255, 'WITHSCORES')
for i = 1, #walk, 2 do
  if over_bytes <= 0 and over_items <= 0 then break end
  over_bytes = over_bytes - tonumber(string.match(walk[i], '%d+$') or '0')
  over_items = over_items - 1
  at = walk[i + 1]
end
return {0, bytes, items, at}
"""

# A Lua function for scripts whose KEYS are counters, ledger (`keys.capacity`): give back
# the reservations `members` -> {bytes, items, released}. Only a member still in the ledger
# is released (ZREM answers to exactly one caller): a release never doubles. One member (a
# DELETE, a last read) is one ZREM and one HINCRBY, and its `items` is -1: not read (the
# caller takes one off what it last saw; the next reservation reads it again).
RELEASE_HELD = """
local function release_held(members)
  local held, seen, freed = {}, {}, 0
  if #members == 1 then
    if redis.call('ZREM', KEYS[2], members[1]) == 1 then held[1] = members[1] end
  elseif #members > 0 then
    local scores = redis.call('ZMSCORE', KEYS[2], unpack(members))
    for i = 1, #members do
      if scores[i] and not seen[members[i]] then
        seen[members[i]] = true
        held[#held + 1] = members[i]
      end
    end
    if #held > 0 then redis.call('ZREM', KEYS[2], unpack(held)) end
  end
  if #held == 0 then
    local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
    return {bytes, redis.call('ZCARD', KEYS[2]), 0}
  end
  for i = 1, #held do freed = freed + tonumber(string.match(held[i], '%d+$')) end
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', 0 - freed)
  if #members == 1 then return {bytes, -1, 1} end
  return {bytes, redis.call('ZCARD', KEYS[2]), #held}
end
"""

# KEYS: counters, ledger. ARGV: members. -> {bytes, items, released}.
RELEASE = RELEASE_HELD + "return release_held(ARGV)\n"

# KEYS: counters, ledger. ARGV: members. -> {bytes, items, lines "id size"}: the members
# still reserved, now released. A member of a TAKE that found its keys gone but still
# reserved was deleted by no node (a TAKE releases in the same script): Redis lost it.
RELEASE_LOST = (
    RELEASE_HELD
    + """
local held = {}
for i = 1, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then held[#held + 1] = ARGV[i] end
end
local counters = release_held(held)
if #held == 1 then counters[2] = redis.call('ZCARD', KEYS[2]) end
return {counters[1], counters[2], table.concat(held, '\\n')}
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


def member(item_id: str, size: int) -> str:
    """An item's member in the ledger."""
    return f"{item_id} {size}"


def parse_member(value: bytes | str) -> tuple[str, int]:
    """A ledger member -> (id, size); ("", 0) for anything else (never a key)."""
    item_id, _, size = text(value).partition(" ")
    return (item_id, int(size)) if size.isdigit() else ("", 0)


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
    data: bytes | memoryview | None = None  # set when SERVED or LAST_READ
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
        reply = await self._capacity_call(self._reserve, args)
        counters = Counters(int(reply[1]), int(reply[2]))
        if int(reply[0]) == 1:
            return Reservation(True, counters)
        earliest = reply[3] if len(reply) > 3 else None
        return Reservation(False, counters, None if earliest is None else int(float(earliest)))

    async def release(self, members: Sequence[str]) -> tuple[Counters, int]:
        """`members` (`member(id, size)`) -> the counters after (items -1: not read), and
        how many were still reserved. Only a failed put's undo calls this: request work,
        on the request path's wire on one server."""
        reply = await self._capacity_call(self._release, list(members))
        return Counters(int(reply[0]), int(reply[1])), int(reply[2])

    async def _capacity_call(self, script: AsyncScript, args: Sequence[str | int]) -> Any:
        """A capacity script (KEYS: counters, ledger): on one server on the request path's
        wire, so it runs after the commands this node sent before it (a put's own RESERVE
        before the RELEASE that undoes it); else through redis-py. An error reply raises."""
        keys = self._layout.capacity
        if self._wire is None:
            return await script(keys=keys, args=args)
        (reply,) = await self._wire.run([[len(keys), *keys, *args]], [script])
        if isinstance(reply, BaseException):
            raise reply
        return reply
