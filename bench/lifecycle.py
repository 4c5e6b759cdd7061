"""Bench 2: lifecycle throughput, POST + GET + DELETE per item, 32 keep-alive connections.

One load generator for every system: Debian's wrk with bench/lifecycle.lua (one connection
per wrk thread, each thread walking its item through POST -> GET -> DELETE). The server under
test (and the redis-server behind the Redis reference) is pinned to core 0 and wrk to core
1, so the generator never takes the server's CPU; wrk's own CPU use is reported so a reader
can see it was not the bottleneck. Systems: this service (memory backend, every upload
validated), the bare aiohttp dict server (the ceiling), aiohttp + Redis (redis-py asyncio).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import http_client
from .context import Ctx
from .images import noise_jpeg, noise_png
from .procs import (
    CLIENT_CPU,
    SERVER_CPU,
    Proc,
    Procs,
    pinned,
    pinning_available,
    start_bare,
    start_redis,
    start_service,
)
from .stats import Section, at_least, fmt, ratio

LUA = Path(__file__).with_name("lifecycle.lua")
# The ingest issue's targets: the ceiling of one Python core with SHA-256 kept (its profile).
RATIO_BARE = 0.5
RATIO_REDIS = 1.2
RATIO_JPEG = 0.25
WARM_UP_CYCLES = 64
GENERATOR_BUSY = 0.9  # wrk at this share of its core or more: the generator may be the limit


@dataclass
class Load:
    system: str
    body: str
    cycles_per_s: float
    errors: int
    wrk_cpu: float  # cores of CPU wrk used while it ran
    server_cpu: float  # cores of CPU the server (and its Redis) used while wrk ran
    p50_ms: float
    p99_ms: float
    cycles: int = 0  # completed in the measured run

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def wrk(
    url: str, body: Path, seconds: float, connections: int, query: str = ""
) -> dict[str, float]:
    """Run wrk once; its summary (from lifecycle.lua's done()) plus its CPU in cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url + "/",
        "--",
        str(body),
        query,
    ]
    done = subprocess.run(
        pinned(argv, CLIENT_CPU), capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    summary: dict[str, float] = json.loads(lines[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary["wrk_cpu_s"] = cpu
    return summary


def measure(
    system: str,
    body_name: str,
    url: str,
    servers: list[Proc],
    body: Path,
    ctx: Ctx,
    query: str,
    before_run: Callable[[], object] = lambda: None,
) -> Load:
    """Warm up, then one measured wrk run; `before_run` is called just before it (after the
    warm-ups: e.g. to reset counters that must cover exactly the measured run)."""
    sizes = ctx.sizes
    asyncio.run(warm_up(url, body.read_bytes(), query))
    if sizes.lifecycle_warmup > 0:
        wrk(url, body, sizes.lifecycle_warmup, sizes.concurrency, query)  # warm-up, discarded
    before_run()
    cpu_before = sum(p.cpu() for p in servers)
    summary = wrk(url, body, sizes.lifecycle_seconds, sizes.concurrency, query)
    cpu_after = sum(p.cpu() for p in servers)
    seconds = summary["duration_us"] / 1e6
    return Load(
        system=system,
        body=body_name,
        cycles_per_s=summary["cycles"] / seconds,
        errors=int(summary["errors"] + summary["socket_errors"]),
        wrk_cpu=summary["wrk_cpu_s"] / seconds,
        server_cpu=(cpu_after - cpu_before) / seconds,
        p50_ms=summary["latency_p50_us"] / 1000,
        p99_ms=summary["latency_p99_us"] / 1000,
        cycles=int(summary["cycles"]),
    )


async def warm_up(url: str, body: bytes, query: str, cycles: int = WARM_UP_CYCLES) -> None:
    """A few lifecycles before wrk starts: lazy imports, executor threads, first allocations."""
    ttl = 60.0 if "ttl" in query else None
    async with http_client.session(8) as http:
        done = await http_client.upload_all(http, url, cycles, lambda _: body, 8, ttl)
        await http_client.timed_reads(http, url, done.ids, 1)
        await http_client.delete_all(http, url, done.ids)


def _one_round(ctx: Ctx, png: Path, jpeg: Path) -> list[Load]:
    loads: list[Load] = []
    with ctx.procs() as procs:
        loads.append(_bare(procs, ctx, png, "png100k", redis=False))
        loads.append(_bare(procs, ctx, png, "png100k", redis=True))
        loads.append(_service(procs, ctx, png, "png100k"))
        loads.append(_service(procs, ctx, png, "png100k", pdq=True))
        loads.append(_service(procs, ctx, png, "png100k", decode=True))
        loads.append(_bare(procs, ctx, jpeg, "jpeg1m", redis=False))
        loads.append(_service(procs, ctx, jpeg, "jpeg1m"))
    return loads


def _bare(procs: Procs, ctx: Ctx, body: Path, body_name: str, redis: bool) -> Load:
    servers: list[Proc] = []
    try:
        url = None
        if redis:
            server = start_redis(procs, cpu=SERVER_CPU)
            servers.append(server)
            url = f"redis://127.0.0.1:{server.ports['port']}/0"
        bare = start_bare(procs, url)
        servers.append(bare)
        name = "aiohttp + Redis" if redis else "bare aiohttp (dict)"
        return measure(
            name, body_name, f"http://127.0.0.1:{bare.ports['port']}", servers, body, ctx, ""
        )
    finally:
        for proc in reversed(servers):
            procs.stop(proc)


def _service(
    procs: Procs, ctx: Ctx, body: Path, body_name: str, pdq: bool = False, decode: bool = False
) -> Load:
    env = {"CACHE_BLOCKLIST_PDQ_MODE": "on"} if pdq else {}
    if decode:
        env["CACHE_LIMITS_VERIFY"] = "decode"
    service = start_service(procs, env or None)
    name = "this service (memory" + (", PDQ on" if pdq else "") + (", decode" if decode else "")
    name += ")"
    try:
        return measure(name, body_name, service.url, [service.proc], body, ctx, "?ttl=60")
    finally:
        procs.stop(service.proc)


def _mean(loads: list[Load], system: str, body: str) -> Load:
    picked = [load for load in loads if load.system == system and load.body == body]
    n = len(picked)
    return Load(
        system,
        body,
        sum(x.cycles_per_s for x in picked) / n,
        sum(x.errors for x in picked),
        max(x.wrk_cpu for x in picked),
        sum(x.server_cpu for x in picked) / n,
        sum(x.p50_ms for x in picked) / n,
        max(x.p99_ms for x in picked),
    )


def run(ctx: Ctx) -> Section:
    section = Section("lifecycle")
    png_path = ctx.scratch / "noise-100k.png"
    jpeg_path = ctx.scratch / "noise-1m.jpg"
    png_path.write_bytes(noise_png(100_000))
    jpeg_path.write_bytes(noise_jpeg(1_000_000))
    rounds = 2 if ctx.sizes.mode == "full" else 1
    loads = [load for _ in range(rounds) for load in _one_round(ctx, png_path, jpeg_path)]
    service = _mean(loads, "this service (memory)", "png100k")
    bare = _mean(loads, "bare aiohttp (dict)", "png100k")
    redis = _mean(loads, "aiohttp + Redis", "png100k")
    service_pdq = _mean(loads, "this service (memory, PDQ on)", "png100k")
    service_decode = _mean(loads, "this service (memory, decode)", "png100k")
    service_j = _mean(loads, "this service (memory)", "jpeg1m")
    bare_j = _mean(loads, "bare aiohttp (dict)", "jpeg1m")
    vs_bare = ratio(service.cycles_per_s, bare.cycles_per_s)
    vs_redis = ratio(service.cycles_per_s, redis.cycles_per_s)
    jpeg = ratio(service_j.cycles_per_s, bare_j.cycles_per_s)
    vs_bare_pdq = ratio(service_pdq.cycles_per_s, bare.cycles_per_s)
    vs_bare_decode = ratio(service_decode.cycles_per_s, bare.cycles_per_s)
    cyc = "cycles/s"
    section.add(
        f"lifecycle POST+GET+DELETE, {png_path.stat().st_size:,} B PNG, c={ctx.sizes.concurrency}",
        fmt(service.cycles_per_s, cyc),
        f"bare aiohttp {fmt(bare.cycles_per_s, cyc)}",
        vs_bare,
        f"≥ {RATIO_BARE:g}x bare",
        at_least(vs_bare, RATIO_BARE),
    )
    section.add(
        "lifecycle vs aiohttp + Redis (same load)",
        fmt(service.cycles_per_s, cyc),
        f"aiohttp+Redis {fmt(redis.cycles_per_s, cyc)}",
        vs_redis,
        f"≥ {RATIO_REDIS:g}x aiohttp+Redis",
        at_least(vs_redis, RATIO_REDIS),
    )
    section.add(
        "lifecycle, same PNG, limits.verify = decode (Pillow decodes every upload)",
        fmt(service_decode.cycles_per_s, cyc),
        f"bare aiohttp {fmt(bare.cycles_per_s, cyc)}",
        vs_bare_decode,
        "reported",
    )
    section.add(
        f"lifecycle, {jpeg_path.stat().st_size:,} B JPEG (structure check)",
        fmt(service_j.cycles_per_s, cyc),
        f"bare aiohttp {fmt(bare_j.cycles_per_s, cyc)}",
        jpeg,
        f"≥ {RATIO_JPEG:g}x bare",
        at_least(jpeg, RATIO_JPEG),
    )
    section.add(
        "lifecycle, same PNG, PDQ on (blocklist.pdq_mode = on)",
        fmt(service_pdq.cycles_per_s, cyc),
        f"bare aiohttp {fmt(bare.cycles_per_s, cyc)}; PDQ off {fmt(service.cycles_per_s, cyc)}",
        vs_bare_pdq,
        "reported",
    )
    for load in (service, service_pdq, service_decode, bare, redis, service_j, bare_j):
        bound = " GENERATOR-BOUND" if load.wrk_cpu >= GENERATOR_BUSY else ""
        section.add(
            f"  load check: {load.system}, {load.body}",
            f"server CPU {load.server_cpu:.2f} cores, errors {load.errors}",
            f"wrk CPU {load.wrk_cpu:.2f} cores{bound}; latency p50 {fmt(load.p50_ms)} / "
            f"p99 {fmt(load.p99_ms)} ms",
        )
        if bound:
            section.notes.append(
                f"Lifecycle: wrk used {load.wrk_cpu:.2f} of its core against {load.system} "
                f"({load.body}): the generator, not the server, set that pace, so that figure is "
                "a floor of the real one; a ratio with it as the reference is an upper bound."
            )
    section.keys.update(
        {
            "lifecycle_ratio_vs_bare": vs_bare,
            "lifecycle_ratio_vs_redis": vs_redis,
            "jpeg1m_ratio_vs_bare": jpeg,
            "lifecycle_ratio_vs_bare_pdq": vs_bare_pdq,
            "lifecycle_ratio_vs_bare_decode": vs_bare_decode,
        }
    )
    section.series["loads"] = [load.as_dict() for load in loads]
    section.notes.append(
        f"Lifecycle: wrk -t{ctx.sizes.concurrency} -c{ctx.sizes.concurrency}, "
        f"{ctx.sizes.lifecycle_seconds:g} s after {WARM_UP_CYCLES} lifecycles from Python"
        + (
            f" and a {ctx.sizes.lifecycle_warmup:g} s wrk warm-up"
            if ctx.sizes.lifecycle_warmup
            else ""
        )
        + ", "
        f"{rounds} round(s) alternating the systems (mean shown); "
        + (
            "servers (and the reference's redis-server) on core 0, wrk on core 1."
            if pinning_available()
            else "taskset or a second core was missing: nothing pinned."
        )
    )
    if any(load.errors for load in loads):
        section.notes.append("Some lifecycle requests failed: see `loads` in results.json.")
    return section
