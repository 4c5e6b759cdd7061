"""The local store: index in this process, bytes in memory or in a tmpfs folder.

`build` is the only way in from outside this package.
"""

from __future__ import annotations

from ...clock import Clock
from ...config import Config
from ...proof.audit import AuditLog
from ...proof.metrics import Metrics
from ..api import Capacity, ItemStore
from .backend import Backend


def make_backend(config: Config) -> Backend:
    """The configured backend, with its folder ready: backends never read config."""
    if config.storage.backend == "tmpfs":
        from .tmpfs import TmpfsBackend, prepare_folder

        return TmpfsBackend(prepare_folder(config.storage.path))
    from .memory import MemoryBackend

    return MemoryBackend(config.storage.max_mappings)


def build(
    config: Config,
    clock: Clock,
    metrics: Metrics,
    audit: AuditLog,
    backend: Backend | None = None,
) -> ItemStore:
    """The local store for `storage.backend` memory or tmpfs (`backend`: tests may hand
    one in, e.g. a tmpfs backend on a folder of their own)."""
    from .store import LocalStore

    capacity = Capacity(config.storage.max_bytes, config.storage.max_items)
    backend = backend or make_backend(config)
    pages = getattr(backend, "pages", None)  # the memory backend's: count what it maps
    if pages is not None:
        metrics.watch_mappings(lambda: pages.arenas)
        pages.on_heap = metrics.memory_heap_items.inc
    return LocalStore(backend, clock, metrics, audit, capacity, config.ttl.grace)
