"""Every metric of the service, on one registry per app (never the global default).

Names are fixed by DESIGN.md; units are base units (seconds, bytes). The purge-lag buckets
start at half a millisecond so that an exact timer is visibly exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .histogram import BatchHistogram

FETCH_RESULTS = (
    "ok",
    "invalid_url",
    "forbidden",
    "remote_error",
    "timeout",
    "too_large",
    "not_image",
    "refused",
    "disabled",
)
PURGE_REASONS = (
    "ttl",
    "read_limit",
    "delete",
    "admin",
    "shutdown",
    "startup",
    "orphan",
    "capacity",
    "blocklist",
    "lost",  # redis: items Redis dropped that no node purged (restarted empty, PX backstop)
)
BLOCKLIST_KINDS = ("sha256", "md5", "sha1", "pdq")
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RESIDENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
SWEEP_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.items = Gauge("cache_items", "Items held now.", registry=r)
        self.bytes = Gauge("cache_bytes", "Image bytes held now.", registry=r)
        self.oldest_age = Gauge(
            "cache_oldest_item_age_seconds", "Age of the oldest item held now.", registry=r
        )
        self.capacity_bytes = Gauge("cache_capacity_bytes", "storage.max_bytes.", registry=r)
        self.capacity_items = Gauge("cache_capacity_items", "storage.max_items.", registry=r)
        self.ttl_max = Gauge(
            "cache_ttl_max_seconds", "ttl.max: the longest TTL allowed.", registry=r
        )
        self.ttl_grace = Gauge(
            "cache_ttl_grace_seconds", "ttl.grace: lateness that counts as a violation.", registry=r
        )
        self.stored = Counter("cache_stored", "Items stored, by source.", ["source"], registry=r)
        self.rejected = Counter(
            "cache_rejected", "Uploads and fetches refused, by reason.", ["reason"], registry=r
        )
        self.reads = Counter("cache_reads", "Image bodies served.", registry=r)
        self.purged = Counter("cache_purged", "Items released, by reason.", ["reason"], registry=r)
        # Observed a purge batch at a time (histogram.py): one lock, not one per item.
        self.purge_lag = BatchHistogram(
            "cache_purge_lag_seconds",
            "Release time minus deadline, for items released at or after their deadline.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.residency = BatchHistogram(
            "cache_residency_seconds",
            "Time from store to release, every item.",
            buckets=RESIDENCY_BUCKETS,
            registry=r,
        )
        self.expired_reads_refused = Counter(
            "cache_expired_reads_refused",
            "Reads refused because the deadline had passed before the purge ran.",
            registry=r,
        )
        self.reads_cut = Counter(
            "cache_reads_cut",
            "Responses still being written at deadline + grace, cut (connection aborted).",
            registry=r,
        )
        self.connections = Gauge(
            "cache_open_connections", "Open connections on the public listener.", registry=r
        )
        self.connections_refused = Counter(
            "cache_connections_refused",
            "Connections refused at server.max_connections (503 and a close).",
            registry=r,
        )
        self.resident = Gauge(
            "cache_process_resident_bytes",
            "Resident memory of this process (RSS), read at each scrape: beside cache_bytes, "
            "it shows purged bytes leave the process.",
            registry=r,
        )
        self.resident.set_function(resident_bytes)
        self.memory_mappings = Gauge(
            "cache_memory_mappings",
            "Anonymous mappings holding item bytes now (memory backend; storage.max_mappings).",
            registry=r,
        )
        self.memory_heap_items = Counter(
            "cache_memory_heap_items",
            "Items held in the heap, not in pages of their own: the mapping budget was spent "
            "or mmap failed. Their pages may stay resident after purge when memory is locked.",
            registry=r,
        )
        self.audit_waiting = Gauge(
            "cache_audit_lines_waiting",
            "Audit lines queued and not yet written (a stalled stdout reader shows here).",
            registry=r,
        )
        self.audit_dropped = Counter(
            "cache_audit_lines_dropped",
            "Audit lines dropped past the writer's hard limit. Must stay 0.",
            registry=r,
        )
        self.ttl_violations = Counter(
            "cache_ttl_violations",
            "Items found still held after deadline + grace. Must stay 0.",
            registry=r,
        )
        self.sweep_duration = Histogram(
            "cache_sweep_duration_seconds",
            "Duration of a scheduled sweep.",
            buckets=SWEEP_BUCKETS,
            registry=r,
        )
        self.last_sweep = Gauge(
            "cache_last_sweep_timestamp_seconds", "Unix time the last sweep ended.", registry=r
        )
        self.guarantee_ok = Gauge(
            "cache_guarantee_ok", "1 when a guarantee check passed, else 0.", ["check"], registry=r
        )
        self.fetch = Counter("cache_fetch", "URL fetches, by result.", ["result"], registry=r)
        self.blocklist_matches = Counter(
            "cache_blocklist_matches",
            "Images refused by the blocklist, by hash kind.",
            ["kind"],
            registry=r,
        )
        self.blocklist_entries = Gauge(
            "cache_blocklist_entries",
            "Hashes listed now (list files and admin additions), by kind.",
            ["kind"],
            registry=r,
        )
        self.blocklist_reload_failures = Counter(
            "cache_blocklist_reload_failures",
            "Reloads of the hash-list files that failed (the lists in force did not change).",
            registry=r,
        )
        self.blocklist_last_reload_ok = Gauge(
            "cache_blocklist_last_reload_ok",
            "1 when the last load of the hash-list files succeeded; 0 when it failed and "
            "older lists are in force.",
            registry=r,
        )
        self.redis_errors = Counter(
            "cache_redis_errors",
            "Redis calls that failed (unreachable, timeout, cluster down), by operation.",
            ["op"],
            registry=r,
        )
        self.unconfirmed_releases = Counter(
            "cache_unconfirmed_releases",
            "Redis backend: capacity released for items no node was seen to purge (Redis's "
            "PX backstop dropped them, or a node died mid-put).",
            registry=r,
        )
        self.request_duration = Histogram(
            "cache_request_duration_seconds",
            "HTTP request latency, by listener, route, method and status.",
            ["listener", "route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str, str], Histogram] = {}
        for reason in PURGE_REASONS:
            self.purged.labels(reason)
        # Series that exist from the start, so a dashboard shows 0 rather than nothing.
        for source in ("upload", "fetch"):
            self.stored.labels(source)
        for result in FETCH_RESULTS:
            self.fetch.labels(result)
        for kind in BLOCKLIST_KINDS:
            self.blocklist_matches.labels(kind)
            self.blocklist_entries.labels(kind)
        self.blocklist_last_reload_ok.set(1)

    def request_seconds(self, listener: str, route: str, method: str, status: str) -> Histogram:
        """The latency series of one (listener, route, method, status), resolved once:
        `labels()` builds and hashes a key on every call, on every request. Bounded: routes
        are the app's (or "unmatched"), methods and statuses what HTTP allows."""
        key = (listener, route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.request_duration.labels(*key)
        return child

    def set_limits(self, max_bytes: int, max_items: int, ttl_max: float, grace: float) -> None:
        self.capacity_bytes.set(max_bytes)
        self.capacity_items.set(max_items)
        self.ttl_max.set(ttl_max)
        self.ttl_grace.set(grace)

    def watch_connections(self, open_now: Callable[[], int]) -> None:
        self.connections.set_function(open_now)

    def watch_audit(self, waiting: Callable[[], int]) -> None:
        self.audit_waiting.set_function(waiting)

    def watch_mappings(self, mappings: Callable[[], int]) -> None:
        self.memory_mappings.set_function(mappings)

    def watch_oldest_age(self, read_age: Callable[[], float]) -> None:
        self.oldest_age.set_function(read_age)

    def record_releases(self, reason: str, lags: list[float], residencies: list[float]) -> None:
        """Released items: lag counts only for those released at or after their deadline."""
        self.purged.labels(reason).inc(len(lags))
        self.purge_lag.observe_many([lag for lag in lags if lag >= 0])
        self.residency.observe_many(residencies)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(statm: str = "/proc/self/statm") -> float:
    """This process's RSS in bytes (0 where /proc is missing)."""
    try:
        with open(statm, "rb") as handle:
            return float(int(handle.read().split()[1]) * _PAGE)
    except (OSError, ValueError, IndexError):
        return 0.0
