"""Batched Redis work for purges and uploads: a round trip per batch, not one per item.

redis-py parses replies in pure Python, one awaited parse per reply, so what a purge costs
is mostly the number of round trips and replies. On one server (no cluster) a batch is one
multi-item script call (TAKE_MANY) with one compact reply; on a cluster, where every item
has its own hash slot, it is a non-transactional pipeline of single-item TAKE calls, then
one of index, sha256-set and RELEASE updates (redis-py's cluster pipeline splits each by
node). The answers that count a purge once are the same either way: DEL (the node whose
call deleted the keys records the purge), and the ledger's ZREM (that call releases).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from ...item import is_valid_id
from .codec import COUNT_BYTES, FACTS_END, text
from .keys import LUA_KEYS, RedisClient, RedisKeys
from .link import RETRYABLE, ScriptLine
from .ownership import Mine
from .scripts import RELEASE, RELEASE_HELD, Counters, member
from .tuning import PIPELINE_RETRIES, RELEASE_CHUNK
from .wire import Wire, wire_for

# An item's facts from the start of its header (`codec.header`: the count's 4 bytes, then
# the fields sha256, size, created_ms, deadline_ms first): a Lua function `facts(key)` ->
# "sha256 size created_ms deadline_ms", or nil for a key with no header (a read's
# BITFIELD made it after the item went), no key, or a key of another type (an older
# node's hash): pcall, so that one such key cannot fail the batch it is in and stall the
# purge of every item in it. Its DEL still removes it; the ledger scan or the lost check
# gives its reservation back.
FACTS = f"""
local function facts(key)
  local head = redis.pcall('GETRANGE', key, {COUNT_BYTES}, {FACTS_END})
  if type(head) ~= 'string' then return nil end
  local s, z, c, d = string.match(head,
    '^sha256=(%x+)\\tsize=(%d+)\\tcreated_ms=(%d+)\\tdeadline_ms=(%d+)[\\t\\n]')
  if not s then return nil end
  return s .. ' ' .. z .. ' ' .. c .. ' ' .. d
end
"""

# KEYS: item. -> "sha256 size created_ms deadline_ms" of the item this call deleted, or
# nil. DEL answers a positive count to exactly one caller: only that node counts it.
TAKE = (
    FACTS
    + """
local f = facts(KEYS[1])
local deleted = redis.call('DEL', KEYS[1])
if deleted == 0 or not f then return false end
return f
"""
)

# One server only: TAKE, then the ledger (deadline index and capacity) updates of RELEASE,
# for a batch of items in one call (a round trip costs more than a dozen items). The item
# keys span slots and the script names them itself from the ids, as `RedisKeys` does:
# declared, they would cost redis-py an encode per argument, the largest cost of a batch.
# KEYS: counters, ledger. ARGV: key prefix, ids (space-separated).
# -> {bytes, items (-1: not read), lines}: a line "n sha256 size created_ms deadline_ms"
# per item this call deleted (n: its place, from 1). DEL and the ledger's ZREM count each item once.
TAKE_MANY = (
    LUA_KEYS
    + FACTS
    + RELEASE_HELD
    + """
