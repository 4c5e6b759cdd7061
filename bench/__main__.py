"""`python -m bench --full | --quick | --smoke`: every bench, side by side, one table.

--full   the sizes of the issue (about 10 minutes); writes bench/results.md, bench/plots/*.png
--quick  every key at sizes that fit in about a minute (purge lag still at 100,000 items)
--smoke  the smallest sizes, for tests/process/test_bench_smoke.py: its figures mean nothing
All write results.json (bench/out/results.json unless --out). Exit 1 if a bench failed
(its keys are null and the error is in results.json), 0 otherwise: a missed target is a
result, reported as MISSED, not a failure of the run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cost, flood, hostile, lifecycle, memory, pdq, purge_lag, report, shared_store
from .context import Ctx
from .procs import missing_tools
from .sizes import MODES
from .stats import Row, Section

HERE = Path(__file__).resolve().parent
BENCHES: dict[str, tuple[Callable[[Ctx], Section], tuple[str, ...]]] = {
    "purge_lag": (
        purge_lag.run,
        (
            "purge_lag_p50_ms",
            "purge_lag_p99_ms",
            "purge_lag_max_ms",
            "redis_expiry_p99_ms",
            "purge_lag_p99_ms_tmpfs",
            "purge_lag_p99_ms_redis",
        ),
    ),
    "lifecycle": (
        lifecycle.run,
        (
            "lifecycle_ratio_vs_bare",
            "lifecycle_ratio_vs_redis",
            "jpeg1m_ratio_vs_bare",
            "lifecycle_ratio_vs_bare_pdq",
            "lifecycle_ratio_vs_bare_decode",
        ),
    ),
    "redis_backend": (
        shared_store.run,
        (
            "lifecycle_ratio_redis_backend_vs_redis",
            "redis_calls_per_lifecycle",
            "redis_cpu_us_per_lifecycle",
        ),
    ),
    "memory": (
        memory.run,
        (
            "rss_after_purge_ratio",
            "rss_after_purge_ratio_unlocked",
            "overhead_bytes_per_item",
            "peak_rss_fill_ratio",
        ),
    ),
    "cost": (cost.run, ("sweep_cost_ratio_1e6_vs_1e3", "upload_p99_ratio_1e6_vs_empty")),
    "flood": (
        flood.run,
        ("flood_rss_ratio", "flood_read_p99_ratio", "flood_503_count", "flood_retry_after_present"),
    ),
    "hostile": (
        hostile.run,
        (
            "hostile_purge_lag_p99_ms",
            "hostile_ttl_violations",
            "decode_burst_rss_ratio",
            "decode_burst_rss_after_ratio",
        ),
    ),
    "pdq": (
        pdq.run,
        (
            "pdq_cost_ratio_png",
            "pdq_cost_ratio_jpeg1m",
            "pdq_lookup_p99_ms",
            "pdq_load_1e6_s",
            "pdq_load_1e6_rss_mib",
        ),
    ),
}
KEYS = tuple(key for _, keys in BENCHES.values() for key in keys)
TOOLS = ("wrk", "redis-server", "memcached")


def _cpu_now() -> tuple[float, float]:
    """(busy core-seconds of the whole machine, core-seconds used by us and our children)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    ticks = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    ours = sum(r.ru_utime + r.ru_stime for r in ticks)
    return busy, ours


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    for name in ("full", "quick", "smoke"):
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "results.json")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}"
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where results.md and plots/ go (default: bench/ for --full, none otherwise)",
    )
    args = parser.parse_args(argv)
    args.mode = args.mode or "quick"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools(*TOOLS)
    if missing:
        print(
            f"bench: missing {', '.join(missing)}; `make system-deps` installs them",
            file=sys.stderr,
        )
        return 2
    chosen = [name for name in (args.only.split(",") if args.only else BENCHES) if name]
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"bench: unknown bench {', '.join(unknown)}", file=sys.stderr)
        return 2
    sizes = MODES[args.mode]
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    results: dict[str, Any] = {
        "mode": args.mode,
        "command": command.strip(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **dict.fromkeys(KEYS),
        "na": {},
        "sizes": sizes.as_dict(),
        "machine": report.machine_facts(),
        "rows": [],
        "notes": [],
        "errors": {},
        "foreign_cpu": {},
        "details": {},
    }
    rows: list[Row] = []
    series: dict[str, dict[str, Any]] = {}
    ctx = Ctx(sizes, scratch)
    try:
        for name in chosen:
            bench, keys = BENCHES[name]
            print(f"== {name} ({args.mode}) ==", flush=True)
            busy0, ours0 = _cpu_now()
            wall0 = time.monotonic()
            try:
                section = bench(ctx)
            except Exception as exc:  # report it, run the others, exit 1
                traceback.print_exc()
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                for key in keys:
                    results["na"][key] = f"the {name} bench failed: {exc}"
                continue
            finally:
                busy1, ours1 = _cpu_now()
                wall = time.monotonic() - wall0
                foreign = max(0.0, (busy1 - busy0) - (ours1 - ours0))
                results["foreign_cpu"][name] = {
                    "wall_s": round(wall, 1),
                    "foreign_core_s": round(foreign, 2),
                    "foreign_share": round(foreign / (wall * (os.cpu_count() or 1)), 3),
                }
            print(report.text_table(section.rows), flush=True)
            rows += section.rows
            series[name] = section.series
            results["notes"] += section.notes
            for key in keys:
                value = section.keys.get(key)
                results[key] = value
                if value is None:
                    results["na"][key] = section.keys.get(f"{key}_why", "not measured in this run")
            for key, value in section.keys.items():
                if key not in keys and not key.endswith("_why"):
                    results["details"].setdefault(name, {})[key] = value
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["rows"] = [row.as_dict() for row in rows]
    results["missed"] = [row.metric.strip() for row in rows if row.met is False]
    for name, data in series.items():
        results["details"].setdefault(name, {}).update(data)
    report.write_json(args.out, results)
    print(f"\n== all benches ({args.mode}, {results['seconds']:.0f} s) ==")
    print(report.text_table(rows))
    print(f"\nmissed: {', '.join(results['missed']) or 'none'}")
    print(f"results: {args.out}")
    report_dir = args.report_dir or (HERE if args.mode == "full" else None)
    if report_dir is not None:
        from . import plots  # matplotlib only now: its objects would slow the in-process GC

        drawn = plots.draw_all(series, report_dir / "plots")
        report.write_markdown(report_dir / "results.md", results, rows, drawn)
        print(f"report: {report_dir / 'results.md'}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
