"""The PDQ core uploads are hashed with (`pdq_linear` and its C part `_pdqcore`) held
against Meta's C++.

test_pdq_hash.py checks the upload path against ThreatExchange's reference values; this
file checks the port's parts against literal transcriptions of the C++ (and the C part
against the port's numpy definition), and the whole against the C++ itself
(`pdq_native`) on a corpus of sizes, shapes and images.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from cache.intake import _pdqcore, pdq_linear, pdq_native
from cache.intake.digests import PDQ_HASH_BYTES
from cache.intake.pdq import (
    core_pixels,
    hamming,
    pdq_dihedral,
    reference_dihedral,
    reference_rgb,
)

DATA = Path(__file__).resolve().parent / "data" / "pdq"
BOUND = 10  # PDQ's rule for a correct implementation, where quality >= 80
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
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


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_quality_is_the_reference_metric(scale: float) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.normal(128, scale, (200, 190, 3)).clip(0, 255).astype(np.uint8)
    image, grade = pdq_linear.downsample(pixels)
    assert grade == _quality_loops(image)


def _downsample_numpy(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """What `_pdqcore` computes, in numpy: float32 luma, then the taps along rows, then
    along columns (the numpy core uploads used before the C one)."""
    rows, cols = rgb.shape[0], rgb.shape[1]
    luma = (rgb.reshape(-1, 3).astype(np.float32) @ LUMA).reshape(rows, cols)
    row_inputs, row_weights = pdq_linear.taps(rows)
    col_inputs, col_weights = pdq_linear.taps(cols)
    across = np.einsum("skc,sk->sc", luma[row_inputs], row_weights)
    out: npt.NDArray[np.float32] = np.einsum("sck,ck->sc", across[:, col_inputs], col_weights)
    return out


@pytest.mark.parametrize("side", SIDES[2:])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_the_c_core_computes_the_numpy_definition(side: int, channels: int) -> None:
    rng = np.random.default_rng(side * channels)
    pixels = rng.integers(0, 256, (side, side + 7, channels), dtype=np.uint8)
    rgb = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, :3]
    image, _ = pdq_linear.downsample(pixels[:, :, 0] if channels == 1 else pixels)
    expected = _downsample_numpy(np.ascontiguousarray(rgb))
    assert np.allclose(image, expected, rtol=1e-5, atol=1e-3)


def _modes() -> list[Image.Image]:
    rng = np.random.default_rng(5)
    colour = Image.fromarray(rng.integers(0, 256, (150, 170, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 256, (150, 170), dtype=np.uint8))
    alpha = colour.copy()
    alpha.putalpha(Image.fromarray(rng.integers(0, 256, (150, 170), dtype=np.uint8)))
    return [colour, grey, alpha, grey.convert("LA"), colour.convert("P"), grey.convert("I")]


def test_pixels_read_in_place_or_copied_give_the_same_image_as_rgb() -> None:
    """Uploads' pixels are read where Pillow keeps them (4 bytes a pixel, or 1 for grey),
    else copied out (`core_pixels`): the luma arithmetic is the same as for the HxWx3
    pixels `reference_rgb` makes, so the 64x64 image and quality are identical."""
    for im in _modes():
        expected = pdq_linear.downsample(reference_rgb(im))
        copied = pdq_linear.downsample(core_pixels(im))
        assert np.array_equal(copied[0], expected[0]) and copied[1] == expected[1], im.mode
        if im.mode in pdq_linear.IN_PLACE_MODES:
            in_place = pdq_linear.downsample_image(im)
            assert np.array_equal(in_place[0], expected[0]), im.mode
            assert in_place[1] == expected[1], im.mode
        else:
            with pytest.raises(ValueError):
                pdq_linear.downsample_image(im)
        assert pdq_dihedral(im) == pdq_linear.dihedral(reference_rgb(im)), im.mode


def test_a_pillow_without_the_arrow_export_gets_the_pixels_copied_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyproject allows Pillow 10.4, which has no `__arrow_c_array__` (11.2 added it)."""
    rgb = np.random.default_rng(4).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    expected = pdq_dihedral(Image.fromarray(rgb))
    monkeypatch.delattr(Image.Image, "__arrow_c_array__")
    im = Image.fromarray(rgb)
    with pytest.raises(ValueError):
        pdq_linear.downsample_image(im)
    assert pdq_dihedral(im) == expected


def test_an_image_in_several_blocks_is_copied_out() -> None:
    """Pillow keeps a large image's rows in blocks (16 MiB by default) and cannot export
    those in place; `pdq_dihedral` then copies the pixels out, with the same result."""
    rgb = np.random.default_rng(8).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    expected = pdq_dihedral(Image.fromarray(rgb))
    size = Image.core.get_block_size()
    Image.core.set_block_size(4096)
    try:
        im = Image.fromarray(rgb)
        with pytest.raises(ValueError):
            pdq_linear.downsample_image(im)
        assert pdq_dihedral(im) == expected
    finally:
        Image.core.set_block_size(size)


def test_the_c_core_refuses_arguments_that_do_not_fit() -> None:
    pixels = np.zeros((100, 100, 4), dtype=np.uint8)
    inputs, weights = pdq_linear.taps(100)
    out = np.empty((64, 64), dtype=np.float32)
    calls = [
        (pixels, 101, 100, 4, inputs, weights, inputs, weights, out),  # pixels too short
        (pixels, 100, 100, 2, inputs, weights, inputs, weights, out),  # no such stride
        (pixels, 100, 100, 4, inputs, weights, inputs, weights, out[:32]),  # out too short
        (pixels, 100, 100, 4, inputs[:32], weights, inputs, weights, out),  # taps apart
        (pixels, 50, 100, 4, inputs, weights, inputs, weights, out),  # a row past the image
        (pixels, 1 << 40, 1 << 40, 4, inputs, weights, inputs, weights, out),  # overflow
        (pixels, 100, 100, 9, inputs, weights, inputs, weights, out),  # stride over 8
    ]
    for call in calls:
        with pytest.raises(ValueError):
            _pdqcore.downsample(*call)
    with pytest.raises((ValueError, BufferError)):  # not C-contiguous
        _pdqcore.downsample(pixels[:, ::2], 100, 50, 4, inputs, weights, inputs, weights, out)
    for mode in ("I", "F", "I;16"):  # exported, but not uint8 pixels
        schema, array = Image.new(mode, (100, 100)).__arrow_c_array__()
        with pytest.raises(ValueError):
            _pdqcore.downsample_arrow(
                schema, array, 100, 100, inputs, weights, inputs, weights, out
            )
    schema, array = Image.new("L", (100, 99)).__arrow_c_array__()
    with pytest.raises(ValueError):  # fewer pixels than rows x cols
        _pdqcore.downsample_arrow(schema, array, 100, 100, inputs, weights, inputs, weights, out)
    with pytest.raises(ValueError):  # the capsules swapped
        _pdqcore.downsample_arrow(array, schema, 99, 100, inputs, weights, inputs, weights, out)


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
        ours, our_quality = pdq_dihedral(Image.fromarray(rgb))  # what uploads get
        theirs, their_quality = reference_dihedral(Image.fromarray(rgb))
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
    (uploads larger than that are resized to it first): hold it to what the hash allocates."""
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
