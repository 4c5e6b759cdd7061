"""The one store seam: what routes, intake, expiry and the app know about a store.

Two stores stand behind it: `local` (an index in this process, bytes in memory or tmpfs)
and `redis` (index, counters and bytes in Redis, shared by several nodes). Each builds
itself from config (`cache.store.build_store`) and hands the app what it needs to run:
its periodic jobs, its readiness, its start-up and its shutdown. Nothing outside a
store's own package names a concrete store or backend class.

Figures that only make sense per node say so in their docstring below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from ..item import ImageFacts, Item
from ..proof.checks import CheckResult
from ..wipe import zero


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


@dataclass(frozen=True, slots=True)
class Job:
    """Periodic work a store asks the app to schedule (APScheduler, on the loop)."""

    seconds: float
    run: Callable[[], Awaitable[object]]  # a coroutine function (or a partial of one)
    name: str


class Buffer:
    """Room for one image's bytes, asked of the store (`ItemStore.buffer`) before a body is
    read, so the body is read straight into where the item will live: no copy at `put`.

    The reader writes into `room` and counts `used`; then exactly one of `handover()` (the
    bytes for `put`, which takes them over) or `discard()` (zeroed and freed: a refusal).
    This one is a heap `bytearray`, what a store without pages of its own gives; a store
    may give a subclass whose room is pages it gives back to the kernel (the memory
    backend's, `store/local/pages.py`)."""

    def __init__(self, size: int, data: bytearray | None = None) -> None:
        self._bytes = bytearray(size) if data is None else data
        self.room = memoryview(self._bytes)  # writable, `size` bytes
        self.used = 0 if data is None else len(data)

    @property
    def size(self) -> int:
        return len(self.room)

    def data(self) -> memoryview:
        """What was written, to be read (checks, hashes) before the hand-over."""
        return self.room[: self.used]

    def handover(self) -> bytes | bytearray | memoryview:
        """The bytes for `put` (once): here the bytearray, cut to what was written."""
        self.room.release()
        try:
            del self._bytes[self.used :]
        except BufferError:  # a view of it is still about: hand over a copy instead
            kept = bytearray(memoryview(self._bytes)[: self.used])
            zero(self._bytes)
            return kept
        return self._bytes

    def discard(self) -> None:
        """Zero the room and let it go (refused before `put`); the room is not used again."""
        zero(self._bytes)
        self.used = 0


Alloc = Callable[[int], Buffer]  # ItemStore.buffer: room for a body of that many bytes


class SharedLists(ABC):
    """Hash-list entries added through the admin API that every node of a shared store
    must refuse (the redis backend), with a version that changes on every change, so a
    node polls one number and reads the entries only when it moved."""

    @abstractmethod
    async def version(self) -> int: ...

    @abstractmethod
    async def entries(self) -> tuple[int, dict[str, set[str]]]:
        """(version, {kind: hashes}) as they are now."""

    @abstractmethod
    async def change(self, kind: str, hashes: list[str], add: bool) -> int:
        """Add or remove `hashes` of one kind; how many were new (or gone)."""


class ItemStore(ABC):
    """Items with deadlines. Contract, kept by every store (and checked by one test
    suite run over each, `tests/store/test_contract.py`):

    - A missing, expired, purged or malformed id is `NotFound`, all alike.
    - Nothing is served at or after an item's deadline, whatever the timer did.
    - `put` reserves capacity and refuses with `CacheFull` (never evicts); after `close`
      it refuses with `ServiceUnavailable`.
    - Every release (timer, sweep, delete, read limit, admin, shutdown) is recorded once:
      a receipt, a `purged` audit line, the metrics (`records.ReleaseRecorder`).
    - An item purged on or after its deadline is purged with reason `ttl`.
    """

    # -- state -----------------------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int:
        """Items held (on a shared store: in the whole cache, as last seen)."""

    @abstractmethod
    def oldest_age(self) -> float:
        """Age in seconds of the oldest item (on a shared store: that this node stored)."""

    @abstractmethod
    def earliest_deadline(self) -> float | None:
        """The earliest deadline (monotonic) this node's exact timer must act on."""

    @abstractmethod
    def has_room(self, size: int) -> bool:
        """A cheap early answer, before an upload is read: False means it cannot fit now.
        True is only a hint; `put` reserves for real."""

    def room_at(self, size: int) -> float | None:
        """When (monotonic) the deadlines alone will have freed room for `size` more bytes
        and one more item: what a full cache's Retry-After says. None when they never will
        (more than the capacity, or bodies in flight hold the rest). A store that knows
        only its earliest deadline answers that."""
        return self.earliest_deadline()

    def buffer(self, size: int) -> Buffer:
        """Room for a body of `size` bytes, before it is read (see `Buffer`). What it
        hands over goes to this store's `put`; a store holding bytes in pages of its own
        gives them here, so that an upload is read once, into its final place."""
        return Buffer(size)

    @abstractmethod
    def on_new_deadline(self, listener: Callable[[float], None]) -> None:
        """`listener(deadline)` runs after every insert: the expiry timer re-arms on it."""

    # -- items -----------------------------------------------------------------------
    @abstractmethod
    async def put(
        self,
        data: bytes | bytearray | memoryview,
        facts: ImageFacts,
        ttl: float,
        max_reads: int | None,
        source: str,
        source_host: str | None = None,
    ) -> Item:
        """Hold `data` until `ttl` seconds from now. A bytearray, or what a `Buffer` of this
        store handed over, is handed over: the store keeps it as the item's bytes or zeroes
        it (also when it refuses); the caller must not touch it again."""

    @abstractmethod
    async def read(self, item_id: str, count: bool = True) -> tuple[Item, bytes | memoryview]:
        """The bytes of a live item. `count=True` uses up a read; the read that uses the
        last of `max_reads` releases the item (reason `read_limit`). The bytes may be a
        read-only view of the held buffer: the store does not zero it while it is viewed,
        and the caller drops the view as soon as the response is written (or cut)."""

    @abstractmethod
    async def meta(self, item_id: str) -> Item:
        """A live item's metadata; never uses up a read."""

    @abstractmethod
    async def list_items(self, sha256: str | None = None) -> list[Item]:
        """Items held, oldest first (all, or those with one SHA-256); ops use only."""

    # -- releases --------------------------------------------------------------------
    @abstractmethod
    async def delete(self, item_id: str, reason: str = "delete") -> Receipt | None:
        """Release one item; None (a 404) when unknown or already past its deadline."""

    @abstractmethod
    async def purge_expired(self) -> list[Receipt]:
        """Release what is due: the cost is what expired, never a scan of what is held."""

    @abstractmethod
    async def purge_ids(self, ids: list[str], reason: str = "admin") -> list[Receipt]: ...

    @abstractmethod
    async def purge_sha256(self, sha256: str, reason: str = "admin") -> list[Receipt]: ...

    @abstractmethod
    async def purge_all(self, reason: str) -> list[Receipt]:
        """Every item (on a shared store: of every node), and any bytes no item owns."""

    # -- life ------------------------------------------------------------------------
    @abstractmethod
    async def start(self) -> None:
        """Before the listener accepts: the store's own checks, then destroy what a
        previous process left (counted as `startup`). Raises StartupRefused."""

    @abstractmethod
    def jobs(self) -> list[Job]:
        """Periodic work of this store (orphan scans, re-checks) for the app to schedule."""

    def shared_lists(self) -> SharedLists | None:
        """Where admin hash-list entries are shared with other nodes; None (a local store):
        they live in this process only."""
        return None

    def guarantee_checks(self) -> list[CheckResult]:
        """The store's own guarantee checks (the redis store: that Redis does not write to
        disk), shown in /admin/guarantees beside the G1 self-checks."""
        return []

    async def unready_reason(self) -> str | None:
        """Why `/readyz` should answer 503 now; None when ready (a local store always is)."""
        return None

    @abstractmethod
    async def close(self) -> list[Receipt]:
        """Refuse new items, purge what this node holds (reason `shutdown`), then
        release clients and handles."""
