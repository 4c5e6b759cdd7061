"""A block of `cache/store/local/pages.py` taken and filled, for the pages tests."""

from __future__ import annotations

from cache.store.local.pages import Block, Pages


def filled(pages: Pages, size: int, byte: int = 0x5A) -> Block:
    block = pages.take(size)
    with block.writable() as room:
        room[:size] = bytes([byte]) * size
    block.used = size
    return block
