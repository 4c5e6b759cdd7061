"""A human summary of a `/metrics` scrape, for `cache.ctl stats` and quick looks."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative (upper bound, count) pairs."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / width if width else 1
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.2f} ms"


def summarise(text: str) -> str:
    plain: dict[str, float] = {}
    by_label: dict[str, dict[str, float]] = defaultdict(dict)
    lag_buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cache_purge_lag_seconds_bucket":
                lag_buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.labels and len(sample.labels) == 1:
                by_label[sample.name][next(iter(sample.labels.values()))] = sample.value
            elif not sample.labels:
                plain[sample.name] = sample.value
    capacity = plain.get("cache_capacity_bytes") or 1
    purged = ", ".join(
        f"{reason}={int(n)}" for reason, n in sorted(by_label["cache_purged_total"].items()) if n
    )
    failing = [check for check, ok in sorted(by_label["cache_guarantee_ok"].items()) if ok != 1]
    lines = [
        f"items held        {int(plain.get('cache_items', 0))} "
        f"of {int(plain.get('cache_capacity_items', 0))}",
        f"bytes held        {int(plain.get('cache_bytes', 0))} "
        f"({100 * plain.get('cache_bytes', 0) / capacity:.1f}% of capacity)",
        f"oldest item age   {plain.get('cache_oldest_item_age_seconds', 0):.1f} s "
        f"(ttl.max {plain.get('cache_ttl_max_seconds', 0):g} s)",
        f"stored            {int(sum(by_label['cache_stored_total'].values()))}",
        f"reads             {int(plain.get('cache_reads_total', 0))}",
        f"purged            {purged or 'none'}",
        f"purge lag         p50 {_ms(histogram_quantile(0.5, lag_buckets))}, "
        f"p99 {_ms(histogram_quantile(0.99, lag_buckets))}",
        f"TTL violations    {int(plain.get('cache_ttl_violations_total', 0))}",
        f"expired reads refused {int(plain.get('cache_expired_reads_refused_total', 0))}",
        f"guarantees        {'all ok' if not failing else 'NOT OK: ' + ', '.join(failing)}",
    ]
    return "\n".join(lines)
