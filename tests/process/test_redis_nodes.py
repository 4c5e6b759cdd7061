"""Two real service processes on one Redis (a single server, then a 3-master cluster).

What one node stores the other serves, deletes and purges; a read-limited item is served
exactly `max_reads` times across both; when a node is killed, the other purges its items
at their deadlines. These tests wait for real deadlines (TTLs of 1-2 s) but never assert
how long anything took. The processes are the `nodes` fixture (tests/process/conftest.py).
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import images
from tests.support.nodes import ProcessNodes
from tests.support.redisproc import RedisFactory, Topology, all_keys, item_keys
from tests.support.serverproc import TOKEN, ServerFactory, ServerProcess
from tests.support.service import parse_metrics


def metric(node: ServerProcess, name: str) -> float:
    return parse_metrics(node.metrics_text())[name]


def test_stored_on_a_read_deleted_on_b(nodes: ProcessNodes) -> None:
    a = nodes.start()
    data = images.jpeg()
    created = a.upload(data, "?ttl=60")
    b = nodes.start()  # a node starting later must not wipe what others hold
    assert b.request("GET", f"/v1/images/{created['id']}") == (200, data)
    assert b.request("DELETE", f"/v1/images/{created['id']}")[0] == 204
    assert a.request("GET", f"/v1/images/{created['id']}")[0] == 404
    assert a.request("DELETE", f"/v1/images/{created['id']}")[0] == 404
    status, body = b.request(
        "POST",
        "/admin/purge",
        json.dumps({"sha256": created["sha256"]}).encode(),
        ops=True,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(body)["purged"] == 0


def test_max_reads_race_across_two_nodes(nodes: ProcessNodes) -> None:
    a, b = nodes.start(), nodes.start()
    data = images.jpeg((300, 200))
    created = a.upload(data, "?max_reads=5&ttl=60")

    def get(n: int) -> int:
        status, body = (a if n % 2 else b).request("GET", f"/v1/images/{created['id']}")
        assert status != 200 or body == data
        return status

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(get, range(50)))
    assert statuses.count(200) == 5 and statuses.count(404) == 45
    purged = metric(a, 'cache_purged_total{reason="read_limit"}') + metric(
        b, 'cache_purged_total{reason="read_limit"}'
    )
    assert purged == 1


def test_killed_node_s_items_are_purged_by_the_survivor(
    nodes: ProcessNodes, topology: Topology
) -> None:
    a, b = nodes.start(), nodes.start()
    ids = {a.upload(images.png(), f"?ttl={ttl}")["id"] for ttl in (1, 1, 2, 2, 2)}
    a.stop(signal.SIGKILL)  # no shutdown purge: the items stay in Redis
    assert len(item_keys(all_keys(topology))) == len(ids)
    wait_for(lambda: metric(b, 'cache_purged_total{reason="ttl"}') == len(ids))
    left = all_keys(topology)
    assert item_keys(left) == []
    assert all(key.startswith(("qc:{cap}", "qc:{epoch}")) for key in left), left
    assert metric(b, "cache_items") == 0 and metric(b, "cache_bytes") == 0
    b.stop()
    assert {e["id"] for e in b.audit("purged") if e.get("reason") == "ttl"} == ids


def test_persisting_redis_stops_start_up_with_exit_2(
    make_redis: RedisFactory, server_process: ServerFactory
) -> None:
    server = make_redis("--save", "60 1")
    node = server_process(
        env={"CACHE_STORAGE_BACKEND": "redis", "CACHE_STORAGE_REDIS_URL": server.url}
    )
    try:
        with pytest.raises(RuntimeError) as failed:
            node.start()
        message = str(failed.value)
        assert message.startswith("server exited 2:"), message
        assert "save '60 1'" in message and 'CONFIG SET save ""' in message
        assert "storage.redis_allow_persistence = true" in message
    finally:
        node.kill()
        server.stop()


def wait_for(condition: object, timeout: float = 30.0) -> None:
    """Poll `condition()` until true: real deadlines pass in real time."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
