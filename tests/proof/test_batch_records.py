"""A purge is recorded a batch at a time: the histogram and the audit lines it writes read
exactly as the per-item versions did (prometheus_client's Histogram, `emit_many`)."""

from __future__ import annotations

import io
import json
import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cache.clock import ManualClock
from cache.proof.audit import AuditLog
from cache.proof.histogram import BatchHistogram
from cache.proof.metrics import LAG_BUCKETS

VALUES = [0.0, 0.0005, 0.00051, 0.001, 0.3, 2.5, 5.0, 5.0001, 1e9, 0.0] + [
    i / 997 for i in range(300)
]


def exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_batch_histogram_exposes_what_prometheus_histogram_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("cache_purge_lag_seconds", "Lag.", buckets=LAG_BUCKETS, registry=theirs)
    batch = BatchHistogram("cache_purge_lag_seconds", "Lag.", LAG_BUCKETS, registry=ours)
    for value in VALUES:
        reference.observe(value)
    batch.observe_many(VALUES[:100])
    batch.observe_many([])
    for value in VALUES[100:]:
        batch.observe(value)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("cache_purge_lag_seconds_count") == len(VALUES)
    assert math.isclose(ours.get_sample_value("cache_purge_lag_seconds_sum") or 0, sum(VALUES))


def test_batch_histogram_name_collides_like_any_metric() -> None:
    registry = CollectorRegistry()
    BatchHistogram("cache_x_seconds", "X.", (1.0,), registry=registry)
    try:
        BatchHistogram("cache_x_seconds", "X.", (1.0,), registry=registry)
    except ValueError as exc:
        assert "cache_x_seconds" in str(exc)
    else:
        raise AssertionError("a second histogram of the same name was registered")


def test_emit_rows_writes_the_lines_emit_many_writes() -> None:
    rows = [
        {"id": f"id{n}", "sha256": "ab" * 32, "size": n, "reason": "ttl", "lag_ms": n / 3}
        for n in range(5)
    ]
    clock = ManualClock()
    many, fast = io.StringIO(), io.StringIO()
    AuditLog(clock, many).emit_many("purged", rows)
    AuditLog(clock, fast).emit_rows("purged", rows)
    assert fast.getvalue() == many.getvalue()
    lines = [json.loads(line) for line in fast.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["purged"] * 5
    assert list(lines[0])[:2] == ["ts", "event"]


def test_record_takes_one_release_time_per_item() -> None:
    from prometheus_client import CollectorRegistry as Registry

    from cache.proof.metrics import Metrics
    from cache.store.records import ReleaseRecorder

    clock = ManualClock()
    out = io.StringIO()
    recorder = ReleaseRecorder(clock, Metrics(Registry()), AuditLog(clock, out), grace=1.0)
    now = clock.monotonic()
    released = [(f"id{n}", "ab" * 32, 10, 1.0, now - 5, now - 0.010, "ttl") for n in range(3)]
    receipts = recorder.record(released, [now - 0.008, now - 0.004, now + 2.0])
    assert [r.lag_ms for r in receipts] == [2.0, 6.0, 2010.0]
    assert [r.purged_at for r in receipts] == [
        round(clock.wall() - 0.008, 6),
        round(clock.wall() - 0.004, 6),
        round(clock.wall() + 2.0, 6),
    ]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["lag_ms"] for line in lines] == [2.0, 6.0, 2010.0]
    assert recorder.record(released[:1])[0].lag_ms == 10.0  # no times: now, for all
