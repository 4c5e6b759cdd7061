"""Hash-list entries added through any node's admin API, shared through Redis so that
every node refuses them.

Why a version counter and polling, not pub/sub: a node needs the entries only when they
changed, and one GET a second per node is cheaper and sturdier than a subscription that
must be re-established after every outage (and that misses what was published while it
was down). A change is one script (`scripts.BLOCKLIST_CHANGE`: the set and the counter
share the `{bl}` tag, so it runs on a cluster too); a node that sees the counter move reads
the four sets (`intake.blocklist_ops.BlocklistOps.sync`, every second, and at start-up).

The entries have no TTL: they are hashes, never content, and stay listed until removed.
Redis never persists (see `persistence`), so they go when Redis restarts: lists meant to
last belong in the list files every node loads.
"""

from __future__ import annotations

from ..api import SharedLists
from .codec import text
from .keys import RedisClient, RedisKeys
from .link import RedisLink
from .scripts import BLOCKLIST_CHANGE

KINDS = ("sha256", "md5", "sha1", "pdq")
CHUNK = 1000  # hashes per script call: well inside Lua's stack


class RedisSharedLists(SharedLists):
    def __init__(self, client: RedisClient, keys: RedisKeys, link: RedisLink) -> None:
        self._client = client
        self._keys = keys
        self._link = link
        self._change = client.register_script(BLOCKLIST_CHANGE)

    async def version(self) -> int:
        async with self._link.call("blocklist"):
            return await self._version()

    async def entries(self) -> tuple[int, dict[str, set[str]]]:
        """The version first: a change landing in between is seen again at the next look."""
        async with self._link.call("blocklist"):
            version = await self._version()
            pipe = self._client.pipeline(transaction=False)
            for kind in KINDS:
                pipe.smembers(self._keys.blocklist(kind))
            replies = await pipe.execute()
        return version, {k: {text(v) for v in r} for k, r in zip(KINDS, replies, strict=True)}

    async def _version(self) -> int:
        raw = await self._client.get(self._keys.blocklist_version)
        return int(text(raw)) if raw is not None else 0

    async def change(self, kind: str, hashes: list[str], add: bool) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown hash kind {kind!r}")
        keys = [self._keys.blocklist(kind), self._keys.blocklist_version]
        changed = 0
        async with self._link.call("blocklist"):
            for start in range(0, len(hashes), CHUNK):
                args = ["add" if add else "rem", *hashes[start : start + CHUNK]]
                reply = await self._change(keys=keys, args=args)
                changed += int(reply[0])
        return changed
