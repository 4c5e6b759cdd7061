"""Bytes in process memory: the embedded default, nothing to set up."""

from __future__ import annotations


class MemoryBackend:
    """Each item is a `bytearray` that is zeroed in place before it is dropped.

    Zeroing is best effort: the copies made to serve a read (a `bytes` snapshot, socket
    buffers) are freed by the allocator without being overwritten.
    """

    name = "memory"

    def __init__(self) -> None:
        self._buffers: dict[str, bytearray] = {}

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        if item_id in self._buffers:
            raise KeyError(f"id already held: {item_id}")
        self._buffers[item_id] = bytearray(data)

    async def get(self, item_id: str) -> bytes | None:
        buffer = self._buffers.get(item_id)
        return None if buffer is None else bytes(buffer)

    async def delete(self, item_id: str) -> bool:
        buffer = self._buffers.pop(item_id, None)
        if buffer is None:
            return False
        zero(buffer)
        return True

    async def purge_all(self) -> int:
        count = len(self._buffers)
        for buffer in self._buffers.values():
            zero(buffer)
        self._buffers.clear()
        return count

    async def keys(self) -> set[str]:
        return set(self._buffers)

    async def close(self) -> None:
        return None


def zero(buffer: bytearray) -> None:
    """Overwrite in place (no reallocation, so the old bytes do not linger elsewhere)."""
    buffer[:] = bytes(len(buffer))
