"""The public API over real HTTP on loopback, with a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp
import pytest
from aiohttp.http_writer import StreamWriter

from tests.support import images
from tests.support.service import Service, ServiceFactory, make_config

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow, noarchive",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


async def test_upload_read_meta_delete(service: Service) -> None:
    data = images.jpeg()
    created = await service.upload_ok(data, ttl=30)
    assert created["media_type"] == "image/jpeg"
    assert (created["width"], created["height"]) == (64, 48)
    assert created["size"] == len(data) and created["ttl"] == 30
    assert len(created["id"]) == 22

    response = await service.client.get(f"/v1/images/{created['id']}")
    assert response.status == 200
    assert await response.read() == data
    assert response.content_type == "image/jpeg"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value

    meta = await (await service.client.get(f"/v1/images/{created['id']}/meta")).json()
    assert meta["sha256"] == created["sha256"] and meta["reads"] == 1

    assert (await service.client.delete(f"/v1/images/{created['id']}")).status == 204
    assert (await service.client.get(f"/v1/images/{created['id']}")).status == 404
    assert (await service.client.delete(f"/v1/images/{created['id']}")).status == 404
    purged = service.audit.events("purged")
    assert purged[-1]["reason"] == "delete" and purged[-1]["id"] == created["id"]


async def test_a_read_sends_its_headers_and_body_in_one_write(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One send per read, not one for the headers and one for the body (each send
    costs a syscall, and under a flood each took as long as the other)."""
    data = images.png((200, 150))
    created = await service.upload_ok(data, ttl=30)
    writes: list[list[bytes]] = []
    write, writelines = StreamWriter._write, StreamWriter._writelines

    def one(self: StreamWriter, chunk: bytes) -> None:
        writes.append([bytes(chunk)])
        write(self, chunk)

    def several(self: StreamWriter, chunks: Iterable[bytes]) -> None:
        chunks = list(chunks)
        writes.append([bytes(c) for c in chunks])
        writelines(self, chunks)

    monkeypatch.setattr(StreamWriter, "_write", one)
    monkeypatch.setattr(StreamWriter, "_writelines", several)
    response = await service.client.get(f"/v1/images/{created['id']}")
    assert await response.read() == data
    responses = [w for w in writes if w[0].startswith(b"HTTP/1.1 200")]
    assert len(responses) == 1 and b"".join(responses[0]).endswith(b"\r\n\r\n" + data)


async def test_every_allowed_format_is_stored_with_its_sniffed_type(service: Service) -> None:
    for maker, media_type in [
        (images.png, "image/png"),
        (images.gif, "image/gif"),
        (images.webp, "image/webp"),
        (images.bmp, "image/bmp"),
    ]:
        created = await service.upload_ok(maker())
        assert created["media_type"] == media_type


async def test_client_content_type_is_ignored(service: Service) -> None:
    response = await service.client.post(
        "/v1/images", data=images.png(), headers={"Content-Type": "image/jpeg"}
    )
    assert (await response.json())["media_type"] == "image/png"


async def test_multipart_upload_uses_field_file(service: Service) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field(
        "file", images.jpeg(), filename="../../etc/passwd.html", content_type="text/html"
    )
    response = await service.client.post("/v1/images", data=form)
    assert response.status == 201
    assert (await response.json())["media_type"] == "image/jpeg"
    assert "passwd" not in service.audit.getvalue()


async def test_multipart_without_file_field_is_400(service: Service) -> None:
    form = aiohttp.FormData()
    form.add_field("other", images.jpeg(), filename="a.jpg")
    response = await service.client.post("/v1/images", data=form)
    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_missing_expired_and_purged_ids_are_the_same_404(service: Service) -> None:
    created = await service.upload_ok(images.png(), ttl=5)
    bodies = []
    for path in ["/v1/images/AAAAAAAAAAAAAAAAAAAAAA", "/v1/images/not-an-id", "/v1/images/..%2f.."]:
        response = await service.client.get(path)
        assert response.status == 404
        bodies.append(await response.json())
    service.clock.advance(5)  # deadline passed; the purge has not run yet
    response = await service.client.get(f"/v1/images/{created['id']}")
    assert response.status == 404
    bodies.append(await response.json())
    assert len({(b["type"], b["title"], b["detail"]) for b in bodies}) == 1


async def test_read_after_deadline_refused_even_before_purge(service: Service) -> None:
    created = await service.upload_ok(images.png(), ttl=10)
    service.clock.advance(9.999)
    assert (await service.client.get(f"/v1/images/{created['id']}")).status == 200
    service.clock.advance(0.001)
    for suffix in ("", "/meta", "/thumbnail"):
        assert (await service.client.get(f"/v1/images/{created['id']}{suffix}")).status == 404
    metrics = await service.metrics()
    assert metrics["cache_expired_reads_refused_total"] == 3
    assert len(service.rt.store) == 1  # still held until the timer runs...
    await service.rt.timer.run_due()
    assert len(service.rt.store) == 0


