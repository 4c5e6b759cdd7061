"""storage.max_mappings through a real app: past the budget an item is held in the heap,
served alike, and counted (cache_memory_heap_items_total); mappings are a gauge, and the
process's RSS is a metric beside cache_bytes."""

from __future__ import annotations

from tests.support import images
from tests.support.service import ServiceFactory, make_config
from tests.support.warm import mappings_once_cold


async def test_past_the_mapping_budget_items_go_to_the_heap_counted(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(make_config(storage={"max_mappings": 1}))
    small = await service.upload_ok(images.png())  # opens the one arena allowed
    large_body = images.noise_png(600)  # ~1 MB: would need a mapping of its own
    large = await service.upload_ok(large_body)
    values = await service.metrics()
    assert values["cache_memory_mappings"] == 1
    assert values["cache_memory_heap_items_total"] == 1
    assert values["cache_process_resident_bytes"] > values["cache_bytes"] > len(large_body)
    response = await service.client.get(f"/v1/images/{large['id']}")
    assert response.status == 200 and await response.read() == large_body
    for item in (small, large):
        assert (await service.client.delete(f"/v1/images/{item['id']}")).status == 204
    assert (await service.metrics())["cache_bytes"] == 0
    assert await mappings_once_cold(service) == 0  # after the warm pages' short wait
