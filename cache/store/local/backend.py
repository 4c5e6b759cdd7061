"""The contract every backend keeps: bytes in, bytes out, bytes destroyed.

Backends know nothing of HTTP, TTLs or config: the store decides when, the backend does.
Ids reaching a backend are already validated by the store (`item.is_valid_id`), but a
backend that turns an id into a path or key checks again: it is the last line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..api import Buffer


class Backend(Protocol):
    name: str

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        """Hold `data` under a new id; raise InsufficientStorage if it cannot. A bytearray
        is handed over: the backend keeps it as the item's buffer (no copy) or zeroes it
        once its bytes are written elsewhere; the caller must not touch it again."""
        ...

    def buffer(self, size: int) -> Buffer:
        """Room for a body of `size` bytes (`ItemStore.buffer`): what it hands over is
        taken by `put` without a copy where the backend keeps bytes in memory."""
        ...

    def abandon(self, data: bytes | bytearray | memoryview) -> None:
        """`data` was handed over but will not be `put` (the store refused it): zero and
        free it."""
        ...

    async def get(self, item_id: str) -> bytes | memoryview | None:
        """The bytes (a read-only view of the held buffer where the backend keeps one, so
        a read costs no copy), or None when the id is not held. A buffer is never zeroed
        while a view of it is still held by a response being written."""
        ...

    def settle(self) -> int:
        """Finish releases that had to wait (a buffer still viewed by a response); how
        many still wait. Called at every expiry purge; 0 where nothing ever waits."""
        ...

    async def delete(self, item_id: str) -> bool:
        """Overwrite, then release; True if the id was held."""
        ...

    async def delete_many(self, item_ids: list[str]) -> int:
        """`delete` for a batch (an expiry purge): one thread hop or round trip, not one
        per item; returns how many were held."""
        ...

    async def delete_timed(self, item_ids: list[str], now: Callable[[], float]) -> list[float]:
        """`delete_many`, and for each item the time (`now()`, read just after) its bytes
        were gone: where a batch is destroyed one item after another (files), each item's
        own release time, not the batch's end."""
        ...

    async def purge_all(self) -> int:
        """Destroy everything held (in a folder: every file in it); return how many."""
        ...

    async def keys(self) -> set[str]:
        """Every id held (never used to find what expired)."""
        ...

    async def entries(self) -> set[str]:
        """Every name held, ids or not (a folder: every entry but the service's own
        TMPDIR), for the orphan scan."""
        ...

    async def destroy_orphans(self, names: set[str]) -> int:
        """Destroy these entries (from `entries()`, owned by no item) whatever they are,
        overwritten before release; a folder also empties the service's TMPDIR. Returns
        how many entries went."""
        ...

    async def close(self) -> None:
        """Release clients or handles; the bytes are already purged by then."""
        ...
