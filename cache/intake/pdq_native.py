"""Meta's PDQ C++ core called through ctypes, so that hashing does not hold the GIL.

Why: the `pdqhash` binding (Cython) runs Meta's C++ with the GIL held. Hashing runs in
the request work pool, but a thread that holds the GIL stops the event loop as surely as
the loop doing the work itself: ~0.4 ms for a small image, ~5 ms at 512x512, during which
the exact expiry timer, reads and every other request wait. ctypes releases the GIL for
the length of a foreign call.

The binding's extension module exports Meta's functions (C++ linkage, the same compiled
code the binding calls), so this calls two of them directly: `fillFloatLumaFromRGB`, the
reference's own float luma (the binding computes it with numpy in float64, then rounds),
and `pdqDihedralHash256esFromFloatLuma`, whose first hash is the plain one. Symbols that
are not there (another build of pdqhash) make `available()` False, and `pdq.py` keeps to
the binding. Each call uses its own buffers: threads may hash at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

_LUMA = "_ZN8facebook3pdq7hashing20fillFloatLumaFromRGBEPhS2_S2_iiiiPf"
_DIHEDRAL = (
    "_ZN8facebook3pdq7hashing33pdqDihedralHash256esFromFloatLuma"
    "EPfS2_iiPA64_fS4_PA16_fS6_PNS1_7Hash256ES8_S8_S8_S8_S8_S8_S8_Ri"
)


class Hash256(ctypes.Structure):
    _fields_ = [("w", ctypes.c_uint16 * 16)]

    def hex(self) -> str:
        """As C++ `Hash256::format`: w[15] first, each `%04hx`."""
        return "".join(f"{word:04x}" for word in reversed(self.w))


def _load() -> tuple[Callable[..., None], Callable[..., None]] | None:
    try:
        import pdqhash.bindings  # type: ignore[import-untyped]

        lib = ctypes.CDLL(pdqhash.bindings.__file__)
        luma: Any = getattr(lib, _LUMA)
        dihedral: Any = getattr(lib, _DIHEDRAL)
    except (ImportError, OSError, AttributeError):
        return None
    ptr, num = ctypes.c_void_p, ctypes.c_int
    luma.restype = None
    luma.argtypes = [ptr, ptr, ptr, num, num, num, num, ptr]
    dihedral.restype = None
    dihedral.argtypes = [ptr, ptr, num, num, ptr, ptr, ptr, ptr]
    dihedral.argtypes += [ctypes.POINTER(Hash256)] * 8 + [ctypes.POINTER(ctypes.c_int)]
    return luma, dihedral


_FUNCTIONS = _load()


def available() -> bool:
    return _FUNCTIONS is not None


def dihedral(rgb: npt.NDArray[np.uint8]) -> tuple[list[str], int]:
    """The 8 dihedral hashes (reference order) and the quality of HxWx3 uint8 pixels
    (already resized as the reference does), computed without holding the GIL."""
    assert _FUNCTIONS is not None, "check available() first"
    fill_luma, hash_dihedral = _FUNCTIONS
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    rows, cols = pixels.shape[0], pixels.shape[1]
    luma = np.empty((rows, cols), dtype=np.float32)
    scratch = np.empty((rows, cols), dtype=np.float32)
    base = pixels.ctypes.data
    fill_luma(base, base + 1, base + 2, rows, cols, cols * 3, 3, luma.ctypes.data)
    b64x64 = np.empty((64, 64), dtype=np.float32)
    b16x64 = np.empty((16, 64), dtype=np.float32)
    b16x16 = np.empty((16, 16), dtype=np.float32)
    b16x16_aux = np.empty((16, 16), dtype=np.float32)
    hashes = (Hash256 * 8)()
    quality = ctypes.c_int(0)
    hash_dihedral(
        luma.ctypes.data,
        scratch.ctypes.data,
        rows,
        cols,
        b64x64.ctypes.data,
        b16x64.ctypes.data,
        b16x16.ctypes.data,
        b16x16_aux.ctypes.data,
        *(ctypes.byref(h) for h in hashes),
        ctypes.byref(quality),
    )
    return [h.hex() for h in hashes], int(quality.value)
