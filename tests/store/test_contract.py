"""The ItemStore contract, one suite run over every store (cachetools' `CacheTestMixin`).

`StoreContract` holds the behaviour; each subclass only says how to configure its store.
Everything goes through the real HTTP routes on the test's manual clock, so the contract
is what a client sees. To add a store, add a subclass.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cache.store.api import ItemStore
from tests.support import images
from tests.support.redisproc import RedisServer, flush
from tests.support.service import Service, ServiceFactory, make_config
from tests.support.system import needs_linux_shm


class StoreContract:
    """Behaviour every store keeps. Subclasses define `storage()`."""

    def storage(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        raise NotImplementedError

    @pytest.fixture
    async def make_svc(self, request: pytest.FixtureRequest, make_service: ServiceFactory) -> Any:
        base = self.storage(request)

        async def factory(**sections: dict[str, Any]) -> Service:
            storage = {**base, **sections.pop("storage", {})}
            return await make_service(make_config(storage=storage, **sections))

        return factory

    @pytest.fixture
    async def svc(self, make_svc: Any) -> Service:
        service: Service = await make_svc()
        return service

    # -- items ---------------------------------------------------------------------------
    async def test_store_read_meta_delete_then_404(self, svc: Service) -> None:
        data = images.png()
        created = await svc.upload_ok(data, ttl=30)
        url = f"/v1/images/{created['id']}"
        read = await svc.client.get(url)
        assert read.status == 200 and await read.read() == data
        meta = await (await svc.client.get(url + "/meta")).json()
        assert meta["sha256"] == created["sha256"] and meta["reads"] == 1
        assert (await svc.client.delete(url)).status == 204
        for method in ("get", "delete"):
            assert (await getattr(svc.client, method)(url)).status == 404
        assert (await svc.client.get(url + "/meta")).status == 404
        assert [e["reason"] for e in svc.audit.events("purged") if "id" in e] == ["delete"]

    async def test_unknown_and_malformed_ids_are_the_same_404(self, svc: Service) -> None:
        bodies = []
        for item_id in ("A" * 22, "nope", "..%2F..%2Fetc", "x" * 300):
            response = await svc.client.get(f"/v1/images/{item_id}")
            assert response.status == 404
            bodies.append((await response.json())["type"])
        assert len(set(bodies)) == 1

    async def test_reads_refused_at_the_deadline_even_before_the_purge(self, svc: Service) -> None:
        created = await svc.upload_ok(images.png(), ttl=10)
        url = f"/v1/images/{created['id']}"
        svc.clock.advance(10)  # the deadline, and no purge has run yet
        assert (await svc.client.get(url)).status == 404
        assert (await svc.client.get(url + "/meta")).status == 404
        await svc.rt.timer.run_due()
        purged = [e for e in svc.audit.events("purged") if "id" in e]
        assert [(e["id"], e["reason"]) for e in purged] == [(created["id"], "ttl")]
        metrics = await svc.metrics()
        assert metrics['cache_purged_total{reason="ttl"}'] == 1
        assert metrics["cache_ttl_violations_total"] == 0
        assert metrics["cache_expired_reads_refused_total"] >= 1

    async def test_the_timer_purges_exactly_what_is_due(self, svc: Service) -> None:
        early = [(await svc.upload_ok(images.png(), ttl=5))["id"] for _ in range(2)]
        late = (await svc.upload_ok(images.gif(), ttl=50))["id"]
        await svc.advance(5)
        assert sorted(e["id"] for e in svc.audit.events("purged") if "id" in e) == sorted(early)
        assert (await svc.client.get(f"/v1/images/{late}")).status == 200
        await svc.advance(45)
        assert len(svc.audit.events("purged")) >= 3 and len(svc.rt.store) == 0

    async def test_max_reads_gives_exactly_n_bodies_to_concurrent_readers(
        self, svc: Service
    ) -> None:
        created = await svc.upload_ok(images.jpeg((300, 200)), max_reads=3)
        url = f"/v1/images/{created['id']}"

        async def read() -> int:
            response = await svc.client.get(url)
            await response.read()
            return response.status

        statuses = await asyncio.gather(*(read() for _ in range(20)))
        assert statuses.count(200) == 3 and statuses.count(404) == 17
        reasons = [e["reason"] for e in svc.audit.events("purged") if "id" in e]
        assert reasons == ["read_limit"]

    async def test_meta_and_thumbnails_never_use_up_a_read(self, svc: Service) -> None:
        created = await svc.upload_ok(images.png((120, 80)), max_reads=1)
        url = f"/v1/images/{created['id']}"
        for _ in range(3):
            assert (await svc.client.get(url + "/meta")).status == 200
            assert (await svc.client.get(url + "/thumbnail", params={"size": 32})).status == 200
        assert (await svc.client.get(url)).status == 200
        assert (await svc.client.get(url)).status == 404

    # -- capacity ------------------------------------------------------------------------
    async def test_full_by_items_is_503_with_retry_after_and_evicts_nothing(
        self, make_svc: Any
    ) -> None:
        svc = await make_svc(storage={"max_items": 2})
        first = await svc.upload_ok(images.png(), ttl=20)
        await svc.upload_ok(images.png(), ttl=60)
        svc.clock.advance(5)
        response = await svc.upload(images.png())
        assert response.status == 503 and response.headers["Retry-After"] == "15"
        assert (await response.json())["type"].endswith("/cache-full")
        assert (await svc.client.get(f"/v1/images/{first['id']}")).status == 200
        await svc.advance(15)  # the earliest deadline frees a place
        await svc.upload_ok(images.png())

    async def test_full_by_bytes_counts_what_is_held(self, make_svc: Any) -> None:
        data = images.png((200, 200))
        svc = await make_svc(
            storage={"max_bytes": len(data) * 2 + 10}, limits={"max_upload_bytes": len(data) * 2}
        )
        await svc.upload_ok(data)
        await svc.upload_ok(data)
        assert (await svc.upload(data)).status == 503
        metrics = await svc.metrics()
        assert metrics['cache_rejected_total{reason="cache-full"}'] == 1
        assert metrics["cache_bytes"] == len(data) * 2

    # -- purges on purpose ---------------------------------------------------------------
    async def test_admin_purges_by_id_sha256_and_all_with_receipts(self, svc: Service) -> None:
        a = await svc.upload_ok(images.png())
        b1 = await svc.upload_ok(images.jpeg())
        b2 = await svc.upload_ok(images.jpeg())
        c = await svc.upload_ok(images.gif())
        headers = svc.admin_headers

        async def purge(body: dict[str, Any]) -> dict[str, Any]:
            response = await svc.ops.post("/admin/purge", json=body, headers=headers)
            assert response.status == 200
            return dict(await response.json())

        by_id = await purge({"ids": [a["id"], "B" * 22]})
        assert [r["id"] for r in by_id["receipts"]] == [a["id"]]
        assert by_id["not_found"] == ["B" * 22]
        by_sha = await purge({"sha256": b1["sha256"]})
        assert sorted(r["id"] for r in by_sha["receipts"]) == sorted([b1["id"], b2["id"]])
        everything = await purge({"all": True})
        assert [r["id"] for r in everything["receipts"]] == [c["id"]]
        receipt = everything["receipts"][0]
        assert receipt["reason"] == "admin" and receipt["sha256"] == c["sha256"]
        assert len(svc.rt.store) == 0

    async def test_admin_listing_is_metadata_only(self, svc: Service) -> None:
        created = await svc.upload_ok(images.png())
        response = await svc.ops.get("/admin/items", headers=svc.admin_headers)
        listing = await response.json()
        assert [it["id"] for it in listing["items"]] == [created["id"]]
        assert set(listing["items"][0]) >= {"sha256", "size", "expires_at"}

    async def test_a_delete_after_the_deadline_is_404_and_a_ttl_purge(self, svc: Service) -> None:
        created = await svc.upload_ok(images.png(), ttl=5)
        svc.clock.advance(6)
        assert (await svc.client.delete(f"/v1/images/{created['id']}")).status == 404
        await svc.rt.timer.run_due()
        assert [e["reason"] for e in svc.audit.events("purged") if "id" in e] == ["ttl"]

    async def test_close_purges_what_it_holds_and_refuses_new_items(self, svc: Service) -> None:
        store: ItemStore = svc.rt.store
        ids = [(await svc.upload_ok(images.png()))["id"] for _ in range(2)]
        receipts = await store.close()
        assert sorted(r.id for r in receipts) == sorted(ids)
        assert {r.reason for r in receipts} == {"shutdown"}
        assert (await svc.upload(images.png())).status == 503
        assert await store.close() == []  # closing twice is harmless

    async def test_ready_and_counted(self, svc: Service) -> None:
        assert await svc.rt.store.unready_reason() is None
        await svc.upload_ok(images.png())
        svc.clock.advance(2)
        assert len(svc.rt.store) == 1
        assert svc.rt.store.oldest_age() == pytest.approx(2, abs=0.01)
        ready = await svc.client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["items"] == 1


class TestMemoryStore(StoreContract):
    def storage(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"backend": "memory"}


@needs_linux_shm
class TestTmpfsStore(StoreContract):
    def storage(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        folder: Path = request.getfixturevalue("shm_dir")
        return {"backend": "tmpfs", "path": str(folder)}


class TestRedisStore(StoreContract):
    def storage(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        server: RedisServer = request.getfixturevalue("redis_server")
        flush(server)
        return {"backend": "redis", "redis_url": server.url}
