"""Redis killed and back empty under a real `server.py` node: every item the node stored
gets its `purged` line (reason `lost`) within seconds, so the audit log accounts for every
stored id; items stored after Redis came back are purged as usual."""

from __future__ import annotations

from tests.support import images
from tests.support.redisproc import RedisFactory
from tests.support.serverproc import ServerFactory
from tests.support.service import parse_metrics
from tests.support.waiting import wait_for


def test_redis_killed_and_back_empty_every_stored_id_is_purged_in_the_log(
    make_redis: RedisFactory, server_process: ServerFactory
) -> None:
    redis = make_redis()
    node = server_process(
        env={"CACHE_STORAGE_BACKEND": "redis", "CACHE_STORAGE_REDIS_URL": redis.url}
    ).start()
    held = [node.upload(images.png(), "?ttl=60")["id"] for _ in range(5)]
    redis.stop()  # SIGKILL: nothing saved
    redis.start()  # the same port, empty
    lost = 'cache_purged_total{reason="lost"}'
    wait_for(lambda: parse_metrics(node.metrics_text()).get(lost) == len(held), what="lost")
    after = node.upload(images.png(), "?ttl=1")["id"]
    wait_for(
        lambda: parse_metrics(node.metrics_text()).get('cache_purged_total{reason="ttl"}'),
        what="the item stored after the restart to expire",
    )
    assert node.stop() == 0
    stored = {e["id"] for e in node.audit("stored")}
    purged = [e for e in node.audit("purged") if "id" in e]
    assert stored == set(held) | {after}
    assert sorted(e["id"] for e in purged) == sorted(stored)  # each once
    assert {e["id"] for e in purged if e["reason"] == "lost"} == set(held)
