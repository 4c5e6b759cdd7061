"""The flood for bench/flood.py, in its own process (pinned apart from the server):
`python -m bench.flood_client URL BODY_FILE COUNT CONCURRENCY` POSTs COUNT distinct copies of
the image, CONCURRENCY at a time, and prints one JSON line of what came back."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from . import http_client
from .images import unique_png


async def flood(url: str, body: bytes, count: int, concurrency: int) -> dict[str, object]:
    async with http_client.session(concurrency) as http:
        result = await http_client.upload_all(
            http, url, count, lambda i: unique_png(body, 3 * 10**9 + i), concurrency, 300.0
        )
    return {
        "statuses": {str(code): n for code, n in sorted(result.statuses.items())},
        "retry_after_missing": result.retry_after_missing,
        "stored": len(result.ids),
        "seconds": result.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("concurrency", type=int)
    args = parser.parse_args()
    outcome = asyncio.run(flood(args.url, args.body.read_bytes(), args.count, args.concurrency))
    sys.stdout.write(json.dumps(outcome) + "\n")


if __name__ == "__main__":
    main()
