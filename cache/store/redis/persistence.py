"""G1 for the redis backend: the Redis (or Valkey) servers must not write items to disk.

Checked on every node the client can see (each node of a cluster): no RDB save points, no
AOF, full syncs to replicas without an RDB file (`repl-diskless-sync yes` on a master with
replicas, `repl-diskless-load` not `disabled` on a replica). Managed services often refuse
CONFIG: then the answer is "unknown", which needs the same explicit opt-in as a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from ...errors import StartupRefused
from ...proof.checks import CheckResult
from ...proof.metrics import Metrics
from .codec import text
from .keys import RedisClient

log = logging.getLogger(__name__)
CHECK = "redis_no_persistence"
OPT_IN = "set storage.redis_allow_persistence = true to accept it"
_SETTINGS = ("save", "appendonly", "repl-diskless-sync", "repl-diskless-load")


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    config: Mapping[str, str]
    role: str
    replicas: int

    def problems(self) -> list[str]:
        """Each setting that lets this node write items to disk, with its fix."""
        found: list[str] = []
        save = self.config.get("save", "").strip()
        if save:
            found.append(
                f"{self.name} has save '{save}' (RDB snapshots on disk): run "
                'CONFIG SET save "" and put save "" in redis.conf'
            )
        if self.config.get("appendonly", "no") != "no":
            found.append(
                f"{self.name} has appendonly {self.config['appendonly']} (AOF on disk): run "
                "CONFIG SET appendonly no and put appendonly no in redis.conf"
            )
        if self.replicas and self.config.get("repl-diskless-sync", "no") != "yes":
            found.append(
                f"{self.name} has {self.replicas} replica(s) and repl-diskless-sync "
                f"{self.config.get('repl-diskless-sync', 'no')} (full syncs write an RDB "
                "file): run CONFIG SET repl-diskless-sync yes"
            )
        if self.role == "slave" and self.config.get("repl-diskless-load") == "disabled":
            found.append(
                f"{self.name} is a replica with repl-diskless-load disabled (it stores the "
                "master's RDB on disk): run CONFIG SET repl-diskless-load on-empty-db"
            )
        return found


async def _node_facts(client: RedisClient) -> list[NodeFacts]:
    if isinstance(client, RedisCluster):
        await client.initialize()
        facts = []
        for node in client.get_nodes():
            config = await client.config_get(*_SETTINGS, target_nodes=node)
            info = await client.info("replication", target_nodes=node)
            facts.append(_facts(node.name, config, info))
        return facts
    config = await client.config_get(*_SETTINGS)
    info = await client.info("replication")
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    return [_facts(str(where), config, info)]


def _facts(name: str, config: Mapping[Any, Any], info: Mapping[str, Any]) -> NodeFacts:
    settings = {text(k): text(v) for k, v in config.items()}
    role = text(info.get("role", "master"))
    return NodeFacts(name, settings, role, int(text(info.get("connected_slaves", 0))))


async def check_persistence(client: RedisClient) -> CheckResult:
    """ok, fail (which setting persists, how to fix it) or unknown (CONFIG refused).
    Connection errors are not caught: an unreachable Redis is not an answer."""
    try:
        nodes = await _node_facts(client)
    except ResponseError as exc:
        return CheckResult(
            CHECK,
            "unknown",
            f"CONFIG GET is refused ({exc}): cannot tell whether Redis writes to disk; "
            "check its save/appendonly settings, then " + OPT_IN,
        )
    problems = [problem for node in nodes for problem in node.problems()]
    if problems:
        return CheckResult(CHECK, "fail", "; ".join(problems))
    names = ", ".join(node.name for node in nodes)
    return CheckResult(CHECK, "ok", f"no RDB save points, no AOF on {names}")


async def enforce_no_persistence(client: RedisClient, allow: bool, metrics: Metrics) -> CheckResult:
    """At start-up, before anything is stored: refuse a persisting Redis unless allowed."""
    try:
        result = await check_persistence(client)
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise StartupRefused(
            f"storage.redis_url: cannot check Redis ({reason}); start it or fix the URL"
        ) from exc
    report(result, metrics)
    if result.ok:
        return result
    if not allow:
        detail = result.reason if result.status == "unknown" else f"{result.reason}; or {OPT_IN}"
        raise StartupRefused(f"storage.redis_url: Redis may write items to disk: {detail}")
    log.warning("redis persists (allowed by storage.redis_allow_persistence): %s", result.reason)
    return result


def report(result: CheckResult, metrics: Metrics) -> None:
    metrics.guarantee_ok.labels(CHECK).set(1 if result.ok else 0)


async def refresh(client: RedisClient, metrics: Metrics) -> CheckResult | None:
    """The periodic re-check: someone may CONFIG SET save at run time. An unreachable Redis
    leaves the last answer in place (None: it stores nothing new meanwhile)."""
    try:
        result = await check_persistence(client)
    except Exception as exc:
        log.debug("redis persistence re-check skipped: %r", exc)
        return None
    before = metrics.registry.get_sample_value("cache_guarantee_ok", {"check": CHECK})
    if not result.ok and before == 1:
        log.warning("redis persistence check now %s: %s", result.status, result.reason)
    if result.ok and before == 0:
        log.warning("redis persistence check ok again: %s", result.reason)
    report(result, metrics)
    return result


class PersistenceWatch:
    """Whether the Redis in use may write items to disk, as last checked: at start-up
    (refused unless allowed), then every few sweep intervals and at every reconnect. While
    it may (and that is not allowed) `refusing` says why: the store refuses uploads and
    /readyz answers 503. A failed guarantee, not a warning."""

    def __init__(self, client: RedisClient, metrics: Metrics, allow: bool) -> None:
        self._client = client
        self._metrics = metrics
        self._allow = allow
        self.result: CheckResult | None = None  # the last answer
        self.refusing: str | None = None
        self._rechecks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._seen(await enforce_no_persistence(self._client, self._allow, self._metrics))

    async def check(self) -> None:
        result = await refresh(self._client, self._metrics)
        if result is not None:
            self._seen(result)

    def recheck_soon(self) -> None:
        """After an outage: the Redis that answers may be a new one, with other settings."""
        task = asyncio.get_running_loop().create_task(self.check())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    def _seen(self, result: CheckResult) -> None:
        self.result = result
        self.refusing = result.reason if not result.ok and not self._allow else None
