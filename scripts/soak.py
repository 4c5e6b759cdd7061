"""A short soak of the real service on loopback, plotted: items held, the process's resident
memory beside the bytes it holds, and purge lag over time.

    .venv/bin/python scripts/soak.py --seconds 30 --out docs/soak.png

Uploads ~100 KB images at a steady rate with TTLs spread over 1-10 s (some read-once, some
deleted early), through real HTTP, and records every purge's lag from the audit log. The
process is hardened as server.py does (memory locked where allowed), so the middle panel
shows purged bytes leaving a locked process: `cache_process_resident_bytes` follows
`cache_bytes` down. The PNG is the picture in the README's operator guide.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from PIL import Image
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache.app import build_runtime, create_public_app
from cache.config import build_config

MiB = 1024 * 1024
Memory = list[tuple[float, float, float]]  # (seconds, resident bytes, cache_bytes)


def sample_image(seed: int) -> bytes:
    """A ~100 KB PNG of noise (182 x 182 RGB): the size of a typical query image."""
    rng = random.Random(seed)
    im = Image.frombytes("RGB", (182, 182), rng.randbytes(182 * 182 * 3))
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


async def soak(
    seconds: float, rate: float, max_ttl: float
) -> tuple[list[tuple[float, int]], list[tuple[float, float]], dict[str, int], Memory, str]:
    audit = io.StringIO()
    rt = build_runtime(
        build_config({"ttl": {"max": max(max_ttl, 1), "default": 1}}, env={}),
        registry=CollectorRegistry(),
        audit_stream=audit,
    )
    rt.guarantees.apply_process_hardening()  # as server.py: memory locked where allowed
    locked = next(c for c in rt.guarantees.run_checks() if c.name == "memory_locked").status
    sample = rt.metrics.registry.get_sample_value
    memory: Memory = []
    runner = web.AppRunner(create_public_app(rt))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    rng = random.Random(1)
    images = [sample_image(i) for i in range(16)]
    held: list[tuple[float, int]] = []
    started = time.monotonic()
    started_wall = time.time()
    async with aiohttp.ClientSession() as session:
        n = 0
        while (elapsed := time.monotonic() - started) < seconds + max_ttl + 1:
            if elapsed < seconds:
                params = {"ttl": f"{rng.uniform(1, max_ttl):.3f}"}
                if n % 5 == 0:
                    params["max_reads"] = "1"
                async with session.post(
                    base + "/v1/images", data=images[n % 16], params=params
                ) as r:
                    created = await r.json()
                if n % 5 == 0:
                    async with session.get(base + f"/v1/images/{created['id']}") as r:
                        await r.read()
                elif n % 7 == 0:
                    async with session.delete(base + f"/v1/images/{created['id']}"):
                        pass
                n += 1
            held.append((elapsed, len(rt.store)))
            resident, holding = sample("cache_process_resident_bytes"), sample("cache_bytes")
            memory.append((elapsed, resident or 0.0, holding or 0.0))
            await asyncio.sleep(1 / rate)
    await runner.cleanup()
    lags: list[tuple[float, float]] = []
    reasons: dict[str, int] = {}
    for line in audit.getvalue().splitlines():
        event = json.loads(line)
        if event["event"] == "purged" and "id" in event:
            reasons[event["reason"]] = reasons.get(event["reason"], 0) + 1
            if event["reason"] == "ttl":
                lags.append((event["ts"], event["lag_ms"]))
    return held, [(ts - started_wall, lag) for ts, lag in lags], reasons, memory, locked


def plot(
    held: list[tuple[float, int]],
    lags: list[tuple[float, float]],
    memory: Memory,
    locked: str,
    seconds: float,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    top.plot([t for t, _ in held], [n for _, n in held], color="#1f77b4")
    top.set_ylabel("items held")
    top.set_title(
        "query-cache soak: uploads stop at the dashed line, every item still goes on time"
    )
    times = [t for t, _, _ in memory]
    start = memory[0][1] if memory else 0.0
    middle.plot(times, [r / MiB for _, r, _ in memory], color="#2ca02c", label="resident (RSS)")
    middle.plot(
        times,
        [(start + b) / MiB for _, _, b in memory],
        color="#ff7f0e",
        label="RSS at start + cache_bytes",
    )
    middle.set_ylabel("MiB")
    middle.legend(loc="upper right", title=f"memory_locked: {locked}", fontsize=8)
    bottom.scatter([t for t, _ in lags], [ms for _, ms in lags], s=4, color="#d62728")
    bottom.set_ylabel("purge lag (ms)")
    bottom.set_xlabel("seconds")
    ordered = sorted(ms for _, ms in lags)
    if ordered:
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        bottom.axhline(
            p99, color="grey", linestyle=":", label=f"p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms"
        )
        bottom.legend(loc="upper right")
    last_upload = seconds
    for axis in (top, middle, bottom):
        axis.axvline(last_upload, color="black", linestyle="--", linewidth=0.8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="uploads per second (at most)")
    parser.add_argument("--max-ttl", type=float, default=10.0, help="TTLs are 1..max-ttl s")
    parser.add_argument("--out", type=Path, default=Path("docs/soak.png"))
    args = parser.parse_args()
    held, lags, reasons, memory, locked = asyncio.run(soak(args.seconds, args.rate, args.max_ttl))
    plot(held, lags, memory, locked, args.seconds, args.out)
    ordered = sorted(ms for _, ms in lags)
    summary = {
        "purged": reasons,
        "held_at_end": held[-1][1] if held else 0,
        "memory_locked": locked,
        "rss_start_mib": round(memory[0][1] / MiB, 1) if memory else None,
        "rss_peak_mib": round(max(r for _, r, _ in memory) / MiB, 1) if memory else None,
        "rss_end_mib": round(memory[-1][1] / MiB, 1) if memory else None,
        "lag_p50_ms": ordered[len(ordered) // 2] if ordered else None,
        "lag_p99_ms": ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
        "lag_max_ms": ordered[-1] if ordered else None,
    }
    print(json.dumps(summary))
    return 0 if summary["held_at_end"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
