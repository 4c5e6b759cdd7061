"""Two real service processes on one Redis (a single server, then a 3-master cluster).

What one node stores the other serves, deletes and purges; a read-limited item is served
exactly `max_reads` times across both; when a node is killed, the other purges its items
at their deadlines. These tests wait for real deadlines (TTLs of 1-2 s) but never assert
how long anything took.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import images
from tests.conftest import parse_metrics
from tests.redisproc import (
    RedisClusterProcs,
    RedisServer,
    all_keys,
    flush,
    item_keys,
    redis_cluster,
    redis_server,
    require_redis,
)
from tests.serverproc import TOKEN, ServerProcess

__all__ = ["redis_cluster", "redis_server"]  # fixtures, used by name
Topology = RedisServer | RedisClusterProcs


@pytest.fixture(params=["single", "cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    server: Topology = request.getfixturevalue(
        "redis_server" if request.param == "single" else "redis_cluster"
    )
    flush(server)
    return server


class Nodes:
    """Service processes on one Redis; every one is killed at teardown."""

    def __init__(self, topology: Topology) -> None:
        self.env = {
            "CACHE_STORAGE_BACKEND": "redis",
            "CACHE_STORAGE_REDIS_URL": topology.url,
            "CACHE_STORAGE_REDIS_CLUSTER": str(isinstance(topology, RedisClusterProcs)).lower(),
            "CACHE_TTL_SWEEP_INTERVAL": "0.2",
            # Redis's own PX backstop fires at deadline + grace: keep it clear of a slow
            # machine, so that what these tests see is the service purging, not Redis.
            "CACHE_TTL_GRACE": "5",
        }
        self.started: list[ServerProcess] = []

    def start(self) -> ServerProcess:
        node = ServerProcess(env=self.env).start()
        self.started.append(node)
        return node

    def kill_all(self) -> None:
        for node in self.started:
            node.kill()


@pytest.fixture
def nodes(topology: Topology) -> Iterator[Nodes]:
    held = Nodes(topology)
    try:
        yield held
    finally:
        held.kill_all()


def metric(node: ServerProcess, name: str) -> float:
    return parse_metrics(node.metrics_text())[name]


def test_stored_on_a_read_deleted_on_b(nodes: Nodes) -> None:
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


def test_max_reads_race_across_two_nodes(nodes: Nodes) -> None:
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


def test_killed_node_s_items_are_purged_by_the_survivor(nodes: Nodes, topology: Topology) -> None:
    a, b = nodes.start(), nodes.start()
    ids = {a.upload(images.png(), f"?ttl={ttl}")["id"] for ttl in (1, 1, 2, 2, 2)}
    a.stop(signal.SIGKILL)  # no shutdown purge: the items stay in Redis
    assert len(item_keys(all_keys(topology))) == 2 * len(ids)
    wait_for(lambda: metric(b, 'cache_purged_total{reason="ttl"}') == len(ids))
    left = all_keys(topology)
    assert item_keys(left) == []
    assert all(key.startswith(("qc:{cap}", "qc:{dl:")) for key in left), left
    assert metric(b, "cache_items") == 0 and metric(b, "cache_bytes") == 0
    b.stop()
    assert {e["id"] for e in b.audit("purged") if e.get("reason") == "ttl"} == ids


def test_persisting_redis_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(tmp_path / "redis", ["--save", "60 1"]).start()
    node = ServerProcess(
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
