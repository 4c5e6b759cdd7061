"""Request bodies and their limits, in process: content codings, JSON that the stdlib
choked on, sizes against the cap and the capacity, chunked bodies counted as they arrive,
and the idle and whole-body deadlines. Each refusal has its `rejected` line and metric."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cache.config import ConfigError, build_config
from tests.support import images
from tests.support.service import Service, ServiceFactory, make_config

DEEP = b"[" * 30_000 + b"]" * 30_000


async def problem(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    return dict(await response.json())


def slug(body: dict[str, Any]) -> str:
    return str(body["type"].rsplit("/", 1)[1])


async def assert_rejected(service: Service, reason: str, source: str) -> None:
    line = service.audit.events("rejected")[-1]
    assert (line["reason"], line["source"]) == (reason, source)
    assert (await service.metrics())[f'cache_rejected_total{{reason="{reason}"}}'] >= 1


async def test_json_that_broke_the_stdlib_parser_is_400(service: Service) -> None:
    for raw in (
        DEEP,
        b'{"url": "http://example.com/a.png", "ttl": ' + b"9" * 5000 + b"}",
        b'{"url": "http://example.com/a.png", "max_reads": 2.5}',
        b'{"url": "\xff"}',
        b"[]",
    ):
        response = await service.client.post(
            "/v1/images/fetch", data=raw, headers={"Content-Type": "application/json"}
        )
        body = await problem(response, 400)
        await assert_rejected(service, slug(body), "fetch")


async def test_admin_purge_refuses_deep_json_with_a_rejected_line(service: Service) -> None:
    response = await service.ops.post(
        "/admin/purge", data=b'{"ids": ' + DEEP[:40_000] + b"}", headers=service.admin_headers
    )
    await problem(response, 400)
    await assert_rejected(service, "bad-request", "admin")


async def test_json_charset_other_than_utf8_is_415(service: Service) -> None:
    response = await service.client.post(
        "/v1/images/fetch",
        data=b'{"url": "http://example.com/a.png"}',
        headers={"Content-Type": "application/json; charset=x-unknown"},
    )
    body = await problem(response, 415)
    assert slug(body) == "unsupported-encoding"
    await assert_rejected(service, "unsupported-encoding", "fetch")


async def test_any_content_coding_is_415_before_the_body_is_read(service: Service) -> None:
    for coding in ("gzip", "deflate", "x-unknown"):  # (br: refused by the parser itself)
        response = await service.client.post(
            "/v1/images", data=b"not a deflate stream", headers={"Content-Encoding": coding}
        )
        body = await problem(response, 415)
        assert response.headers["Accept-Encoding"] == "identity"
        assert slug(body) == "unsupported-encoding"
        await assert_rejected(service, "unsupported-encoding", "upload")
    ok = await service.client.post(
        "/v1/images", data=images.png(), headers={"Content-Encoding": "identity"}
    )
    assert ok.status == 201


async def test_json_over_the_listener_cap_is_413(service: Service) -> None:
    big = b'{"url": "' + b"a" * 70_000 + b'"}'
    response = await service.client.post("/v1/images/fetch", data=big)
    await problem(response, 413)
    await assert_rejected(service, "payload-too-large", "fetch")


async def test_declared_length_over_the_cap_is_413_even_when_full(
    make_service: ServiceFactory,
) -> None:
    size = len(images.png())
    service = await make_service(
        make_config(storage={"max_bytes": size, "max_items": 1}, limits={"max_upload_bytes": size})
    )
    await service.upload_ok(images.png())  # now full
    response = await service.upload(b"\0" * (size + 1))  # over the cap and the capacity
    body = await problem(response, 413)
    assert slug(body) == "payload-too-large" and "Retry-After" not in response.headers
    await assert_rejected(service, "payload-too-large", "upload")


async def test_full_503_retry_after_is_the_deadline_that_makes_room(
    make_service: ServiceFactory,
) -> None:
    size = len(images.png())
    service = await make_service(
        make_config(storage={"max_bytes": 7 * size // 2}, limits={"max_upload_bytes": 3 * size})
    )
    for ttl in (30, 10, 20):
        await service.upload_ok(images.png(), ttl=ttl)
    # 3 held + 2 more = 5 sizes; 3.5 fit: the items due at 10 s and 20 s must go first.
    response = await service.upload(b"\0" * (2 * size))
    body = await problem(response, 503)
    assert slug(body) == "cache-full" and response.headers["Retry-After"] == "20"
    response = await service.upload(b"\0" * size)  # the one due at 10 s is enough
    assert (await problem(response, 503)) and response.headers["Retry-After"] == "10"


def stalled_body(first: bytes, release: asyncio.Event, rest: bytes = b"") -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        yield first
        await release.wait()
        if rest:
            yield rest

    return gen()


async def wait_until(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_chunked_body_counts_in_flight_as_it_arrives(make_service: ServiceFactory) -> None:
    size = len(images.png())
    service = await make_service(
        make_config(storage={"max_bytes": 4 * size}, limits={"max_upload_bytes": 4 * size})
    )
    release = asyncio.Event()
    first = b"\0" * (3 * size)
    upload = asyncio.create_task(
        service.client.post("/v1/images", data=stalled_body(first, release))
    )
    await wait_until(lambda: service.rt.intake._in_flight >= len(first))
    response = await service.upload(images.png() * 2)  # would pass 4 sizes with what arrived
    body = await problem(response, 503)
    assert slug(body) == "cache-full"
    assert (await service.upload(images.png())).status == 201  # one more still fits
    release.set()
    await problem(await upload, 415)  # zeros: not an image; its bytes were counted
    assert service.rt.intake._in_flight == 0


async def test_chunked_body_refused_mid_body_when_room_runs_out(
    make_service: ServiceFactory,
) -> None:
    size = len(images.png())
    service = await make_service(
        make_config(storage={"max_bytes": 2 * size}, limits={"max_upload_bytes": 2 * size})
    )
    await service.upload_ok(images.png())
    release = asyncio.Event()
    release.set()
    chunks = stalled_body(b"\0" * size, release, b"\0" * size)
    response = await service.client.post("/v1/images", data=chunks)
    assert slug(await problem(response, 503)) == "cache-full"
    await assert_rejected(service, "cache-full", "upload")
    assert service.rt.intake._in_flight == 0


async def test_stalled_body_is_408_and_releases_its_reservation(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(make_config(limits={"body_idle_timeout": 0.2}))
    release = asyncio.Event()
    data = images.png()
    response = await service.client.post(
        "/v1/images",
        data=stalled_body(data[:10], release, data[10:]),
        headers={"Content-Length": str(len(data))},
    )
    body = await problem(response, 408)
    assert slug(body) == "request-timeout" and "body_idle_timeout" in body["detail"]
    release.set()
    await assert_rejected(service, "request-timeout", "upload")
    assert service.rt.intake._in_flight == 0 and service.rt.intake._uploads == 0


async def test_trickled_body_is_cut_at_the_whole_body_deadline(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(
        make_config(limits={"body_idle_timeout": 0.5, "body_timeout": 0.3})
    )

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"\0"
            await asyncio.sleep(0.05)

    response = await service.client.post("/v1/images", data=trickle())
    body = await problem(response, 408)
    assert "body_timeout" in body["detail"]
    await assert_rejected(service, "request-timeout", "upload")


def test_body_deadlines_are_validated_config_keys() -> None:
    config = build_config({}, env={})
    assert (config.limits.body_idle_timeout, config.limits.body_timeout) == (10.0, 60.0)
    for key in ("body_idle_timeout", "body_timeout"):
        with pytest.raises(ConfigError, match=f"limits.{key}: must be positive"):
            build_config({"limits": {key: 0}}, env={})
    env = {"CACHE_LIMITS_BODY_TIMEOUT": "5.5"}
    assert build_config({}, env=env).limits.body_timeout == 5.5
