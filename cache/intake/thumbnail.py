"""Thumbnails for browsers: re-encoded from the original on every request, never stored.

A browser is never handed the original bytes a client sent (a polyglot stays inert once
it has been decoded to pixels and encoded again by us). Making one is request work: it
runs in the work pool within the decode budget, at most `PER_ITEM` at a time per item,
and is never delivered for an item that was purged (or fell due) while it was made.
"""

from __future__ import annotations

import io

from PIL import Image

from ..errors import ServiceUnavailable
from ..store.api import ItemStore
from .inspect import decoded_bytes
from .work import WorkPool

MIN_SIZE = 16
_REDUCE_FIRST = frozenset({"RGB", "RGBA", "L", "LA", "RGBX", "CMYK", "I;16", "I", "F"})
PER_ITEM = 2  # thumbnails of one item being made at once


def make_thumbnail(data: bytes | bytearray | memoryview, size: int) -> tuple[bytes, str]:
    """Fit the first frame into size x size; PNG when it has alpha, else JPEG."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im.seek(0)
        alpha = _has_alpha(im)
        if im.mode in _REDUCE_FIRST:  # shrink the decoded frame in place, then convert
            im.thumbnail((size, size))  # the small one: one full-size buffer, not two
        frame = im.convert("RGBA") if alpha else im.convert("RGB")
    frame.thumbnail((size, size))
    # Pixels only: Pillow would carry the source's comment, EXIF and ICC into the new
    # file, and a comment is exactly where a polyglot keeps its script.
    frame.info.clear()
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, format="PNG", optimize=False)
        return out.getvalue(), "image/png"
    frame.save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


class Thumbnails:
    def __init__(self, store: ItemStore, pool: WorkPool) -> None:
        self._store = store
        self._pool = pool
        self._making: dict[str, int] = {}  # item id -> thumbnails being made

    async def make(self, item_id: str, size: int) -> tuple[bytes, str]:
        """A thumbnail of a live item (NotFound otherwise); never uses up a read."""
        item, data = await self._store.read(item_id, count=False)
        if self._making.get(item.id, 0) >= PER_ITEM:
            raise ServiceUnavailable("thumbnails of this image are being made; retry", 1.0)
        self._making[item.id] = self._making.get(item.id, 0) + 1
        try:
            cost = decoded_bytes(item.media_type, item.width, item.height, size)
            made = await self._pool.run_within(cost, make_thumbnail, data, size)
        finally:
            left = self._making.pop(item.id) - 1
            if left:
                self._making[item.id] = left
        await self._store.meta(item.id)  # purged or due meanwhile: NotFound, nothing sent
        return made
