"""What a run leaves: the table on stdout, bench/out/results.json, and (full run)
bench/results.md with the machine's facts and PNG plots under bench/plots/."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .stats import Row

PACKAGES = ("aiohttp", "redis", "prometheus-client", "pillow", "apscheduler", "aiofiles")
COLUMNS = ("metric", "this service", "reference", "ratio", "target", "met?")


def _met(row: Row) -> str:
    return {True: "yes", False: "MISSED", None: ""}[row.met]


def _cells(row: Row) -> tuple[str, ...]:
    ratio = "" if row.ratio is None else f"{row.ratio:.3g}"
    return (row.metric, row.service, row.reference, ratio, row.target, _met(row))


def text_table(rows: Sequence[Row]) -> str:
    """A plain table for a terminal, columns as wide as their content (metric capped)."""
    cells = [COLUMNS, *(_cells(row) for row in rows)]
    widths = [min(max(len(c[i]) for c in cells), 70 if i == 0 else 60) for i in range(6)]
    lines = []
    for n, line in enumerate(cells):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(esc(c) for c in _cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def machine_facts() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    try:
        with open("/proc/meminfo") as handle:
            mem_kib = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "cpu_model": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "tools": {
            "redis-server": _first_line(["redis-server", "--version"]),
            "memcached": _first_line(["memcached", "-V"]),
            "wrk": _first_line(["wrk", "-v"]),
        },
    }


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def write_markdown(
    path: Path, results: dict[str, Any], rows: Sequence[Row], plots: list[Path]
) -> None:
    machine = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    tools = "; ".join(f"{k}: {v}" for k, v in machine["tools"].items())
    missed = [row.metric.strip() for row in rows if row.met is False]
    lines = [
        "# Benchmarks: this service vs Redis with a TTL, memcached, bare aiohttp",
        "",
        f"Command: `{results['command']}` ({results['mode']} run, {results['seconds']:.0f} s, "
        f"started {results['started']}).",
        "",
        "Machine: "
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}, Python {machine['python']}.  ",
        f"Packages: {packages}.  ",
        f"Tools: {tools}.",
        "",
        "Every figure of this service is paired with its reference, measured in the same run "
        "on the same machine; the ratio is service / reference. A missed target is marked "
        "MISSED and stays missed.",
        "",
        markdown_table(rows),
        "",
        f"Missed: {', '.join(missed) if missed else 'none'}.",
        "",
        "## Load on the machine during the run",
        "",
        "CPU used by processes outside the bench while each bench ran (core-seconds; the "
        "machine is shared, so this is the noise floor of the figures above):",
        "",
    ]
    for name, load in results.get("foreign_cpu", {}).items():
        lines.append(
            f"- {name}: {load['foreign_core_s']:.1f} core-s over {load['wall_s']:.0f} s "
            f"({load['foreign_share']:.0%} of the machine)"
        )
    lines += ["", "## How each figure was taken", ""]
    lines += [f"- {note}" for note in results.get("notes", [])]
    lines += ["", *results.get("explanations", [])]
    profile = path.with_name("profile.md")  # the hand-kept profile, kept with every report
    if profile.exists():
        lines += ["", profile.read_text().rstrip()]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    path.write_text("\n".join(lines) + "\n")
