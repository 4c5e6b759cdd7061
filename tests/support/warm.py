"""Waiting out the memory backend's warm reuse: a purged item's pages are zeroed at once and
given back `WARM_SECONDS` later by a real-time timer (`cache/store/local/pages.py`)."""

from __future__ import annotations

import asyncio
import time

from cache.store.local.memory import WARM_SECONDS
from tests.support.service import Service


async def mappings_once_cold(service: Service) -> float:
    """`cache_memory_mappings` once warm pages have had time to go (polled, bounded)."""
    deadline = time.monotonic() + WARM_SECONDS + 2.0
    while True:
        value = (await service.metrics())["cache_memory_mappings"]
        if value == 0 or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)
