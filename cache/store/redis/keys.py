"""Every Redis key name of the shared store, in one place, for Python and for Lua.

An item is one string, `{prefix}{<id>}:item`: a header (read count and metadata, see
`codec`), then its bytes. One key makes a put one SET, a read one GET (after the count's
BITFIELD) and a purge one DEL, and a cluster keeps everything of an item in one slot.
The bytes counter and the ledger of reservations (members "<id> <size>") share the `{cap}`
tag, so one script updates them together; the ledger, scored by deadline, is also the
shared deadline index (every put and release passes through `{cap}` anyway: a separate
index would only add calls).
Hash-list entries added through the admin API share the `{bl}` tag with their version
counter.

A script that builds key names itself (TAKE_MANY, on one server) gets them from
`LUA_KEYS`, generated here from the same shape: the names cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ...item import is_valid_id
from .codec import text

RedisClient: TypeAlias = "Redis | RedisCluster"

# Each key with one variable part: prefix + head + part + tail.
SHAPES: dict[str, tuple[str, str]] = {
    "item": ("{", "}:item"),  # an item: its header, then its bytes
}
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _lua_function(name: str, head: str, tail: str) -> str:
    return f"local function {name}_key(p, x) return p .. '{head}' .. x .. '{tail}' end\n"


# The Lua function `item_key(prefix, id)`.
LUA_KEYS = "".join(_lua_function(name, *shape) for name, shape in SHAPES.items())


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    def _key(self, shape: str, part: str) -> str:
        head, tail = SHAPES[shape]
        return f"{self.prefix}{head}{part}{tail}"

    def item(self, item_id: str) -> str:
        return self._key("item", item_id)

    @property
    def counters(self) -> str:
        """Hash: `bytes` reserved in the whole cache (items: the ledger's ZCARD)."""
        return f"{self.prefix}{{cap}}"

    @property
    def ledger(self) -> str:
        """Sorted set: every reservation, "<id> <size>", scored by its deadline (Unix ms).
        Also the deadline index the sweeps take other nodes' due items from."""
        return f"{self.prefix}{{cap}}:held"

    @property
    def capacity(self) -> list[str]:
        """KEYS of every capacity script: counters, ledger."""
        return [self.counters, self.ledger]

    @property
    def epoch(self) -> str:
        """String: a token set once per Redis lifetime (SET NX); missing or changed, Redis
        lost its data since a node last read it (`lost.LostWatch`)."""
        return f"{self.prefix}{{epoch}}"

    def blocklist(self, kind: str) -> str:
        """Set: hashes of one kind (sha256, md5, sha1, pdq) listed through any node's admin
        API. No TTL: they stay listed until removed (or until Redis restarts)."""
        return f"{self.prefix}{{bl}}:{kind}"

    @property
    def blocklist_version(self) -> str:
        """Counter: moved by every change to the shared lists (same `{bl}` tag)."""
        return f"{self.prefix}{{bl}}:version"

    @property
    def item_pattern(self) -> str:
        head, tail = SHAPES["item"]
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + head + "*" + tail

    def id_of_item_key(self, key: bytes | str) -> str | None:
        name = text(key)
        head, tail = SHAPES["item"]
        head = self.prefix + head
        if not (name.startswith(head) and name.endswith(tail)):
            return None
        item_id = name[len(head) : -len(tail)]
        return item_id if is_valid_id(item_id) else None
