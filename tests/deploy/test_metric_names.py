"""The metric names that the Grafana dashboard and the Prometheus alert rules use.

Checked against the service's metrics; the PromQL name extraction is tested first.
Reads files only.
"""

from __future__ import annotations

import pytest

from tests.support.deploy_files import (
    alert_rules_metric_names,
    dashboard_metric_names,
    promql_metric_names,
)

# Every metric the service exports (histograms by their base name). To be replaced by the
# names of a real scrape of /metrics.
EXPECTED_METRICS = frozenset(
    {
        "cache_items",
        "cache_bytes",
        "cache_oldest_item_age_seconds",
        "cache_capacity_bytes",
        "cache_capacity_items",
        "cache_ttl_max_seconds",
        "cache_ttl_grace_seconds",
        "cache_last_sweep_timestamp_seconds",
        "cache_guarantee_ok",
        "cache_stored_total",
        "cache_rejected_total",
        "cache_reads_total",
        "cache_purged_total",
        "cache_expired_reads_refused_total",
        "cache_ttl_violations_total",
        "cache_fetch_total",
        "cache_blocklist_matches_total",
        "cache_blocklist_entries",
        "cache_blocklist_last_reload_ok",
        "cache_blocklist_reload_failures_total",
        "cache_purge_lag_seconds",
        "cache_residency_seconds",
        "cache_sweep_duration_seconds",
        "cache_request_duration_seconds",
    }
)
# Series that Prometheus itself makes for every target.
PROMETHEUS_SERIES = frozenset({"up"})


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("cache_items", {"cache_items"}),
        (
            'sum by (le) (rate(cache_purge_lag_seconds_bucket{job="x", le!="+Inf"}[5m]))',
            {"cache_purge_lag_seconds"},
        ),
        (
            "sum(rate(a_seconds_sum[$__rate_interval])) / sum(rate(a_seconds_count[1m] offset 5m))",
            {"a_seconds"},
        ),
        ('time() - b{instance=~"$instance", x="rate(c)"} > bool 30', {"b"}),
        ("a / on (instance) group_left (check) b or c unless d and e", {"a", "b", "c", "d", "e"}),
        ('label_replace(job:x:ratio, "r", "bytes", "", "") > 0.9 or vector(1e3)', {"job:x:ratio"}),
        ("max_over_time(up[1h:5m]) == 0", {"up"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_dashboard_uses_only_exported_metrics() -> None:
    unknown = dashboard_metric_names() - EXPECTED_METRICS - PROMETHEUS_SERIES
    assert not unknown, f"dashboard uses metrics the service does not export: {sorted(unknown)}"


def test_alert_rules_use_only_exported_metrics() -> None:
    unknown = alert_rules_metric_names() - EXPECTED_METRICS - PROMETHEUS_SERIES
    assert not unknown, f"alerts.yml uses metrics the service does not export: {sorted(unknown)}"


def test_dashboard_shows_every_exported_metric() -> None:
    missing = EXPECTED_METRICS - dashboard_metric_names()
    assert not missing, f"metrics with no dashboard panel: {sorted(missing)}"
