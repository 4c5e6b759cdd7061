"""Purged bytes leave the process, also with memory locked (issue #14): a real server that
mlockall()ed stores ~30 MB of 100 KB images, serves them, purges them, and its RSS comes
back to within 10% of where it started. Before pages of their own (cache/store/local/
pages.py) the locked heap kept them: RSS stayed at the peak."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import images
from tests.support.serverproc import TOKEN, ServerFactory, ServerProcess
from tests.support.service import parse_metrics
from tests.support.system import needs_linux_shm

ITEMS = 300
BOUND = 1.10  # RSS after purge / RSS at start, as bench/memory.py's rss_after_purge_ratio


def rss(server: ServerProcess) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def memory_locked(server: ServerProcess) -> dict[str, object]:
    status, body = server.request(
        "GET", "/admin/guarantees", ops=True, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, body
    checks = json.loads(body)["checks"]
    return dict(next(c for c in checks if c["check"] == "memory_locked"))


def settled_rss(server: ServerProcess) -> int:
    time.sleep(0.5)  # let the loop finish the last purge's bookkeeping
    return rss(server)


@needs_linux_shm
def test_purged_items_give_their_pages_back_with_memory_locked(
    server_process: ServerFactory,
) -> None:
    server = server_process(env={"CACHE_STORAGE_MAX_BYTES": str(128 << 20)}).start()
    locked = memory_locked(server)
    if locked["status"] != "ok":
        pytest.skip(f"mlockall is not allowed here: {locked['reason']}")
    assert "go back to the kernel" in str(locked["reason"])
    bodies = [images.noise_png(182) for _ in range(ITEMS)]  # ~100 KB each, all unique
    for warm in bodies[:20]:  # executor threads, lazy imports: what "start" means
        server.request("DELETE", "/v1/images/" + server.upload(warm)["id"])
    start = settled_rss(server)
    with ThreadPoolExecutor(8) as pool:
        ids = [item["id"] for item in pool.map(lambda b: server.upload(b, "?ttl=300"), bodies)]
        reads = pool.map(lambda i: server.request("GET", "/v1/images/" + i)[0], ids)
        assert set(reads) == {200}
    held = rss(server)
    assert held - start > sum(map(len, bodies)) * 0.8, (start, held)  # resident, locked
    # Every tenth item stays (a longer TTL): in a heap, each would pin the freed bytes
    # around it; in pages, only its own pages stay.
    survivors = sum(len(b) for b in bodies[::10])
    for item_id in [item_id for n, item_id in enumerate(ids) if n % 10]:
        assert server.request("DELETE", "/v1/images/" + item_id)[0] == 204
    some_left = settled_rss(server)
    assert some_left <= start * BOUND + survivors, f"start {start}, held {held}, {some_left}"
    purge = json.dumps({"all": True}).encode()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert server.request("POST", "/admin/purge", purge, ops=True, headers=auth)[0] == 200
    after = settled_rss(server)
    values = parse_metrics(server.metrics_text())
    assert values["cache_items"] == 0 and values["cache_memory_mappings"] == 0
    assert values["cache_memory_heap_items_total"] == 0
    assert after <= start * BOUND, f"start {start}, held {held}, after {after}"
