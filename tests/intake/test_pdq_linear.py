"""The numpy PDQ core (`pdq_linear`, what uploads are hashed with) held against Meta's C++.

test_pdq_hash.py checks the upload path against ThreatExchange's reference values; this
file checks the port's parts against literal transcriptions of the C++ and the whole
against the C++ itself (`pdq_native`) on a corpus of sizes, shapes and images.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from cache.intake import pdq_linear, pdq_native
from cache.intake.digests import PDQ_HASH_BYTES
from cache.intake.pdq import hamming, pdq_dihedral, reference_dihedral, reference_rgb

DATA = Path(__file__).resolve().parent / "data" / "pdq"
BOUND = 10  # PDQ's rule for a correct implementation, where quality >= 80
SIDES = [5, 6, 17, 63, 64, 65, 127, 128, 129, 182, 255, 256, 257, 300, 511, 512]


def _box_1d(values: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """`box1DFloat`, transcribed phase by phase (float64, so only the maths is compared)."""
    n, half = len(values), (window + 2) // 2
    out = np.zeros(n)
    total, size, left, right, at = 0.0, 0, 0, 0, 0
    for _ in range(half - 1):
        total, size, right = total + values[right], size + 1, right + 1
    for _ in range(window - half + 1):
        total, size, right = total + values[right], size + 1, right + 1
        out[at], at = total / size, at + 1
    for _ in range(n - window):
        total = total + values[right] - values[left]
        right, left = right + 1, left + 1
        out[at], at = total / size, at + 1
    for _ in range(half - 1):
        total, size, left = total - values[left], size - 1, left + 1
        out[at], at = total / size, at + 1
    return out


@pytest.mark.parametrize("side", SIDES)
def test_taps_are_the_box_filter_twice_then_the_decimation(side: int) -> None:
    values = np.random.default_rng(side).uniform(0, 255, side)
    window = (side + 127) // 128
    filtered = _box_1d(_box_1d(values, window), window)
    expected = filtered[[int(((s + 0.5) * side) / 64) for s in range(64)]]
    inputs, weights = pdq_linear.taps(side)
    assert inputs.min() >= 0 and inputs.max() < side
    got = (values[inputs] * weights.astype(np.float64)).sum(axis=1)
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-4)
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)


def _quality_loops(image: npt.NDArray[np.float32]) -> int:
    """`pdqImageDomainQualityMetric`, transcribed (float32 maths, C truncation)."""
    total = 0
    for a, b in ((image[:-1, :], image[1:, :]), (image[:, :-1], image[:, 1:])):
        for u, v in zip(a.ravel(), b.ravel(), strict=True):
            total += abs(int((np.float32(u - v) * np.float32(100)) / np.float32(255)))
    return min(100, total // 90)


def test_quality_is_the_reference_metric() -> None:
    rng = np.random.default_rng(3)
    for scale in (0.5, 3.0, 40.0):
        image = (rng.normal(128, scale, (64, 64))).astype(np.float32)
        assert pdq_linear.quality(image) == _quality_loops(image)


def _corpus() -> list[npt.NDArray[np.uint8]]:
    """Photos from ThreatExchange resized to many shapes, plus grey and noise images: 64
    px a side or more (below that, `pdq_dihedral` uses the C++: see the test after)."""
    photos = [Image.open(p).convert("RGB") for p in sorted(DATA.glob("*.jpg"))]
    rng = np.random.default_rng(11)
    out = []
    for n in range(90):
        height, width = (int(x) for x in rng.integers(64, 900, 2))
        out.append(reference_rgb(photos[n % len(photos)].resize((width, height))))
    for side in (64, 65, 182, 512):
        out.append(rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8))
        grey = rng.integers(0, 256, (side + 1, side), dtype=np.uint8)
        out.append(np.repeat(grey[:, :, None], 3, axis=2))
    return out


def test_port_agrees_with_meta_cpp_on_a_corpus() -> None:
    assert pdq_native.available(), "pdqhash's module no longer exports Meta's functions"
    identical, far = 0, []
    corpus = _corpus()
    for rgb in corpus:
        ours, our_quality = pdq_linear.dihedral(rgb)
        theirs, their_quality = pdq_native.dihedral(rgb)
        distances = [hamming(a, b) for a, b in zip(ours, theirs, strict=True)]
        assert abs(our_quality - their_quality) <= 1
        identical += distances == [0] * 8 and our_quality == their_quality
        if their_quality >= 80 and max(distances) > BOUND:
            far.append((rgb.shape, distances))
    assert far == []
    assert identical >= 0.95 * len(corpus), (identical, len(corpus))


@pytest.mark.parametrize("shape", [(5, 8), (8, 114), (122, 16), (63, 500), (40, 40)])
def test_under_64_px_a_side_uploads_get_the_cpp_hashes(shape: tuple[int, int]) -> None:
    """There the decimation repeats pixels and many coefficients are rounding noise: the
    port was 8-23 bits away on noise of these shapes, so the C++ hashes them."""
    rgb = np.random.default_rng(shape[0]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    assert pdq_dihedral(image) == pdq_native.dihedral(rgb) == reference_dihedral(image)


@pytest.mark.parametrize("shape", [(4, 100), (100, 4), (1, 1)])
def test_images_under_five_pixels_hash_to_zeros_like_the_reference(
    shape: tuple[int, int],
) -> None:
    rgb = np.full((*shape, 3), 200, dtype=np.uint8)
    assert pdq_linear.dihedral(rgb) == pdq_native.dihedral(rgb) == (["0" * 64] * 8, 0)


def test_the_decode_budget_covers_the_hashs_own_arrays() -> None:
    """`decoded_pdq_bytes` charges PDQ_HASH_BYTES for the float arrays of a 512x512 hash
    (uploads larger than that are resized to it first): hold it to what numpy allocates."""
    rgb = np.random.default_rng(9).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    pdq_linear.dihedral(rgb)  # taps for 512 built outside the measurement
    tracemalloc.start()
    try:
        pdq_linear.dihedral(rgb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= PDQ_HASH_BYTES
    assert peak >= PDQ_HASH_BYTES // 2  # the figure tracks what is measured
