"""Uploads in flight are capped (limits.max_uploads_in_flight): one more gets a 503 with
Retry-After before its body is read, and the cap frees as soon as an upload ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.support import images
from tests.support.service import ServiceFactory, make_config


async def test_one_upload_past_the_cap_is_503_before_its_body(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(limits={"max_uploads_in_flight": 1}))
    data = images.png()
    release = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield data[:10]
        await release.wait()
        yield data[10:]

    first = asyncio.create_task(service.client.post("/v1/images", data=stalled()))
    for _ in range(100):  # until the first upload is being read
        if service.rt.intake._uploads:
            break
        await asyncio.sleep(0.01)
    second = await service.upload(data)
    assert second.status == 503 and second.headers["Retry-After"] == "1"
    assert (await second.json())["type"].endswith("/unavailable")
    release.set()
    assert (await first).status == 201
    assert (await service.upload(data)).status == 201  # the cap is free again
    rejected = service.audit.events("rejected")
    assert [e["reason"] for e in rejected] == ["unavailable"]
