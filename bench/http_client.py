"""A small aiohttp client for the benches that drive the service from Python (not the
throughput bench, which uses wrk): uploads with per-request TTLs, timed reads, counts."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass
class Uploads:
    ids: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0  # 503 answers without a Retry-After header
    bytes_stored: int = 0
    seconds: float = 0.0


def session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)


async def upload_all(
    http: aiohttp.ClientSession,
    url: str,
    count: int,
    body: Callable[[int], bytes],
    concurrency: int,
    ttl: Callable[[int], float] | float | None = 60.0,
) -> Uploads:
    """POST `body(i)` for i in range(count), at most `concurrency` at once; `ttl` is a number,
    a function of i called at send time, or None (no ttl parameter: the bare server)."""
    result = Uploads()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            seconds = ttl(index) if callable(ttl) else ttl
            params = {} if seconds is None else {"ttl": f"{max(1.0, seconds):.6f}"}
            data = body(index)
            try:
                async with http.post(f"{url}/v1/images", data=data, params=params) as resp:
                    answer = await resp.read()
                    status, headers = resp.status, resp.headers
            except (aiohttp.ClientError, TimeoutError, OSError):
                result.statuses[0] += 1  # 0: no answer (connection refused, reset, timeout)
                continue
            result.statuses[status] += 1
            if status == 201:
                result.ids.append(_id_of(answer))
                result.bytes_stored += len(data)
            elif status == 503 and "Retry-After" not in headers:
                result.retry_after_missing += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    result.seconds = time.perf_counter() - started
    return result


def _id_of(body: bytes) -> str:
    return str(json.loads(body)["id"])


async def delete_all(http: aiohttp.ClientSession, url: str, ids: Sequence[str]) -> None:
    for item_id in ids:
        async with http.delete(f"{url}/v1/images/{item_id}") as resp:
            await resp.read()


async def items_held(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/readyz") as resp:
        return int((await resp.json())["items"])


async def wait_empty(http: aiohttp.ClientSession, url: str, until: float) -> int:
    """Poll /readyz until the service holds nothing or time.monotonic() passes `until`."""
    held = await items_held(http, url)
    while held and time.monotonic() < until:
        await asyncio.sleep(0.05)
        held = await items_held(http, url)
    return held


async def timed_reads(
    http: aiohttp.ClientSession, url: str, ids: Sequence[str], rounds: int
) -> tuple[list[float], Counter[int]]:
    """GET each id in turn, `rounds` times over; latencies in ms, and statuses."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    for _ in range(rounds):
        for item_id in ids:
            started = time.perf_counter()
            async with http.get(f"{url}/v1/images/{item_id}") as resp:
                await resp.read()
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[resp.status] += 1
    return latencies, statuses
