"""Several service nodes on one Redis: helpers for in-process nodes and for real processes.

The fixtures that make the nodes are `nodes` and `pair` (tests/store/redis/conftest.py,
in-process, on the test's manual clock) and `nodes` (tests/process/conftest.py, real
`server.py` processes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from tests.support.redisproc import RedisClusterProcs, RedisServer, Topology
from tests.support.serverproc import ServerProcess
from tests.support.service import Service

if TYPE_CHECKING:
    from cache.store.redis.store import RedisStore

Nodes = Callable[..., Awaitable[tuple[Service, Service]]]


def shared(service: Any) -> RedisStore:
    return cast("RedisStore", service.rt.store)


async def counters(service: Service) -> tuple[int, int]:
    """The shared capacity in Redis: (bytes, items); items are the ledger's members."""
    store = shared(service)
    held = await store.client.hget(store.keys.counters, "bytes")
    return int(held or 0), int(await store.client.zcard(store.keys.ledger))


def purged(metrics: dict[str, float], reason: str) -> float:
    return metrics[f'cache_purged_total{{reason="{reason}"}}']


def node_of(topology: Topology, key: str) -> RedisServer:
    """The Redis server that holds `key` (the only one, or the cluster node of its slot)."""
    if isinstance(topology, RedisServer):
        return topology
    slot = int(topology.nodes[0].cli("cluster", "keyslot", key))
    for node in topology.nodes:
        if node.cli("cluster", "countkeysinslot", str(slot)) != "0":
            return node
    raise AssertionError(f"no node holds {key}")


class ProcessNodes:
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
