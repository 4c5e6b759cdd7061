"""PDQ perceptual hashes that agree with Meta's reference `pdq-photo-hasher`.

Why this module exists: hash lists we match against are produced by other parties with
Meta's C++ tool (ThreatExchange `pdq/cpp`), so our hashes must be the *same* bits for the
same pixels, not merely "a PDQ-like hash".  The `pdqhash` binding wraps Meta's own
Jarosz-filter / DCT core, but it does none of the reference's pre-processing, which lives
in `pdq/cpp/io/pdqio.cpp` and CImg:

* Loading: CImg (built without `cimg_use_jpeg`/`cimg_use_png`) pipes every file through
  ImageMagick `convert FILE pnm:-`.  That drops alpha *without* compositing (RGBA -> the
  raw RGB, LA -> grey), expands palettes to RGB and keeps greyscale as one channel whose
  luma is the grey value itself.  EXIF orientation is NOT applied.  Pillow's
  `convert("RGB")` does the same for these modes, and so does our numpy fast path.
* Resize: if a side exceeds 512 px the image becomes 512x512 (aspect NOT kept) with
  CImg's nearest neighbour, which reads source index `floor(i * N / 512)`.  Pillow's
  `Image.NEAREST` samples pixel centres, `floor((i + 0.5) * N / 512)`, i.e. different
  pixels (up to 16 bits apart on ThreatExchange's images), so `cimg_resize` reproduces
  CImg's indices exactly (an offset Pillow affine transform, checked against numpy).
* Luma 0.299/0.587/0.114, then the Jarosz filter, 64x64 decimation and DCT: uploads are
  hashed by `pdq_linear`, the same steps as small linear maps (in C and numpy, 6-40x
  faster; the hashes differ from the C++ only where float32 rounding moves a
  coefficient across the median), the pixels read where Pillow keeps them. Meta's C++
  itself stays here as the reference the port is held against
  (`reference_dihedral`): through ctypes (`pdq_native`: the reference's own luma
  function, the GIL released) or, where those symbols are missing, the `pdqhash`
  binding, which computes luma in float64 and rounds to float32 (at most 1 ulp apart,
  no effect seen on the reference images).

Hex format: C++ `Hash256::format` prints words w[15]..w[0] as `%04hx`, i.e. bit 255
first.  The binding returns bits already ordered 255..0, so `packbits(...).hex()` is the
reference text.  tests/intake/data/pdq/README.md lists the reference values this is
checked against (tests/intake/test_pdq_hash.py).
"""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pdqhash  # type: ignore[import-untyped]
from PIL import Image

from . import pdq_linear, pdq_native

REFERENCE_MAX_SIDE = 512
_EPS = 1e-6
# Modes whose pixels numpy can hand us as RGB(+junk) or grey channels directly.
_DIRECT_MODES = {"RGB": 3, "RGBA": 3, "RGBX": 3, "L": 1, "LA": 1}

U8Array = npt.NDArray[np.uint8]


def _cimg_nearest_512(arr: U8Array) -> U8Array:
    """CImg `resize(512, 512)` (interpolation 1): source index floor(i * N / 512).

    The readable definition, used by the tests; `cimg_resize` is the fast equivalent.
    """
    h, w = arr.shape[0], arr.shape[1]
    if h <= REFERENCE_MAX_SIDE and w <= REFERENCE_MAX_SIDE:
        return arr
    ys = (np.arange(REFERENCE_MAX_SIDE, dtype=np.int64) * h) // REFERENCE_MAX_SIDE
    xs = (np.arange(REFERENCE_MAX_SIDE, dtype=np.int64) * w) // REFERENCE_MAX_SIDE
    out: U8Array = arr[ys[:, None], xs[None, :]]
    return out


def cimg_resize(im: Image.Image) -> Image.Image:
    """`_cimg_nearest_512` done by Pillow's C code, without a full-size numpy copy.

    Pillow's affine NEAREST (ImagingScaleAffine) reads floor(c + a * (i + 0.5)) with
    a = N / 512; c = -a / 2 + eps turns that into floor(i * N / 512 + eps).  The exact
    value's fractional part is a multiple of 1/512, and the float error of Pillow's
    running sum is < 1e-9, so eps = 1e-6 restores CImg's indices exactly.  Tests
    compare this with `_cimg_nearest_512` over many sizes and modes.
    """
    w, h = im.size
    if w <= REFERENCE_MAX_SIDE and h <= REFERENCE_MAX_SIDE:
        return im
    sx, sy = w / REFERENCE_MAX_SIDE, h / REFERENCE_MAX_SIDE
    coeffs = (sx, 0.0, _EPS - sx / 2, 0.0, sy, _EPS - sy / 2)
    side = (REFERENCE_MAX_SIDE, REFERENCE_MAX_SIDE)
    return im.transform(side, Image.Transform.AFFINE, coeffs, Image.Resampling.NEAREST)


