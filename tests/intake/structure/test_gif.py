"""GIF: single, animated (local palettes), interlaced and large files pass; block, frame-cap,
screen-cap and trailer faults are refused."""

from __future__ import annotations

import io
import random
import struct

import pytest
from PIL import Image

from cache.intake.structure import Caps, Malformed, OverCap
from cache.intake.structure.base import Steps
from cache.intake.structure.gif import skip_sub_blocks
from tests.support.structure_files import CAPS, cut_points, encode, photo, shape_of

BASE = photo((71, 53), seed=4)


def frames(count: int, size: tuple[int, int] = (16, 12)) -> list[Image.Image]:
    """Frames with different palettes, so Pillow writes a local colour table for each."""
    return [photo(size, seed=i).quantize(colors=4 + 7 * i % 200) for i in range(count)]


def animated(count: int, **save: object) -> bytes:
    first, *rest = frames(count)
    return encode(first, "GIF", save_all=True, append_images=rest, duration=20, loop=0, **save)


def first_descriptor(data: bytes) -> int:
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    while data[pos] == 0x21:
        view = memoryview(data)
        pos = skip_sub_blocks(view, pos + 2, Steps(view))
    assert data[pos] == 0x2C
    return pos


def test_single_frame_accepted() -> None:
    assert shape_of(encode(BASE, "GIF"), "GIF") == (71, 53, 1)
    assert shape_of(encode(BASE.convert("L"), "GIF"), "GIF") == (71, 53, 1)
    assert shape_of(encode(BASE.convert("1"), "GIF"), "GIF") == (71, 53, 1)


def test_interlaced_and_transparent_accepted() -> None:
    data = encode(BASE, "GIF", interlace=True, transparency=0, comment=b"made by a test")
    assert shape_of(data, "GIF") == (71, 53, 1)


def test_animated_with_local_palettes_accepted() -> None:
    data = animated(6)
    with Image.open(io.BytesIO(data)) as im:
        assert getattr(im, "n_frames", 1) == 6
    assert shape_of(data, "GIF") == (16, 12, 6)


def test_gif87a_accepted() -> None:
    data = encode(Image.new("P", (5, 5)), "GIF")
    assert data[:6] == b"GIF87a"
    assert shape_of(data, "GIF") == (5, 5, 1)


def test_large_noise_gif_with_long_sub_block_runs_accepted() -> None:
    rnd = random.Random(9)
    im = Image.frombytes("P", (700, 500), rnd.randbytes(700 * 500))
    im.putpalette(bytes(rnd.randbytes(768)))
    data = encode(im, "GIF")
    assert len(data) > 256 * 256 * 3  # well over one strided window of full sub-blocks
    assert shape_of(data, "GIF") == (700, 500, 1)
    for cut in cut_points(data, 60):
        with pytest.raises(Malformed):
            shape_of(data[:cut], "GIF")


def test_random_sizes_accepted() -> None:
    rnd = random.Random(12)
    sizes = [(1, 1), (3000, 2000)] + [(rnd.randint(1, 900), rnd.randint(1, 900)) for _ in range(3)]
    for size in sizes:
        im = Image.linear_gradient("L").resize(size) if size[0] > 1000 else photo(size)
        assert shape_of(encode(im, "GIF"), "GIF") == (*size, 1)


def test_more_frames_than_cap_refused() -> None:
    data = animated(8)
    with pytest.raises(OverCap, match="frame"):
        shape_of(data, "GIF", Caps(CAPS.max_side, CAPS.max_pixels, 7))
    assert shape_of(data, "GIF", Caps(CAPS.max_side, CAPS.max_pixels, 8))[2] == 8


def test_logical_screen_bomb_refused() -> None:
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    with pytest.raises(OverCap):
        shape_of(bytes(data), "GIF")


def test_frame_reaching_past_caps_refused() -> None:
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    at = first_descriptor(bytes(data))
    data[at + 1 : at + 3] = struct.pack("<H", 65000)  # left offset
    with pytest.raises(OverCap):
        shape_of(bytes(data), "GIF")
    data[at + 1 : at + 3] = struct.pack("<H", 30)  # past the screen, under the caps: grown
    assert shape_of(bytes(data), "GIF") == (38, 8, 1)


@pytest.mark.parametrize("tail", [b"\x00", b"\x3b", b"<html><script>alert(1)</script>"])
def test_data_after_trailer_refused(tail: bytes) -> None:
    with pytest.raises(Malformed, match="follow"):
        shape_of(encode(BASE, "GIF") + tail, "GIF")


def test_missing_trailer_and_truncation_refused() -> None:
    data = animated(3)
    with pytest.raises(Malformed):
        shape_of(data[:-1], "GIF")
    for cut in cut_points(data):
        with pytest.raises(Malformed):
            shape_of(data[:cut], "GIF")


@pytest.mark.parametrize("code_size", [0, 1, 9, 12])
def test_lzw_code_size_out_of_range_refused(code_size: int) -> None:
    data = bytearray(encode(BASE, "GIF"))
    at = first_descriptor(bytes(data))
    packed = data[at + 9]
    table = 3 << ((packed & 7) + 1) if packed & 0x80 else 0
    data[at + 10 + table] = code_size
    with pytest.raises(Malformed, match="LZW"):
        shape_of(bytes(data), "GIF")


def _block_fault(name: str) -> bytes:
    good = encode(Image.new("P", (4, 4)), "GIF")
    at = first_descriptor(good)
    return {
        "no frames": good[:at] + b"\x3b",
        "unknown block": good[:at] + b"\x99" + good[at:],
        "bad graphic control size": good[:at] + b"\x21\xf9\x05" + bytes(5) + b"\x00" + good[at:],
        "zero-width frame": good[: at + 5] + b"\x00\x00" + good[at + 7 :],
        "empty image data": good[: at + 11] + b"\x00\x3b",
        "not a GIF": b"GIF88a" + good[6:],
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "no frames",
        "unknown block",
        "bad graphic control size",
        "zero-width frame",
        "empty image data",
        "not a GIF",
    ],
)
def test_block_faults_refused(name: str) -> None:
    with pytest.raises(Malformed):
        shape_of(_block_fault(name), "GIF")


def test_extensions_accepted() -> None:
    good = encode(Image.new("P", (4, 4)), "GIF")
    at = first_descriptor(good)
    comment = b"\x21\xfe\x05hello\x00"
    app = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    text = b"\x21\x01\x0c" + bytes(12) + b"\x02hi\x00"
    assert shape_of(good[:at] + comment + app + text + good[at:], "GIF") == (4, 4, 1)
