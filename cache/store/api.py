"""What every store offers: the local `Store` (memory, tmpfs) and the `SharedStore` (redis).

Routes, intake and expiry depend on these types only, never on one store's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from ..item import ImageFacts, Item
from .local.backend import Backend


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that one item went: what it was, when it came, when and why it left."""

    id: str
    sha256: str
    size: int
    stored_at: float
    purged_at: float
    reason: str
    lag_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Capacity:
    max_bytes: int
    max_items: int


class ItemStore(Protocol):
    """What routes, intake and expiry need of a store: the local `Store` (memory, tmpfs)
    and a store shared by several nodes (redis) both provide it."""

    backend: Backend

    def __len__(self) -> int: ...
    def oldest_age(self) -> float: ...
    def earliest_deadline(self) -> float | None: ...
    def has_room(self, size: int) -> bool:
        """A cheap early answer, before an upload is read: False means it cannot fit now.
        True is only a hint; `put` reserves for real."""
        ...

    def on_new_deadline(self, listener: Callable[[float], None]) -> None: ...
    async def put(
        self,
        data: bytes | bytearray | memoryview,
        facts: ImageFacts,
        ttl: float,
        max_reads: int | None,
        source: str,
        source_host: str | None = None,
    ) -> Item: ...
    async def read(self, item_id: str, count: bool = True) -> tuple[Item, bytes]: ...
    async def meta(self, item_id: str) -> Item: ...
    async def list_items(self, sha256: str | None = None) -> list[Item]: ...
    async def delete(self, item_id: str, reason: str = "delete") -> Receipt | None: ...
    async def purge_expired(self) -> list[Receipt]: ...
    async def purge_ids(self, ids: list[str], reason: str = "admin") -> list[Receipt]: ...
    async def purge_sha256(self, sha256: str, reason: str = "admin") -> list[Receipt]: ...
    async def purge_all(self, reason: str) -> list[Receipt]: ...
    async def purge_leftovers(self) -> int: ...
    async def purge_orphans(self) -> int: ...
    async def close(self) -> list[Receipt]: ...


@runtime_checkable
class ReadinessProbe(Protocol):
    """A store whose storage lives elsewhere (redis) and may be unreachable: `/readyz`
    asks it. A local store has nothing to ask and does not implement it."""

    async def unready_reason(self) -> str | None: ...
