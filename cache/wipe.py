"""Overwriting buffers that held image bytes before they are dropped.

Best effort, as documented in the README: CPython and the kernel may have made copies
(a `bytes` snapshot served to a reader, socket buffers) that are freed without being
overwritten. What this process owns outright, it zeroes.
"""

from __future__ import annotations

import ctypes


def zero(buffer: bytearray) -> None:
    """Overwrite in place: no reallocation (the old bytes do not linger elsewhere) and no
    temporary buffer of zeros as large as the image."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))
