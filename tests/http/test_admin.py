"""The ops listener: auth, purge receipts, listings, blocklist, and the metric names."""

from __future__ import annotations

import hashlib

from tests.support import images
from tests.support.service import ADMIN_TOKEN, Service, ServiceFactory, make_config

DESIGN_METRICS = [
    "cache_items",
    "cache_bytes",
    "cache_oldest_item_age_seconds",
    "cache_capacity_bytes",
    "cache_stored_total",
    "cache_rejected_total",
    "cache_reads_total",
    "cache_purged_total",
    "cache_purge_lag_seconds",
    "cache_residency_seconds",
    "cache_expired_reads_refused_total",
    "cache_ttl_violations_total",
    "cache_sweep_duration_seconds",
    "cache_last_sweep_timestamp_seconds",
    "cache_guarantee_ok",
    "cache_fetch_total",
    "cache_blocklist_matches_total",
    "cache_request_duration_seconds",
]


async def test_admin_auth_none_wrong_right(service: Service) -> None:
    assert (await service.ops.get("/admin/items")).status == 401
    wrong = await service.ops.get("/admin/items", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = await service.ops.get("/admin/items", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
    assert basic.status == 401
    right = await service.ops.get("/admin/items", headers=service.admin_headers)
    assert right.status == 200
    assert (await service.ops.get("/metrics")).status == 200  # no auth for Prometheus


async def test_admin_off_without_token(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(ops={"admin_token": ""}))
    for path in ("/admin/items", "/admin/guarantees", "/admin/blocklist"):
        response = await service.ops.get(path, headers={"Authorization": "Bearer "})
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_purge_by_ids_gives_receipts(service: Service) -> None:
    a = await service.upload_ok(images.png())
    b = await service.upload_ok(images.jpeg())
    response = await service.ops.post(
        "/admin/purge",
        json={"ids": [a["id"], "AAAAAAAAAAAAAAAAAAAAAA"]},
        headers=service.admin_headers,
    )
    body = await response.json()
    assert body["purged"] == 1 and body["not_found"] == ["AAAAAAAAAAAAAAAAAAAAAA"]
    [receipt] = body["receipts"]
    assert receipt["id"] == a["id"] and receipt["sha256"] == a["sha256"]
    assert receipt["reason"] == "admin" and receipt["size"] == a["size"]
    assert receipt["purged_at"] >= receipt["stored_at"]
    assert (await service.client.get(f"/v1/images/{a['id']}")).status == 404
    assert (await service.client.get(f"/v1/images/{b['id']}")).status == 200


async def test_purge_by_sha256_takes_every_copy(service: Service) -> None:
    data = images.png()
    ids = {(await service.upload_ok(data))["id"] for _ in range(3)}
    other = await service.upload_ok(images.jpeg())
    sha = hashlib.sha256(data).hexdigest().upper()  # case does not matter
    body = await (
        await service.ops.post("/admin/purge", json={"sha256": sha}, headers=service.admin_headers)
    ).json()
    assert {r["id"] for r in body["receipts"]} == ids
    assert len(service.rt.store) == 1 and other["id"] in [
        i.id for i in await service.rt.store.list_items()
    ]


async def test_purge_all(service: Service) -> None:
    for _ in range(5):
        await service.upload_ok(images.png())
    body = await (
        await service.ops.post("/admin/purge", json={"all": True}, headers=service.admin_headers)
    ).json()
    assert body["purged"] == 5 and len(service.rt.store) == 0
    metrics = await service.metrics()
    assert metrics['cache_purged_total{reason="admin"}'] == 5


async def test_purge_bad_requests_change_nothing(service: Service) -> None:
    await service.upload_ok(images.png())
    for body in (
        {},
        {"all": False},
        {"ids": []},
        {"ids": "x"},
        {"ids": [1]},
        {"sha256": "xyz"},
        {"ids": ["a"], "all": True},
        [1, 2],
        {"pdq": "00"},
    ):
        response = await service.ops.post("/admin/purge", json=body, headers=service.admin_headers)
        assert response.status == 400, body
        assert response.content_type == "application/problem+json"
    bad_json = await service.ops.post("/admin/purge", data=b"{nope", headers=service.admin_headers)
    assert bad_json.status == 400
    too_many = {"ids": ["AAAAAAAAAAAAAAAAAAAAAA"] * 10_001}
    assert (
        await service.ops.post("/admin/purge", json=too_many, headers=service.admin_headers)
    ).status in (400, 413)
    assert len(service.rt.store) == 1


async def test_items_listing_is_metadata_only(service: Service) -> None:
    data = images.png()
    await service.upload_ok(data)
    await service.upload_ok(images.jpeg())
    body = await (await service.ops.get("/admin/items", headers=service.admin_headers)).json()
    assert body["count"] == 2 and not body["truncated"]
    assert set(body["items"][0]) >= {"id", "sha256", "size", "stored_at", "expires_at"}
    assert "data" not in body["items"][0]
    one = await (
        await service.ops.get("/admin/items", params={"limit": 1}, headers=service.admin_headers)
    ).json()
    assert one["truncated"] and len(one["items"]) == 1
    sha = hashlib.sha256(data).hexdigest()
    only = await (
        await service.ops.get("/admin/items", params={"sha256": sha}, headers=service.admin_headers)
    ).json()
    assert only["count"] == 1
    for limit in ("0", "10001", "x"):
        response = await service.ops.get(
            "/admin/items", params={"limit": limit}, headers=service.admin_headers
        )
        assert response.status == 400


async def test_blocklist_add_purges_held_copies_and_refuses_new(service: Service) -> None:
    data = images.jpeg()
    held = await service.upload_ok(data)
    sha = hashlib.sha256(data).hexdigest()
    body = await (
        await service.ops.post(
            "/admin/blocklist", json={"sha256": [sha]}, headers=service.admin_headers
        )
    ).json()
    assert body["added"] == 1 and body["receipts"][0]["id"] == held["id"]
    assert (await service.upload(data)).status == 451
    listing = await (
        await service.ops.get("/admin/blocklist", headers=service.admin_headers)
    ).json()
    assert listing["sha256"] == [sha]
    removed = await (
        await service.ops.delete(
            "/admin/blocklist", json={"sha256": sha}, headers=service.admin_headers
        )
    ).json()
    assert removed["removed"] == 1
    await service.upload_ok(data)
    bad = await service.ops.post(
        "/admin/blocklist", json={"sha256": ["zz"]}, headers=service.admin_headers
    )
    assert bad.status == 400


async def test_guarantees_endpoint_lists_checks(service: Service) -> None:
    body = await (await service.ops.get("/admin/guarantees", headers=service.admin_headers)).json()
    names = {c["check"] for c in body["checks"]}
    assert {
        "storage_is_ram",
        "swap_safe",
        "memory_locked",
        "core_dumps_off",
        "tmpdir_safe",
        "no_disk_writes",
    } <= names
    for check in body["checks"]:
        assert check["status"] in ("ok", "fail", "unknown", "skipped") and check["reason"]


async def test_metrics_have_the_design_names(service: Service) -> None:
    created = await service.upload_ok(images.png(), ttl=2)
    await service.client.get(f"/v1/images/{created['id']}")
    await service.upload(images.HTML)
    await service.advance(2)
    metrics = await service.metrics()
    names = {key.split("{")[0] for key in metrics}
    for name in DESIGN_METRICS:
        assert any(n == name or n.startswith(name + "_") for n in names), name
    assert metrics['cache_stored_total{source="upload"}'] == 1
    assert metrics["cache_reads_total"] == 1
    assert metrics['cache_purged_total{reason="ttl"}'] == 1
    assert metrics['cache_rejected_total{reason="unsupported-format"}'] == 1
    assert metrics["cache_capacity_bytes"] == 1024**3
    assert metrics['cache_purge_lag_seconds_bucket{le="0.0005"}'] == 1
    latency = [k for k in metrics if k.startswith("cache_request_duration_seconds_count")]
    assert any('route="/v1/images/{id}"' in k and 'listener="public"' in k for k in latency)