local prefix, out, n, gone = ARGV[1], {}, 0, {}
for id in string.gmatch(ARGV[2], '%S+') do
  n = n + 1
  local item = item_key(prefix, id)
  local f = facts(item)
  if redis.call('DEL', item) > 0 and f then
    out[#out + 1] = n .. ' ' .. f
    gone[#gone + 1] = id .. ' ' .. string.match(f, '^%x+ (%d+)')
  end
end
local counters = release_held(gone)
return {counters[1], counters[2], table.concat(out, '\\n')}
"""
)

# One server only, a client's DELETE of an item this node stored (it knows the item's
# facts: `ownership.Mine`): DEL, then the ledger's ZREM and the bytes, without reading the
# item back. KEYS: item, counters, ledger. ARGV: its ledger member. -> {1, bytes} deleted
# and released (this call counts it), {0} no key (lost or taken: `lost.missing` decides),
# {2} a key but no reservation: a value a read's BITFIELD made after the item went (a real
# item's key and member go together in one script on one server), deleted, not counted.
TAKE_KNOWN = """
if redis.call('DEL', KEYS[1]) == 0 then return {0} end
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return {2} end
return {1, redis.call('HINCRBY', KEYS[2], 'bytes', 0 - tonumber(string.match(ARGV[1], '%d+$')))}
"""

AGAIN = (NoScriptError, *RETRYABLE)


def checked(replies: list[Any]) -> list[Any]:
    """The replies, or the first error among them raised."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


@dataclass(frozen=True, slots=True)
class Taken:
    """What a purge records of an item this node deleted; times are wall-clock Unix ms."""

    id: str
    sha256: str
    size: int
    created_ms: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class TakeResult:
    taken: list[Taken]  # deleted by this call: this node records them
    done: list[str]  # answered (taken or already gone): their index entries can go
    failure: BaseException | None = None  # the first call that failed, after the rest ran
    counters: Counters | None = None  # set when the index entries and capacity went too


@dataclass(frozen=True, slots=True)
class Call:
    """One command of a pipeline: a script with its keys and args, or (no script) a plain
    command, all of it in `args`."""

    script: AsyncScript | None
    keys: Sequence[str]
    args: Sequence[Any] = ()


def command(*args: Any) -> Call:
    return Call(None, (), args)


class TakeStream:
    """Batch TAKEs one after another on one connection: `send(ids)`, then `result()`
    (see `Batches.stream`). On a cluster `send` only remembers the ids."""

    def __init__(self, batches: Batches, line: ScriptLine | None) -> None:
        self._batches, self._line = batches, line
        self._ids: list[str] = []

    async def send(self, ids: Sequence[str]) -> None:
        self._ids = [i for i in ids if is_valid_id(i)]  # they become keys and separators
        if self._ids and self._line is not None:
            await self._line.send(self._batches.take_args(self._ids))

    @property
    def pending(self) -> bool:
        """A TAKE was sent to Redis and its reply is not read yet."""
        return bool(self._ids) and self._line is not None

    async def result(self) -> TakeResult:
        ids, self._ids = self._ids, []
        if not ids:
            return TakeResult([], [])
        if self._line is None:
            return await self._batches.take_pipelined(ids)
        return taken_from(ids, await self._line.reply())


def taken_from(ids: list[str], reply: Any) -> TakeResult:
    """TAKE_MANY's reply -> what it deleted, and the counters after it."""
    lines = text(reply[2])
    taken = []
    for line in lines.split("\n") if lines else ():
        n, sha256, size, created, deadline = line.split(" ")
        taken.append(Taken(ids[int(n) - 1], sha256, int(size), int(created), int(deadline)))
    return TakeResult(taken, ids, None, Counters(int(reply[0]), int(reply[1])))


class Batches:
    def __init__(self, client: RedisClient, layout: RedisKeys) -> None:
        self._client = client
        self._keys = layout
        self._single = None if isinstance(client, RedisCluster) else client  # not a cluster
        self.wire: Wire | None = None if self._single is None else wire_for(self._single)
        script = client.register_script
        self._take, self._take_many = script(TAKE), script(TAKE_MANY)
        self._take_known = script(TAKE_KNOWN)
        self._release = script(RELEASE)

    async def pipeline(self, calls: Sequence[Call]) -> list[Any]:
        """Every call in one non-transactional pipeline; replies (or errors) in place. A
        script Redis does not know yet (NOSCRIPT: never ran) is loaded and sent again; a
        call whose connection failed (a cluster pipeline reports it in place, and does not
        retry it as the cluster client would) is sent again, up to PIPELINE_RETRIES times."""
        replies = await self._send(calls)
        for _ in range(PIPELINE_RETRIES):
            again = [n for n, reply in enumerate(replies) if isinstance(reply, AGAIN)]
            if not again:
                break
            unknown = [calls[n].script for n in again if isinstance(replies[n], NoScriptError)]
            for script in {id(s): s for s in unknown}.values():
                assert script is not None
                script.sha = text(await self._client.script_load(script.script))
            for n, reply in zip(again, await self._send([calls[n] for n in again]), strict=True):
                replies[n] = reply
        return replies

    async def _send(self, calls: Sequence[Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            if call.script is None:
                pipe.execute_command(*call.args)
            else:
                sha, keys = call.script.sha, call.keys  # (a cluster pipeline has no evalsha())
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def take(self, ids: Sequence[str], request: bool = False) -> TakeResult:
        """Delete the items' keys; what this call deleted comes back as `Taken`. On one
        server the index entries and reservations go in the same call (`counters` set);
        on a cluster `unlink` follows. Ids are checked: they become keys (and separators).
        `request`: a client's DELETE, which goes on the request path's wire; purges never
        do (they share nothing with request work)."""
        valid = [i for i in ids if is_valid_id(i)]
        if not valid:
            return TakeResult([], [])
        if self._single is None:
            return await self.take_pipelined(valid)
        capacity, args = self._keys.capacity, self.take_args(valid)
        if request and self.wire is not None:
            (reply,) = checked(
                await self.wire.run([[len(capacity), *capacity, *args]], [self._take_many])
            )
            return taken_from(valid, reply)
        return taken_from(valid, await self._take_many(capacity, args))

    async def take_known(self, item_id: str, mine: Mine) -> TakeResult:
        """A client's DELETE of an item this node stored, on one server (TAKE_KNOWN)."""
        _, _, size, sha256, created_ms, deadline_ms = mine
        keys = [self._keys.item(item_id), *self._keys.capacity]
        assert self.wire is not None
        (reply,) = checked(
            await self.wire.run([[len(keys), *keys, member(item_id, size)]], [self._take_known])
        )
        if int(reply[0]) != 1:
            return TakeResult([], [item_id])
        taken = Taken(item_id, sha256, size, created_ms, deadline_ms)
        return TakeResult([taken], [item_id], None, Counters(int(reply[1]), -1))

    async def close(self) -> None:
        if self.wire is not None:
            await self.wire.close()

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[TakeStream]:
        """Batches sent before the last one is recorded (see `TakeStream`): on one server
        over a connection held for the whole series, so Redis runs each TAKE while this
        node records the one before."""
        if self._single is None:
            yield TakeStream(self, None)
            return
        async with ScriptLine(self._single, self._take_many, self._keys.capacity) as line:
            yield TakeStream(self, line)

    def take_args(self, ids: list[str]) -> list[str]:
        return [self._keys.prefix, " ".join(ids)]

    async def take_pipelined(self, ids: list[str]) -> TakeResult:
        """On a cluster: a pipeline of single-item TAKEs (each item is its own slot)."""
        calls = [Call(self._take, (self._keys.item(i),)) for i in ids]
        taken, done = [], []
        failure: BaseException | None = None
        for item_id, reply in zip(ids, await self.pipeline(calls), strict=True):
            if isinstance(reply, BaseException):
                failure = failure or reply
                continue
            done.append(item_id)
            if reply:
                sha256, size, created, deadline = text(reply).split(" ")
                taken.append(Taken(item_id, sha256, int(size), int(created), int(deadline)))
        return TakeResult(taken, done, failure)

    async def unlink(self, taken: Sequence[str]) -> Counters | None:
        """The reservations `taken` (ledger members of items this node deleted) go back,
        and with them their deadline-index entries (the ledger is the index). -> the
        counters after (None: nothing to release; items -1: not read)."""
        calls = [
            Call(self._release, self._keys.capacity, taken[start : start + RELEASE_CHUNK])
            for start in range(0, len(taken), RELEASE_CHUNK)
        ]
        if not calls:
            return None
        replies = await self.pipeline(calls)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        last = replies[-1]
        return Counters(int(last[0]), int(last[1]))

    async def plain(self, commands: list[list[Any]]) -> list[Any]:
        """Plain commands in one pipeline, replies (or errors) in place: on the request
        path's wire on one server."""
        if self.wire is not None:
            return list(await self.wire.call(commands))
        return await self.pipeline([command(*c) for c in commands])
