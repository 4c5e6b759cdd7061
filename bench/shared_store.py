"""Bench: the redis backend (storage.backend = redis) against aiohttp + Redis, same run.

Throughput: the lifecycle of bench/lifecycle.py (wrk with lifecycle.lua, POST 100 KB PNG +
GET + DELETE, c connections), the service and the reference each with a redis-server of
their own; servers and their redis-servers on core 0, wrk on core 1. Cost inside Redis:
`INFO commandstats` of each redis-server over exactly the measured wrk run, per lifecycle
completed. Under load, not one request at a time: a lone command's usec is several times
its cost in a busy server (cold caches, a wake-up per command), for both systems alike.
Redis counts a script's inner calls as commands, and an EVALSHA's usec includes theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from .context import Ctx
from .images import noise_png
from .lifecycle import Load, measure
from .procs import SERVER_CPU, Proc, Procs, start_bare, start_redis, start_service
from .stats import Section, at_least, at_most, fmt, ratio

RATIO_TARGET = 1.0
CALLS_TARGET = 12
CPU_TARGET_US = 60
IGNORED = {"info", "config|resetstat"}


@dataclass
class CommandCost:
    calls: float  # per lifecycle, every command commandstats counts
    cpu_us: float  # per lifecycle, Redis CPU in those commands
    per_command: dict[str, tuple[float, float]]  # name -> (calls, µs) per lifecycle
    process_us: float = 0.0  # per lifecycle, redis-server's CPU (INFO cpu), sockets included


def _process_seconds(client: redis.Redis) -> float:
    """redis-server's CPU so far, user + system, every thread (INFO cpu)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
        if isinstance(v, dict)
    }


def loaded(
    system: str, url: str, servers: list[Proc], redis_port: int, body: Path, ctx: Ctx, query: str
) -> tuple[Load, CommandCost]:
    """`lifecycle.measure`'s load, with Redis's commandstats over exactly the measured wrk
    run (warm-ups excluded), per lifecycle completed."""
    client = redis.Redis(port=redis_port)
    started: list[float] = []

    def reset() -> None:
        client.config_resetstat()
        started.append(_process_seconds(client))

    try:
        load = measure(system, "png100k", url, servers, body, ctx, query, before_run=reset)
        stats = _commandstats(client)
        process = _process_seconds(client) - started[-1]
    finally:
        client.close()
    cycles = max(1, load.cycles)
    per = {
        name: (calls / cycles, usec / cycles)
        for name, (calls, usec) in stats.items()
        if name not in IGNORED
    }
    cost = CommandCost(
        sum(c for c, _ in per.values()),
        sum(u for _, u in per.values()),
        dict(sorted(per.items())),
        process * 1e6 / cycles,
    )
    return load, cost


def _service(procs: Procs, ctx: Ctx, body: Path) -> tuple[Load, CommandCost]:
    server = start_redis(procs, cpu=SERVER_CPU)
    url = f"redis://127.0.0.1:{server.ports['port']}/0"
    env = {"CACHE_STORAGE_BACKEND": "redis", "CACHE_STORAGE_REDIS_URL": url}
    service = start_service(procs, env, name="service-redis")
    try:
        servers = [service.proc, server]
        port = server.ports["port"]
        return loaded("this service (redis)", service.url, servers, port, body, ctx, "?ttl=60")
    finally:
        procs.stop(service.proc)
        procs.stop(server)


def _reference(procs: Procs, ctx: Ctx, body: Path) -> tuple[Load, CommandCost]:
    server = start_redis(procs, cpu=SERVER_CPU)
    bare = start_bare(procs, f"redis://127.0.0.1:{server.ports['port']}/0")
    try:
        url = f"http://127.0.0.1:{bare.ports['port']}"
        return loaded("aiohttp + Redis", url, [bare, server], server.ports["port"], body, ctx, "")
    finally:
        procs.stop(bare)
        procs.stop(server)


def run(ctx: Ctx) -> Section:
    section = Section("redis backend")
    built, why = ctx.redis_backend()
    body = ctx.scratch / "noise-100k.png"
    body.write_bytes(noise_png(100_000))
    rounds = 2 if ctx.sizes.mode == "full" else 1
    ours: list[Load] = []
    refs: list[Load] = []
    costs: list[CommandCost] = []
    ref_costs: list[CommandCost] = []
    if not built:
        section.notes.append(f"Redis backend: not measured ({why}).")
        return section
    with ctx.procs() as procs:
        for _ in range(rounds):
            ref, ref_cost = _reference(procs, ctx, body)
            refs.append(ref)
            ref_costs.append(ref_cost)
            load, cost = _service(procs, ctx, body)
            ours.append(load)
            costs.append(cost)
    mine = sum(x.cycles_per_s for x in ours) / rounds
    theirs = sum(x.cycles_per_s for x in refs) / rounds
    vs = ratio(mine, theirs)
    cost, ref_cost = costs[-1], ref_costs[-1]
    section.add(
        f"lifecycle, redis backend, {body.stat().st_size:,} B PNG, c={ctx.sizes.concurrency}",
        fmt(mine, "cycles/s"),
        f"aiohttp+Redis {fmt(theirs, 'cycles/s')}",
        vs,
        f"≥ {RATIO_TARGET:g}x aiohttp+Redis",
        at_least(vs, RATIO_TARGET),
    )
    section.add(
        "Redis commands per lifecycle (commandstats, scripts' inner calls included)",
        fmt(cost.calls),
        f"aiohttp+Redis {fmt(ref_cost.calls)} ({', '.join(ref_cost.per_command)})",
        None,
        f"≤ {CALLS_TARGET}",
        at_most(cost.calls, CALLS_TARGET),
    )
    section.add(
        "Redis CPU per lifecycle (commandstats usec)",
        fmt(cost.cpu_us, "µs"),
        f"aiohttp+Redis {fmt(ref_cost.cpu_us, 'µs')}",
        ratio(cost.cpu_us, ref_cost.cpu_us),
        f"≤ {CPU_TARGET_US} µs",
        at_most(cost.cpu_us, CPU_TARGET_US),
    )
    section.add(
        "  redis-server CPU per lifecycle (INFO cpu: every command once, sockets included)",
        fmt(cost.process_us, "µs"),
        f"aiohttp+Redis {fmt(ref_cost.process_us, 'µs')}",
        ratio(cost.process_us, ref_cost.process_us),
        "",
    )
    for name, (calls, usec) in cost.per_command.items():
        section.add(f"  commandstats: {name}", f"{calls:.2f} calls", f"{usec:.1f} µs", None, "")
    for load in ours + refs:
        section.add(
            f"  load check: {load.system}",
            f"server+redis CPU {load.server_cpu:.2f} cores, errors {load.errors}",
            f"wrk CPU {load.wrk_cpu:.2f} cores; p99 {fmt(load.p99_ms)} ms",
        )
    section.keys.update(
        {
            "lifecycle_ratio_redis_backend_vs_redis": vs,
            "redis_calls_per_lifecycle": cost.calls,
            "redis_cpu_us_per_lifecycle": cost.cpu_us,
            "redis_process_cpu_us_per_lifecycle": cost.process_us,
        }
    )
    section.series["redis_loads"] = [x.as_dict() for x in ours + refs]
    section.notes.append(
        "Redis backend: INFO commandstats of each system's own redis-server over exactly the "
        "measured wrk run, divided by the lifecycles it completed (everything Redis did, the "
        "service's sweeps and probes included); a script's inner calls count as commands, as "
        "Redis counts them, and an EVALSHA's usec includes theirs (so the sum counts them twice: "
        "an upper bound)."
    )
    return section