async def test_max_reads_serves_exactly_then_purges(service: Service) -> None:
    created = await service.upload_ok(images.png(), max_reads=2)
    url = f"/v1/images/{created['id']}"
    assert (await service.client.get(url)).status == 200
    assert (await service.client.get(url)).status == 200
    assert (await service.client.get(url)).status == 404
    purged = [e for e in service.audit.events("purged") if "id" in e]
    assert [e["reason"] for e in purged] == ["read_limit"]


async def test_thumbnail_is_reencoded_and_capped(service: Service) -> None:
    created = await service.upload_ok(images.polyglot(), max_reads=1)
    url = f"/v1/images/{created['id']}/thumbnail"
    response = await service.client.get(url, params={"size": 32})
    assert response.status == 200 and response.content_type == "image/jpeg"
    body = await response.read()
    assert b"<script>" not in body and body.startswith(b"\xff\xd8")
    for size in ("8", "100000", "abc"):
        bad = await service.client.get(url, params={"size": size})
        assert bad.status == 400
    # thumbnails do not use up the single read
    assert (await service.client.get(f"/v1/images/{created['id']}")).status == 200


async def test_thumbnail_keeps_alpha_as_png(service: Service) -> None:
    created = await service.upload_ok(images.encode("PNG", (40, 40), mode="RGBA"))
    response = await service.client.get(f"/v1/images/{created['id']}/thumbnail?size=16")
    assert response.content_type == "image/png"


async def test_ttl_and_max_reads_bounds_are_400_naming_the_bound(service: Service) -> None:
    for query in (
        {"ttl": 0},
        {"ttl": 0.5},
        {"ttl": 301},
        {"ttl": "abc"},
        {"ttl": "nan"},
        {"ttl": "inf"},
        {"max_reads": 0},
        {"max_reads": 1_000_001},
        {"max_reads": "1.5"},
    ):
        response = await service.upload(images.png(), **query)
        assert response.status == 400, query
        problem = await response.json()
        assert problem["type"].endswith("/invalid-parameter")
    problem = await (await service.upload(images.png(), ttl=301)).json()
    assert "300" in problem["detail"]
    assert (await service.upload(images.png(), ttl=300)).status == 201
    assert (await service.upload(images.png(), ttl=1)).status == 201
    assert len(service.rt.store) == 2


async def test_robots_health_ready_openapi(service: Service) -> None:
    robots = await service.client.get("/robots.txt")
    assert "Disallow: /" in await robots.text()
    assert (await service.client.get("/healthz")).status == 200
    assert (await service.client.get("/readyz")).status == 200
    spec = await (await service.client.get("/openapi.json")).json()
    for path in (
        "/v1/images",
        "/v1/images/fetch",
        "/v1/images/{id}",
        "/v1/images/{id}/thumbnail",
        "/v1/images/{id}/meta",
        "/robots.txt",
        "/healthz",
        "/readyz",
    ):
        assert path in spec["paths"]
    statuses = {
        code for op in spec["paths"]["/v1/images/fetch"].values() for code in op["responses"]
    }
    assert {"400", "403", "413", "415", "422", "451", "502", "503", "504"} <= statuses


async def test_aiohttp_own_errors_are_problem_json(service: Service) -> None:
    for method, path, status in [
        ("GET", "/nope", 404),
        ("PUT", "/v1/images", 405),
        ("PATCH", "/v1/images/AAAAAAAAAAAAAAAAAAAAAA", 405),
    ]:
        response = await service.client.request(method, path)
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert (await response.json())["status"] == status


async def test_readyz_is_503_after_shutdown_starts(service: Service) -> None:
    service.rt.ready = False
    service.rt.not_ready_reason = "shutting down"
    response = await service.client.get("/readyz")
    assert response.status == 503 and "Retry-After" in response.headers


async def test_full_cache_refuses_before_reading_the_body(make_service: ServiceFactory) -> None:
    """Under a flood, a body that cannot fit is never buffered: 503 comes before it is sent."""
    service = await make_service(make_config(storage={"max_items": 1}))
    await service.upload_ok(images.png(), ttl=30)
    reader, writer = await asyncio.open_connection(service.client.host, service.client.port)
    writer.write(
        b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 10
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 503"), status_line
    metrics = await service.metrics()
    assert metrics['cache_rejected_total{reason="cache-full"}'] == 1


async def test_bodies_being_read_count_against_capacity(make_service: ServiceFactory) -> None:
    """Two 600-byte-or-more uploads in flight cannot both be buffered into 1000 bytes."""
    data = images.png((40, 40))
    service = await make_service(
        make_config(
            storage={"max_bytes": len(data) + 100}, limits={"max_upload_bytes": len(data) + 100}
        )
    )
    reader, writer = await asyncio.open_connection(service.client.host, service.client.port)
    head = f"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data[:10])  # the first upload is being read...
    await writer.drain()
    for _ in range(500):  # until the server has read the first request's headers
        if service.rt.intake._in_flight:
            break
        await asyncio.sleep(0.01)
    second = await service.upload(data)  # ...so the second cannot fit
    assert second.status == 503
    writer.write(data[10:])
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), timeout=10)).startswith(b"HTTP/1.1 201")
    writer.close()
    assert len(service.rt.store) == 1 and service.rt.intake._in_flight == 0
