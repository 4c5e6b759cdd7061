"""The contract every backend keeps: bytes in, bytes out, bytes destroyed.

Backends know nothing of HTTP, TTLs or config: the store decides when, the backend does.
Ids reaching a backend are already validated by the store (`item.is_valid_id`), but a
backend that turns an id into a path or key checks again: it is the last line.
"""

from __future__ import annotations

from typing import Protocol


class Backend(Protocol):
    name: str

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        """Hold a copy of `data` under a new id; raise InsufficientStorage if it cannot."""
        ...

    async def get(self, item_id: str) -> bytes | None:
        """A copy of the bytes, or None when the id is not held."""
        ...

    async def delete(self, item_id: str) -> bool:
        """Overwrite, then release; True if the id was held."""
        ...

    async def delete_many(self, item_ids: list[str]) -> int:
        """`delete` for a batch (an expiry purge): one thread hop or round trip, not one
        per item; returns how many were held."""
        ...

    async def purge_all(self) -> int:
        """Destroy everything held (in a folder: every file in it); return how many."""
        ...

    async def keys(self) -> set[str]:
        """Every id held, for the orphan scan (never used to find what expired)."""
        ...

    async def close(self) -> None:
        """Release clients or handles; the bytes are already purged by then."""
        ...
