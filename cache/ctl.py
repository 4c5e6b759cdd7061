"""`python -m cache.ctl`: the on-call's command line for the ops API.

    python -m cache.ctl items
    python -m cache.ctl purge --sha256 9cbb...      # one receipt line per purged item
    python -m cache.ctl purge --id ID [--id ID ...] | --all
    python -m cache.ctl guarantees
    python -m cache.ctl stats

`--ops-url` defaults to $CACHE_OPS_URL, else to ops.host:ops.port from config.toml; the
token comes from $CACHE_OPS_ADMIN_TOKEN. Exit 0 on success, 1 on an API error (one line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from .client import OpsClient, ProblemError, PurgeResult
from .config import ConfigError, load_config
from .proof.stats import summarise


def default_ops_url(env: dict[str, str]) -> str:
    if env.get("CACHE_OPS_URL"):
        return env["CACHE_OPS_URL"]
    config_file = Path("config.toml")
    config = load_config(config_file if config_file.exists() else None, env)
    host = "127.0.0.1" if config.ops.host in ("0.0.0.0", "::", "") else config.ops.host
    return f"http://{host}:{config.ops.port}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m cache.ctl", description=__doc__.splitlines()[0])
    top.add_argument("--ops-url", help="ops listener base URL")
    commands = top.add_subparsers(dest="command", required=True)
    items = commands.add_parser("items", help="list held items (metadata only)")
    items.add_argument("--sha256")
    items.add_argument("--limit", type=int, default=1000)
    purge = commands.add_parser("purge", help="purge now, print one receipt per item")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID")
    which.add_argument("--sha256")
    which.add_argument("--all", action="store_true")
    commands.add_parser("guarantees", help="the G1 self-checks and their results")
    commands.add_parser("stats", help="a short summary of /metrics")
    return top


def _print_receipts(result: PurgeResult) -> None:
    for r in result.receipts:
        print(
            f"purged {r.id} sha256={r.sha256} size={r.size} reason={r.reason} "
            f"stored_at={r.stored_at:.3f} purged_at={r.purged_at:.3f}"
        )
    for item_id in result.not_found:
        print(f"not found {item_id}")
    print(f"{result.purged} purged")


async def run(args: argparse.Namespace, ops_url: str, token: str | None) -> int:
    async with OpsClient(ops_url, token) as ops:
        if args.command == "items":
            for item in await ops.items(limit=args.limit, sha256=args.sha256):
                print(
                    f"{item['id']} sha256={item['sha256']} size={item['size']} "
                    f"type={item['media_type']} expires_at={item['expires_at']:.3f} "
                    f"reads={item['reads']} source={item['source']}"
                )
        elif args.command == "purge":
            if args.all:
                result = await ops.purge_all()
            elif args.sha256:
                result = await ops.purge_sha256(args.sha256)
            else:
                result = await ops.purge_ids(args.ids)
            _print_receipts(result)
        elif args.command == "guarantees":
            checks = await ops.guarantees()
            for check in checks:
                print(f"{check.check:<16} {check.status:<8} {check.reason}")
        else:
            print(summarise(await ops.metrics_text()))
    return 0


def glued_ids(argv: Sequence[str]) -> list[str]:
    """`--id X` as `--id=X`: an id may begin with "-" (URL-safe base64), which argparse would
    otherwise take for an option and refuse ("expected one argument")."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        value = next(args, None) if arg == "--id" else None
        out.append(arg if value is None else f"--id={value}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(glued_ids(sys.argv[1:] if argv is None else argv))
    env = dict(os.environ)
    try:
        ops_url = args.ops_url or default_ops_url(env)
        return asyncio.run(run(args, ops_url, env.get("CACHE_OPS_ADMIN_TOKEN") or None))
    except ProblemError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (aiohttp.ClientError, OSError, ConfigError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
