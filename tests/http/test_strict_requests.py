"""What robots and fuzzers send: HEAD, Range, odd methods and lenient numbers.

HEAD, /meta and thumbnails never spend a read; a Range GET answers the whole image (200)
and counts a read; every 405 has `Allow`; numbers are ASCII digits or a 400 naming the
parameter."""

from __future__ import annotations

import pytest

from tests.support import images
from tests.support.service import Service


async def test_head_meta_and_thumbnail_never_spend_a_read(service: Service) -> None:
    data = images.png()
    created = await service.upload_ok(data, max_reads=1)
    path = f"/v1/images/{created['id']}"
    for _ in range(3):
        head = await service.client.head(path)
        assert head.status == 200 and await head.read() == b""
        assert head.headers["Content-Length"] == str(len(data))
        assert head.content_type == "image/png" and head.headers["Accept-Ranges"] == "none"
        assert (await service.client.get(path + "/meta")).status == 200
        assert (await service.client.get(path + "/thumbnail?size=32")).status == 200
        assert (await service.client.head(path + "/thumbnail?size=32")).status == 200
    got = await service.client.get(path)
    assert got.status == 200 and await got.read() == data
    assert (await service.client.get(path)).status == 404
    assert (await service.client.head(path)).status == 404
    reads = [e for e in service.audit.events("read") if e.get("kind") != "thumbnail"]
    assert len(reads) == 1


async def test_range_get_answers_the_whole_image_and_counts_a_read(service: Service) -> None:
    data = images.png()
    created = await service.upload_ok(data, max_reads=2)
    path = f"/v1/images/{created['id']}"
    got = await service.client.get(path, headers={"Range": "bytes=0-9"})
    assert got.status == 200 and await got.read() == data
    assert got.headers["Accept-Ranges"] == "none"
    meta = await (await service.client.get(path + "/meta")).json()
    assert meta["reads_left"] == 1


@pytest.mark.parametrize(
    ("listener", "method", "path", "allow"),
    [
        ("public", "PUT", "/v1/images", "POST"),
        ("public", "POST", "/healthz", "GET,HEAD"),
        ("public", "PATCH", "/v1/images/AAAAAAAAAAAAAAAAAAAAAA", "DELETE,GET,HEAD"),
        ("ops", "GET", "/admin/purge", "POST"),
    ],
)
async def test_every_405_carries_allow(
    service: Service, listener: str, method: str, path: str, allow: str
) -> None:
    client = service.client if listener == "public" else service.ops
    response = await client.request(method, path, headers=service.admin_headers)
    assert response.status == 405 and response.content_type == "application/problem+json"
    assert sorted(response.headers["Allow"].split(",")) == sorted(allow.split(","))


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("ttl=1_0", "ttl"),
        ("ttl=\u0665", "ttl"),
        ("ttl=1e1", "ttl"),
        ("ttl=+10", "ttl"),
        ("ttl=10.0.0", "ttl"),
        ("ttl=nan", "ttl"),
        ("ttl=" + "9" * 5000, "ttl"),
        ("max_reads=1_000", "max_reads"),
        ("max_reads=\uff11", "max_reads"),
        ("max_reads=1.0", "max_reads"),
        ("max_reads=-1", "max_reads"),
    ],
)
async def test_lenient_numbers_are_400_naming_the_parameter(
    service: Service, query: str, name: str
) -> None:
    response = await service.client.post(f"/v1/images?{query}", data=images.png())
    assert response.status == 400
    body = await response.json()
    assert body["type"].endswith("/invalid-parameter") and body["detail"].startswith(name)
    assert service.audit.events("rejected")[-1]["reason"] == "invalid-parameter"


async def test_plain_numbers_still_work(service: Service) -> None:
    created = await service.upload_ok(images.png(), ttl="7.5", max_reads="007")
    assert created["ttl"] == 7.5 and created["reads_left"] == 7
    created = await service.upload_ok(images.png(), ttl="30.")
    assert created["ttl"] == 30


async def test_thumbnail_size_and_admin_limit_are_strict(service: Service) -> None:
    created = await service.upload_ok(images.png())
    for size in ("1_6", "\u0666\u0664", "64.0"):
        response = await service.client.get(f"/v1/images/{created['id']}/thumbnail?size={size}")
        assert response.status == 400 and (await response.json())["detail"].startswith("size")
    for limit in ("1_0", "\u0665", "10.0"):
        path = f"/admin/items?limit={limit}"
        response = await service.ops.get(path, headers=service.admin_headers)
        assert response.status == 400 and (await response.json())["detail"].startswith("limit")
    ok = await service.ops.get("/admin/items?limit=10", headers=service.admin_headers)
    assert ok.status == 200


async def test_json_numbers_are_numbers(service: Service) -> None:
    for body in (
        {"url": "http://example.com/a.png", "ttl": "1_0"},
        {"url": "http://example.com/a.png", "ttl": True},
        {"url": "http://example.com/a.png", "max_reads": 1.5},
        {"url": "http://example.com/a.png", "max_reads": "1_0"},
    ):
        response = await service.client.post("/v1/images/fetch", json=body)
        assert response.status == 400, body
        assert (await response.json())["type"].endswith("/invalid-parameter")
