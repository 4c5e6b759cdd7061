"""PDQ's downsample and DCT as small linear maps: the reference's hashes, 6-40x faster.

Why: Meta's C++ core (`pdq_native`) box-filters the whole luma image four times (two
Jarosz passes along rows, two along columns, the column passes striding through memory)
and then keeps 64x64 samples of the result: 0.47 ms at 182x182 and 3.3 ms at 512x512
here, more than the decode of a 100 KB PNG. Every step before the DCT is linear, and the
passes along rows and along columns commute, so each of the 64 samples along a side is
a fixed weighted sum of a few neighbouring pixels: sample r of the decimation applied to
the box filter twice (`taps`), the same in each direction. A 182-px side needs 3 taps,
a 512-px side 7. Taps are computed once per side length (at most 512 of them: the
reference first resizes larger images to 512x512).

The weighted sums, with the luma and the quality metric, run in C (`_pdqcore.c`, built
by `make install`): 23 us at 182x182 on four bytes a pixel (the luma loop then runs in
vector registers; three bytes a pixel: 40 us), where the same steps as a dozen numpy
operations took about 110 us. The C reads the pixels where Pillow keeps them (its
Arrow export), so no copy of the image is made. The DCT and the 8 variants stay in
numpy (12 us). A whole hash: 38-45 us at 182x182 against 270-430 us for the C++, and
130-190 us at 512x512 against 4.3-6.3 ms.

The rest is the reference's arithmetic, step for step: float32 luma 0.299/0.587/0.114,
the DCT matrix of `dct64To16`, the quality metric's float32 gradient truncated to int,
the 8 dihedral variants as the sign and transpose patterns of `dct16OriginalTo*`, and a
bit set where a coefficient exceeds the lower median (what Torben's selection returns
for 256 values). What differs is only rounding: the C++ keeps a running float32 sum
along each row; here each sample is a float32 weighted sum. On ThreatExchange's
reference images the hashes and qualities are identical; tests/intake/test_pdq_linear.py
holds the two cores against each other on a corpus of sizes and shapes (PDQ's own rule
for a correct implementation: within 10 bits where quality >= 80). Below 64 px a side
the C++'s own rounding decides many bits (`pdq.pdq_dihedral` sends those to the C++).

The GIL: the C part lets it go; between it and the numpy operations around it a worker
holds it, as any Python work in the pool does. Measured with a loop that yields without
pause while a thread hashes 182-px images: gaps between loop passes p99 54-62 us
(Meta's C++ through ctypes: 38-41 us), at most 4.3-7.0 ms (4.3-7.9 ms), the
interpreter's switch interval.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from PIL import Image

from . import _pdqcore

SIDE = 64  # the reference's downsample
MIN_SIDE = 5  # the reference's MIN_HASHABLE_DIM: smaller images hash to zeros, quality 0
BITS = 256
_ZERO_HEX = "0" * 64
# Pillow modes whose memory holds R, G, B in the first 3 of 4 bytes a pixel, or grey in 1.
IN_PLACE_MODES = ("RGB", "RGBX", "RGBA", "L")

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
I32Array = npt.NDArray[np.int32]


def _dct_matrix() -> F32Array:
    """`dct_matrix_64`: 16x64, sqrt(2/64) * cos(pi/128 * (i+1) * (2j+1)), in float32."""
    i = np.arange(16, dtype=np.float64)[:, None]
    j = np.arange(SIDE, dtype=np.float64)[None, :]
    scale = np.float32(np.sqrt(2.0 / SIDE))
    cosines = np.cos((np.pi / 2.0 / SIDE) * (i + 1) * (2 * j + 1)).astype(np.float32)
    return (scale * cosines).astype(np.float32)


def _dihedral_maps() -> tuple[IntArray, F32Array]:
    """Where each bit of each variant reads the 16x16 DCT, and with which sign.

    Variants in the reference order: original, rotate 90, 180, 270, flip X, flip Y,
    flip +1, flip -1; each is `sign * A` (transposed for the odd rotations and the
    diagonal flips), as the C++ `dct16OriginalTo*` functions write them. Bits are
    stored 255 first, the order `Hash256::format` prints, so packing needs no reversal.
    """
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    one = np.ones((16, 16))
    odd_i, odd_j = np.where(i & 1, 1.0, -1.0), np.where(j & 1, 1.0, -1.0)
    odd_sum = np.where((i + j) & 1, -1.0, 1.0)
    plan = [
        (one, False),
        (odd_j, True),
        (odd_sum, False),
        (odd_i, True),
        (odd_i, False),
        (odd_j, False),
        (one, True),
        (odd_sum, True),
    ]
    index = np.arange(BITS).reshape(16, 16)
    reads = np.stack([index.T if flip else index for _, flip in plan]).reshape(8, BITS)
    signs = np.stack([sign.T if flip else sign for sign, flip in plan]).reshape(8, BITS)
    return reads[:, ::-1].copy(), signs[:, ::-1].astype(np.float32)


_DCT = _dct_matrix()
_DCT_T = np.ascontiguousarray(_DCT.T)
_READS, _SIGNS = _dihedral_maps()


def _window(side: int) -> int:
    """`computeJaroszFilterWindowSize(side, 64)`."""
    return (side + 2 * SIDE - 1) // (2 * SIDE)


def _box_spans(side: int, window: int) -> list[tuple[int, int]]:
    """`box1DFloat`: output o is the mean of inputs first..last (the window, cut at the
    edges: its four phases grow it from `half` inputs and shrink it back at the end)."""
    half = (window + 2) // 2
    before, after = window - half, half - 1
    return [(max(0, o - before), min(side - 1, o + after)) for o in range(side)]


@functools.lru_cache(maxsize=1024)
def taps(side: int) -> tuple[I32Array, F32Array]:
    """(inputs, weights), each 64 x K: sample s of one direction is
    sum_k weights[s, k] * pixel[inputs[s, k]], i.e. row `decimateFloat` reads of the box
    filter applied twice (`PDQ_NUM_JAROSZ_XY_PASSES`). Weights are worked out in float64.

    Built in Python the first time a side length is seen: 0.3-1.1 ms (GIL held), once
    per side; all 449 sides of 64-512 px take 0.33 s, and the cache holds them all."""
    spans = _box_spans(side, _window(side))
    samples: list[dict[int, float]] = []
    for s in range(SIDE):
        first, last = spans[int(((s + 0.5) * side) / SIDE)]
        weights: dict[int, float] = {}
        for middle in range(first, last + 1):  # the second pass reads the first's outputs
            low, high = spans[middle]
            share = 1.0 / ((last - first + 1) * (high - low + 1))
            for pixel in range(low, high + 1):
                weights[pixel] = weights.get(pixel, 0.0) + share
        samples.append(weights)
    width = max(max(w) - min(w) + 1 for w in samples)
    starts = np.array([min(min(w), side - width) for w in samples], dtype=np.int32)
    inputs = starts[:, None] + np.arange(width, dtype=np.int32)[None, :]
    table = np.zeros((SIDE, width), dtype=np.float64)
    for s, w in enumerate(samples):
        for pixel, weight in w.items():
            table[s, pixel - starts[s]] = weight
    return inputs, table.astype(np.float32)


def downsample(pixels: npt.NDArray[np.uint8]) -> tuple[F32Array, int]:
    """The reference's 64x64 float32 luma image (Jarosz filter, then decimation) and its
    quality, by `_pdqcore` (C, the GIL released) from C-contiguous HxW grey or HxWxC
    pixels with R, G, B first."""
    rows, cols = pixels.shape[0], pixels.shape[1]
    stride = 1 if pixels.ndim == 2 else pixels.shape[2]
    image = np.empty((SIDE, SIDE), dtype=np.float32)
    grade = _pdqcore.downsample(pixels, rows, cols, stride, *taps(rows), *taps(cols), image)
    return image, grade


def downsample_image(im: Image.Image) -> tuple[F32Array, int]:
    """`downsample` of an RGB, RGBX, RGBA or L image, read where Pillow keeps it (four
    bytes a pixel, R, G, B first, or one): Pillow exports its own memory through the
    Arrow C data interface, which saves a copy of every pixel (at 512x512, 1 MiB that
    the service maps and unmaps: a page fault per 4 KiB). ValueError when Pillow cannot
    export the image in place (its rows in several blocks, or a Pillow before 11.2)."""
    if im.mode not in IN_PLACE_MODES:
        raise ValueError(f"mode {im.mode} is not read in place")
    export = getattr(im, "__arrow_c_array__", None)
    if export is None:
        raise ValueError("this Pillow does not export images (Arrow)")
    cols, rows = im.size
    schema, array = export()
    image = np.empty((SIDE, SIDE), dtype=np.float32)
    grade = _pdqcore.downsample_arrow(schema, array, rows, cols, *taps(rows), *taps(cols), image)
    return image, grade


def dihedral(rgb: npt.NDArray[np.uint8]) -> tuple[list[str], int]:
    """The 8 dihedral hashes (reference order, reference hex) and the quality of pixels
    as `downsample` takes them, already resized as the reference does (`pdq.reference_rgb`)."""
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        return [_ZERO_HEX] * 8, 0
    return _hashes(*downsample(rgb))


def image_dihedral(im: Image.Image) -> tuple[list[str], int]:
    """`dihedral` of an image already resized as the reference does (`pdq.cimg_resize`),
    its pixels read in place (`downsample_image`, which says when that fails)."""
    if min(im.size) < MIN_SIDE:
        return [_ZERO_HEX] * 8, 0
    return _hashes(*downsample_image(im))


def _hashes(image: F32Array, grade: int) -> tuple[list[str], int]:
    coefficients = (_DCT @ image @ _DCT_T).ravel()
    variants = coefficients[_READS] * _SIGNS
    medians = np.partition(variants, BITS // 2 - 1, axis=1)[:, BITS // 2 - 1 : BITS // 2]
    text = np.packbits(variants > medians, axis=1).tobytes().hex()
    return [text[n * 64 : (n + 1) * 64] for n in range(8)], grade
