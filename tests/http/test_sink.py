"""An upload is written into the store's own room as it arrives (cache/http/sink.py): a
known length gets its room once, a chunked body's room doubles (the old one zeroed and
freed), and a refused body leaves nothing mapped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cache.errors import BadRequest
from cache.http.sink import FIRST_ROOM, Sink
from cache.store.local.memory import MemoryBackend
from tests.support import images
from tests.support.service import Service
from tests.support.warm import mappings_once_cold


def test_a_known_length_gets_one_room_and_no_more() -> None:
    backend = MemoryBackend()
    sink = Sink(backend.buffer, 10)
    sink.write(b"0123456789")
    with pytest.raises(BadRequest):
        sink.write(b"!")
    assert bytes(sink.buffer.data()) == b"0123456789"
    sink.discard()
    assert backend.pages.arenas == 0


def test_a_chunked_body_doubles_its_room_and_frees_the_old_one() -> None:
    backend = MemoryBackend()
    sink = Sink(backend.buffer, None)
    first = sink.buffer
    chunk = bytes(range(256)) * 1024  # 256 KiB
    for _ in range(3):
        sink.write(chunk)
    assert sink.buffer is not first and sink.buffer.size == 4 * FIRST_ROOM
    assert first.used == 0 and bytes(sink.buffer.data()) == chunk * 3
    sink.discard()
    assert backend.pages.arenas == 0


async def test_a_chunked_upload_is_stored_whole(service: Service) -> None:
    body = images.noise_png(400)  # ~480 KB, sent in 64 KiB chunks of unknown total

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    created = await service.upload_ok(chunks())  # type: ignore[arg-type]
    read = await service.client.get(f"/v1/images/{created['id']}")
    assert await read.read() == body


async def test_a_refused_upload_leaves_no_room_behind(service: Service) -> None:
    response = await service.upload(b"<svg xmlns='http://www.w3.org/2000/svg'/>" * 100)
    assert response.status == 415
    assert (await service.metrics())["cache_bytes"] == 0
    assert await mappings_once_cold(service) == 0  # after the warm pages' short wait