def reference_rgb(im: Image.Image) -> U8Array:
    """The HxWx3 uint8 pixels the reference hashes: decoded, resized, alpha dropped.

    Resizing comes before mode conversion: conversion is per pixel, so the order does
    not change the result, only the cost on large images.
    """
    small_im = cimg_resize(im)
    channels = _DIRECT_MODES.get(small_im.mode)
    if channels is None:
        return np.ascontiguousarray(np.asarray(small_im.convert("RGB")))
    small: U8Array = np.asarray(small_im)
    if channels == 1:
        grey = small if small.ndim == 2 else small[:, :, 0]
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.ascontiguousarray(small[:, :, :3])


def core_pixels(small_im: Image.Image) -> U8Array:
    """The pixels of an image already resized by `cimg_resize`, copied out as
    `pdq_linear.downsample` takes them: HxW grey, or HxWx4 with R, G, B first (Pillow's
    own layout, a plain copy of each line; RGBA's alpha is dropped, not composited, as in
    the reference). For images Pillow cannot export in place."""
    w, h = small_im.size
    mode = small_im.mode
    if mode == "L":
        return np.frombuffer(small_im.tobytes(), dtype=np.uint8).reshape(h, w)
    if mode not in ("RGB", "RGBA", "RGBX"):
        small_im = small_im.convert("RGB")
        mode = "RGB"
    raw = small_im.tobytes("raw", "RGBA" if mode == "RGBA" else "RGBX")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 4)


def bits_to_hex(bits: Any) -> str:
    """256 bits ordered 255..0 (as `pdqhash` returns them) -> reference hex text."""
    arr = np.asarray(bits, dtype=np.uint8)
    if arr.shape != (256,):
        raise ValueError(f"expected 256 bits, got shape {arr.shape}")
    return np.packbits(arr).tobytes().hex()


def pdq_from_rgb(rgb: U8Array) -> tuple[str, int]:
    """Hash already pre-processed pixels (see `reference_rgb`)."""
    bits, quality = pdqhash.compute(rgb)
    return bits_to_hex(bits), int(quality)


def pdq_from_image(im: Image.Image) -> tuple[str, int]:
    """(64 lowercase hex chars, quality 0..100) as `pdq-photo-hasher` prints them."""
    hashes, quality = pdq_dihedral(im)
    return hashes[0], quality


def pdq_dihedral(im: Image.Image) -> tuple[list[str], int]:
    """The 8 dihedral hashes in the reference order, and the quality: what uploads get.

    Order: original, rotate 90, rotate 180, rotate 270, flip X, flip Y, flip +1,
    flip -1 (C++ `pdqDihedralHash256esFromFloatLuma`).  Index [0] equals the plain hash.
    Below 64 px a side the reference's decimation repeats pixels, so many DCT
    coefficients are zero in exact arithmetic and their bits are whatever the C++'s
    float rounding makes of them: such images go to the C++ itself (cheap at that size).
    """
    small = cimg_resize(im)
    if min(small.size) < pdq_linear.SIDE:
        return _reference(reference_rgb(small))
    if small.mode not in pdq_linear.IN_PLACE_MODES:
        small = small.convert("RGB")
    try:
        return pdq_linear.image_dihedral(small)
    except ValueError:  # Pillow keeps this image's rows in several blocks: copy them out
        return pdq_linear.dihedral(core_pixels(small))


def reference_dihedral(im: Image.Image) -> tuple[list[str], int]:
    """`pdq_dihedral` by Meta's own C++ at every size."""
    return _reference(reference_rgb(im))


def _reference(rgb: U8Array) -> tuple[list[str], int]:
    """Meta's C++ through `pdq_native` (the GIL released) where the binding's module
    exports Meta's functions, else through the binding."""
    if pdq_native.available():
        return pdq_native.dihedral(rgb)
    return _binding(rgb)


def binding_dihedral(im: Image.Image) -> tuple[list[str], int]:
    """`pdq_dihedral` through the `pdqhash` binding (GIL held; luma from numpy)."""
    return _binding(reference_rgb(im))


def _binding(rgb: U8Array) -> tuple[list[str], int]:
    hashes, quality = pdqhash.compute_dihedral(rgb)
    return [bits_to_hex(h) for h in hashes], int(quality)


def open_for_pdq(fp: str | BinaryIO, *, draft: bool = False) -> Image.Image:
    """Open and decode an image for hashing.

    draft=True lets libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale while keeping
    both sides >= 512: 1.5x (2000x1500) to 2.5x (4032x3024) cheaper here.  The pixels
    then differ slightly from the reference's full decode: 0-4 bits from the C++
    reference on 24 large JPEGs (PDQ tolerates 10), nothing for JPEGs under 1024 px.
    Use it where that tolerance is acceptable, never to produce hashes for export.
    """
    im = Image.open(fp)
    if draft and im.format == "JPEG" and max(im.size) > REFERENCE_MAX_SIDE:
        # Pillow picks the largest 1/2^k scale leaving both sides >= the requested size.
        im.draft(im.mode, (REFERENCE_MAX_SIDE, REFERENCE_MAX_SIDE))
    im.load()
    return im


def hamming(a: str, b: str) -> int:
    """Bit distance between two 64-hex-char hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
