"""How big each bench runs in each mode. One code path; only these numbers change.

`full` is what results.md reports; `quick` fits in about a minute and still measures every
key (purge lag with 100,000 live items); `smoke` is the smallest run that exercises every
code path, for tests/process/test_bench_smoke.py (its figures mean nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Sizes:
    mode: str
    # purge lag: live items per run, TTLs drawn uniform in ttl_range (seconds)
    purge_counts: tuple[int, ...]  # this service (memory backend) and the references
    purge_counts_tmpfs: tuple[int, ...]  # tmpfs backend (an executor hop per item)
    purge_counts_redis: tuple[int, ...]  # redis backend, when this version has one
    purge_e2e_count: int  # end-to-end through server.py and HTTP (0: skipped)
    ttl_range: tuple[float, float]
    payload_bytes: int  # bytes per item in the purge-lag runs
    # lifecycle throughput
    lifecycle_seconds: float  # wrk runs whole seconds
    lifecycle_warmup: float  # 0: no warm-up run
    concurrency: int
    # memory
    memory_fill_bytes: int
    # cost growth (in-process)
    cost_small: int
    cost_large: int
    cost_due: int  # expired items per timed purge
    cost_repeats: int
    upload_samples: int
    # flood
    flood_max_bytes: int
    flood_factor: int
    flood_readers: int
    # hash lists: PDQ hashes listed, dihedral lookups timed
    pdq_entries: int
    pdq_queries: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


FULL = Sizes(
    mode="full",
    purge_counts=(1_000, 100_000),
    purge_counts_tmpfs=(1_000, 100_000),
    purge_counts_redis=(1_000, 100_000),
    purge_e2e_count=1_000,
    ttl_range=(1.0, 5.0),
    payload_bytes=1024,
    lifecycle_seconds=10.0,
    lifecycle_warmup=2.0,
    concurrency=32,
    memory_fill_bytes=GiB,
    cost_small=1_000,
    cost_large=1_000_000,
    cost_due=1_000,
    cost_repeats=7,
    upload_samples=5_000,
    flood_max_bytes=64 * MiB,
    flood_factor=10,
    flood_readers=4,
    pdq_entries=1_000_000,
    pdq_queries=2_000,
)

QUICK = Sizes(
    mode="quick",
    purge_counts=(100_000,),
    purge_counts_tmpfs=(100_000,),  # every key of --full, at the size its target names
    purge_counts_redis=(100_000,),
    purge_e2e_count=0,
    ttl_range=(1.0, 5.0),
    payload_bytes=1024,
    lifecycle_seconds=2.0,
    lifecycle_warmup=0.0,
    concurrency=32,
    memory_fill_bytes=64 * MiB,
    cost_small=1_000,
    cost_large=100_000,
    cost_due=1_000,
    cost_repeats=5,
    upload_samples=3_000,
    flood_max_bytes=16 * MiB,
    flood_factor=10,
    flood_readers=4,
    pdq_entries=1_000_000,
    pdq_queries=1_000,
)

SMOKE = Sizes(
    mode="smoke",
    purge_counts=(500,),
    purge_counts_tmpfs=(200,),
    purge_counts_redis=(200,),
    purge_e2e_count=50,
    ttl_range=(1.0, 1.5),
    payload_bytes=256,
    lifecycle_seconds=1.0,
    lifecycle_warmup=0.0,
    concurrency=4,
    memory_fill_bytes=4 * MiB,
    cost_small=200,
    cost_large=2_000,
    cost_due=100,
    cost_repeats=2,
    upload_samples=200,
    flood_max_bytes=2 * MiB,
    flood_factor=10,
    flood_readers=2,
    pdq_entries=10_000,
    pdq_queries=50,
)

MODES = {s.mode: s for s in (FULL, QUICK, SMOKE)}
