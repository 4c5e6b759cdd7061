"""PNG plots for results.md, drawn from the series each bench returns (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def purge_lag(series: dict[str, Any], folder: Path) -> Path | None:
    cdf: dict[str, list[float]] = series.get("cdf", {})
    if not cdf:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    palette = plt.get_cmap("tab20")
    for n, (label, lags) in enumerate(sorted(cdf.items())):
        if not lags:
            continue
        ys = [(i + 1) / len(lags) for i in range(len(lags))]
        style = "-" if label.startswith("service") else "--"
        ax.plot([max(lag, 0.01) for lag in lags], ys, style, color=palette(n % 20), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("purge lag, deadline -> bytes released (ms, log)")
    ax.set_ylabel("fraction of items")
    ax.axvline(5, color="grey", linestyle=":", linewidth=1)
    ax.axvline(25, color="grey", linestyle="--", linewidth=1)
    ax.set_title("Purge lag CDF (dotted: p99 target 5 ms, dashed: max target 25 ms)")
    ax.legend(fontsize=7)
    return _save(fig, folder / "purge_lag_cdf.png")


def lifecycle(series: dict[str, Any], folder: Path) -> Path | None:
    loads = series.get("loads", [])
    if not loads:
        return None
    groups: dict[tuple[str, str], list[float]] = {}
    for load in loads:
        groups.setdefault((load["body"], load["system"]), []).append(load["cycles_per_s"])
    labels = [f"{system}\n{body}" for body, system in groups]
    values = [sum(v) / len(v) for v in groups.values()]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("lifecycles (POST+GET+DELETE) per second")
    ax.set_title("Lifecycle throughput, c=32, server on one core")
    return _save(fig, folder / "lifecycle.png")


def memory(series: dict[str, Any], folder: Path) -> Path | None:
    footprints = series.get("footprints", [])
    if not footprints:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    phases = ("cold", "half", "held", "after")
    width = 0.8 / len(footprints)
    for n, fp in enumerate(footprints):
        xs = [i + n * width for i in range(len(phases))]
        ax.bar(xs, [fp[p] / 2**20 for p in phases], width, label=fp["system"])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(phases))], phases)
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("RSS at start, half full, full, after expiry")
    ax.legend(fontsize=7)
    return _save(fig, folder / "memory.png")


def flood(series: dict[str, Any], folder: Path) -> Path | None:
    data = series.get("flood", {})
    unloaded, loaded = data.get("unloaded_ms"), data.get("loaded_ms")
    if not unloaded or not loaded:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in (("unloaded", unloaded), ("during the flood", loaded)):
        ordered = sorted(values)
        ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("GET latency of admitted items (ms, log)")
    ax.set_ylabel("fraction of reads")
    ax.set_title("Reads of admitted items, unloaded vs during a 10x-capacity flood")
    ax.legend()
    return _save(fig, folder / "flood_reads.png")


def draw_all(sections: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    drawn = [
        purge_lag(sections.get("purge_lag", {}), folder),
        lifecycle(sections.get("lifecycle", {}), folder),
        memory(sections.get("memory", {}), folder),
        flood(sections.get("flood", {}), folder),
    ]
    return [path for path in drawn if path is not None]
