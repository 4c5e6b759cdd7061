"""POST /v1/images/fetch through the service: same pipeline as uploads, host-only audit."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support import images
from tests.support.service import ServiceFactory, make_config


async def origin(aiohttp_server: Any) -> Any:
    async def png(request: web.Request) -> web.Response:
        return web.Response(body=images.png(), content_type="image/png")

    async def html(request: web.Request) -> web.Response:
        return web.Response(body=images.HTML, content_type="image/png")  # lies about its type

    app = web.Application()
    app.router.add_get("/q.png", png)
    app.router.add_get("/page", html)
    return await aiohttp_server(app)


async def test_fetch_stores_with_source_host_only(
    make_service: ServiceFactory, aiohttp_server: Any
) -> None:
    server = await origin(aiohttp_server)
    pair = f"127.0.0.1:{server.port}"
    service = await make_service(make_config(fetch={"allow_hosts": [pair]}))
    url = f"http://{pair}/q.png?token=SECRET123"
    response = await service.client.post(
        "/v1/images/fetch", json={"url": url, "ttl": 30, "max_reads": 1}
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["source"] == "fetch" and created["media_type"] == "image/png"
    assert created["reads_left"] == 1
    meta = await (await service.client.get(f"/v1/images/{created['id']}/meta")).json()
    assert meta["source_host"] == "127.0.0.1"
    assert "SECRET123" not in service.audit.getvalue() and "/q.png" not in service.audit.getvalue()
    assert service.audit.events("stored")[-1]["source_host"] == "127.0.0.1"
    metrics = await service.metrics()
    assert metrics['cache_fetch_total{result="ok"}'] == 1
    assert metrics['cache_stored_total{source="fetch"}'] == 1


async def test_fetched_non_image_is_415_and_not_stored(
    make_service: ServiceFactory, aiohttp_server: Any
) -> None:
    server = await origin(aiohttp_server)
    pair = f"127.0.0.1:{server.port}"
    service = await make_service(make_config(fetch={"allow_hosts": [pair]}))
    response = await service.client.post("/v1/images/fetch", json={"url": f"http://{pair}/page"})
    assert response.status == 415
    assert len(service.rt.store) == 0
    metrics = await service.metrics()
    assert metrics['cache_fetch_total{result="not_image"}'] == 1


async def test_fetch_refusals_and_bad_bodies(make_service: ServiceFactory) -> None:
    service = await make_service()
    cases: list[tuple[Any, int]] = [
        ({"url": "ftp://example.com/a.png"}, 400),
        ({"url": "http://127.0.0.1/a.png"}, 403),
        ({"url": "http://2130706433/"}, 400),
        ({"url": ""}, 400),
        ({"url": 5}, 400),
        ({"url": "http://example.com/a.png", "ttl": 0}, 400),
        ([1, 2], 400),
    ]
    for body, status in cases:
        response = await service.client.post("/v1/images/fetch", json=body)
        assert response.status == status, body
        assert response.content_type == "application/problem+json"
    forbidden = await (
        await service.client.post("/v1/images/fetch", json={"url": "http://127.0.0.1/a.png"})
    ).json()
    assert forbidden["type"].endswith("/fetch-destination-forbidden")
    metrics = await service.metrics()
    assert metrics['cache_fetch_total{result="forbidden"}'] == 2
    assert metrics['cache_fetch_total{result="invalid_url"}'] == 2
    assert len(service.rt.store) == 0


async def test_fetch_disabled_is_404(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(fetch={"enabled": False}))
    response = await service.client.post("/v1/images/fetch", json={"url": "http://example.com/"})
    assert response.status == 404
    assert (await service.metrics())['cache_fetch_total{result="disabled"}'] == 1
