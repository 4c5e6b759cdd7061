"""Thumbnails are request work with bounds: never delivered for an item deleted (or due)
while it was made, at most PER_ITEM of one item at once, and within the decode budget."""

from __future__ import annotations

import asyncio

from cache.intake.thumbnail import PER_ITEM
from tests.support import images
from tests.support.service import Service, ServiceFactory, make_config


async def started(service: Service) -> None:
    for _ in range(200):
        if service.rt.thumbnails._making:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no thumbnail was being made")


async def test_no_thumbnail_after_the_delete(service: Service) -> None:
    created = await service.upload_ok(images.flat_png(3000))
    url = f"/v1/images/{created['id']}"
    thumb = asyncio.ensure_future(service.client.get(url + "/thumbnail?size=256"))
    await started(service)
    assert (await service.client.delete(url)).status == 204
    response = await thumb
    assert response.status == 404


async def test_thumbnails_of_one_item_are_capped(service: Service) -> None:
    created = await service.upload_ok(images.flat_png(3000))
    url = f"/v1/images/{created['id']}/thumbnail?size=256"
    answers = await asyncio.gather(*(service.client.get(url) for _ in range(PER_ITEM + 2)))
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert set(statuses) <= {200, 503}


async def test_a_decode_over_the_whole_budget_is_422(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(limits={"decode_budget_bytes": 1_000_000}))
    created = await service.upload_ok(images.flat_png(1000))  # 4 MB decoded > 1 MB budget
    response = await service.client.get(f"/v1/images/{created['id']}/thumbnail?size=64")
    assert response.status == 422
    assert (await response.json())["type"].endswith("/image-dimensions-exceeded")
