"""Entry point: `python server.py [--config PATH]`.

Exit codes: 0 after a clean shutdown (everything purged), 2 on bad config or a failed
start-up guarantee. Audit lines go to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from cache.app import build_runtime, create_ops_app, create_public_app
from cache.config import ConfigError, load_config
from cache.errors import StartupRefused
from cache.http.server import GuardedRunner
from cache.proof.guarantees import format_failure
from cache.runtime import Runtime
from cache.untracked import freeze_startup

log = logging.getLogger("query-cache")
DEFAULT_CONFIG = Path(__file__).with_name("config.toml")
OPS_CONNECTIONS = 64  # the ops listener serves Prometheus and the on-call, not the public


async def serve(rt: Runtime) -> None:
    config = rt.config
    public = GuardedRunner(
        create_public_app(rt),
        max_connections=config.server.max_connections,
        header_timeout=config.server.header_timeout,
        on_refused=rt.metrics.connections_refused.inc,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout,
    )
    ops = GuardedRunner(
        create_ops_app(rt),
        max_connections=OPS_CONNECTIONS,
        header_timeout=config.server.header_timeout,
        handle_signals=False,
        access_log=None,
    )
    rt.metrics.watch_connections(lambda: public.open_connections)
    await public.setup()  # start-up purge and checks run here, before anything listens
    await ops.setup()
    freeze_startup()  # what lives as long as the process leaves the collector's walk
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP re-reads the hash-list files (a bad file keeps the lists in force; logged).
    loop.add_signal_handler(signal.SIGHUP, rt.lists.reload_soon)
    try:
        await web.TCPSite(ops, config.ops.host, config.ops.port).start()
        await web.TCPSite(public, config.server.host, config.server.port).start()
        log.info(
            "serving on %s:%d (ops %s:%d), backend %s",
            config.server.host,
            config.server.port,
            config.ops.host,
            config.ops.port,
            config.storage.backend,
        )
        await stop.wait()
        log.info("stopping: no new connections, then purge everything")
    finally:
        try:
            # Public first: it stops accepting, then its cleanup purges everything.
            await asyncio.wait_for(public.cleanup(), config.server.shutdown_timeout + 5)
        finally:
            await ops.cleanup()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """server.loop: "uvloop" (an error if it is missing), "asyncio", or "auto" (uvloop
    when it is installed). None means asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("server.loop: uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ephemeral query-image cache")
    parser.add_argument("--config", help="TOML config file (default: config.toml beside this file)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per sweep is noise
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        config = load_config(path)
        factory = loop_factory(config.server.loop)
        rt = build_runtime(config)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"query-cache: {exc}", file=sys.stderr)
        return 2
    rt.guarantees.apply_process_hardening()
    storage_path = config.storage.path if config.storage.backend == "tmpfs" else None
    failures = rt.guarantees.startup_failures(rt.guarantees.run_checks())
    if failures:
        for failure in failures:
            print(f"query-cache: {format_failure(failure, storage_path)}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(rt))
    except StartupRefused as exc:  # a start-up check that needs the loop (redis persistence)
        print(f"query-cache: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"query-cache: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
