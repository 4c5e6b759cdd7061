"""WebP: lossy, lossless, alpha, metadata and animated files pass; RIFF length, chunk tiling,
bitstream header, canvas and frame-cap faults are refused."""

from __future__ import annotations

import random
import struct

import pytest
from PIL import Image

from cache.intake.structure import Caps, Malformed, OverCap
from tests.support.structure_files import CAPS, cut_points, encode, photo, shape_of

BASE = photo((75, 49), seed=5)
ALPHA = BASE.convert("RGBA")
ALPHA.putalpha(Image.linear_gradient("L").resize(BASE.size))


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
        for kind, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def parse(data: bytes, start: int = 12) -> list[tuple[bytes, bytes]]:
    found, pos = [], start
    while pos < len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        found.append((data[pos : pos + 4], data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return found


def animated(count: int, lossless: bool = False) -> bytes:
    extra = [BASE.rotate(15 * i) for i in range(1, count)]
    return encode(BASE, "WEBP", save_all=True, append_images=extra, lossless=lossless)


@pytest.mark.parametrize(
    ("mode", "save", "first"),
    [
        ("RGB", {}, b"VP8 "),
        ("RGB", {"quality": 20}, b"VP8 "),
        ("RGB", {"lossless": True}, b"VP8L"),
        ("RGBA", {}, b"VP8X"),
        ("RGBA", {"alpha_quality": 50}, b"VP8X"),
        ("RGBA", {"lossless": True}, b"VP8L"),
        ("RGB", {"icc_profile": b"\x00" * 301, "exif": b"Exif\x00\x00II*\x00"}, b"VP8X"),
        ("RGBA", {"icc_profile": b"\x01" * 100, "lossless": True}, b"VP8X"),
    ],
    ids=str,
)
def test_still_variants_accepted(mode: str, save: dict[str, object], first: bytes) -> None:
    data = encode(ALPHA if mode == "RGBA" else BASE, "WEBP", **save)
    assert data[12:16] == first
    if mode == "RGBA" and not save.get("lossless"):
        assert b"ALPH" in data
    assert shape_of(data, "WEBP") == (75, 49, 1)


def test_uncompressed_alpha_sized_against_the_canvas() -> None:
    chunks = parse(encode(ALPHA, "WEBP"))
    at = [k for k, _ in chunks].index(b"ALPH")
    for size, ok in ((75 * 49, True), (75 * 49 - 1, False)):
        raw = [*chunks[:at], (b"ALPH", b"\x00" + bytes(size)), *chunks[at + 1 :]]
        if ok:
            assert shape_of(riff(raw), "WEBP") == (75, 49, 1)
        else:
            with pytest.raises(Malformed, match="alpha"):
                shape_of(riff(raw), "WEBP")


@pytest.mark.parametrize("lossless", [False, True])
def test_animated_accepted(lossless: bool) -> None:
    data = animated(4, lossless)
    assert b"ANMF" in data
    assert shape_of(data, "WEBP") == (75, 49, 4)


def test_random_sizes_accepted() -> None:
    rnd = random.Random(13)
    sizes = [(1, 1), (3000, 2000)] + [(rnd.randint(1, 900), rnd.randint(1, 900)) for _ in range(3)]
    for size in sizes:
        im = Image.linear_gradient("L").resize(size).convert("RGB") if size[0] > 1000 else None
        im = im or photo(size)
        for save in ({"quality": 60}, {"lossless": True}):
            assert shape_of(encode(im, "WEBP", method=0, **save), "WEBP") == (*size, 1)


@pytest.mark.parametrize("delta", [-2, -1, 1, 2, 1000])
def test_riff_length_mismatch_refused(delta: int) -> None:
    data = bytearray(encode(BASE, "WEBP"))
    struct.pack_into("<I", data, 4, len(data) - 8 + delta)
    with pytest.raises(Malformed, match="RIFF length"):
        shape_of(bytes(data), "WEBP")


@pytest.mark.parametrize("tail", [b"\x00", b"<html><script>alert(1)</script>"])
def test_trailing_data_refused_even_with_matching_riff_length(tail: bytes) -> None:
    data = encode(BASE, "WEBP")
    with pytest.raises(Malformed):
        shape_of(data + tail, "WEBP")
    patched = bytearray(data + tail)
    struct.pack_into("<I", patched, 4, len(patched) - 8)
    with pytest.raises(Malformed):
        shape_of(bytes(patched), "WEBP")


def test_truncated_everywhere_refused() -> None:
    for data in (encode(BASE, "WEBP"), encode(ALPHA, "WEBP"), animated(3)):
        for cut in cut_points(data):
            with pytest.raises(Malformed):
                shape_of(data[:cut], "WEBP")


def test_chunks_not_tiling_refused() -> None:
    chunks = parse(encode(ALPHA, "WEBP"))
    data = bytearray(riff(chunks))
    struct.pack_into("<I", data, 16, 11)  # VP8X claims 11 bytes: the next header is misread
    with pytest.raises(Malformed):
        shape_of(bytes(data), "WEBP")
    odd = riff([*chunks, (b"XTRA", b"abc")])
    assert shape_of(odd, "WEBP") == (75, 49, 1)  # unknown chunk, padded: fine
    with pytest.raises(Malformed):
        shape_of(odd[:-1], "WEBP")  # padding byte missing (RIFF length still says 'with')


def test_first_chunk_must_be_an_image_or_vp8x() -> None:
    chunks = parse(encode(BASE, "WEBP"))
    with pytest.raises(Malformed, match="first"):
        shape_of(riff([(b"EXIF", b"xx"), *chunks]), "WEBP")
    with pytest.raises(Malformed):
        shape_of(riff([*chunks, (b"EXIF", b"xx")]), "WEBP")  # simple file, extra chunk


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[offset : offset + len(value)] = value
    return bytes(out)


def test_vp8_header_faults_refused() -> None:
    data = encode(BASE, "WEBP")
    for offset, value in ((23, b"\x9d\x01\x2b"), (20, b"\x01"), (20, b"\x00\x00\xff")):
        with pytest.raises(Malformed):  # start code, inter frame, partition too long
            shape_of(_patch(data, offset, value), "WEBP")


def test_vp8l_header_faults_refused() -> None:
    data = encode(BASE, "WEBP", lossless=True)
    with pytest.raises(Malformed):
        shape_of(_patch(data, 20, b"\x2e"), "WEBP")
    bits = struct.unpack_from("<I", data, 21)[0] | (1 << 29)
    with pytest.raises(Malformed, match="version"):
        shape_of(_patch(data, 21, struct.pack("<I", bits)), "WEBP")


def test_canvas_bomb_refused() -> None:
    data = encode(ALPHA, "WEBP")
    big = (99_999).to_bytes(3, "little") * 2
    with pytest.raises(OverCap):
        shape_of(_patch(data, 24, big), "WEBP")


def test_canvas_and_bitstream_size_must_agree() -> None:
    data = encode(ALPHA, "WEBP")
    with pytest.raises(Malformed, match="size"):
        shape_of(_patch(data, 24, (80).to_bytes(3, "little")), "WEBP")


def test_animated_frame_cap_refused() -> None:
    data = animated(6)
    with pytest.raises(OverCap, match="frame"):
        shape_of(data, "WEBP", Caps(CAPS.max_side, CAPS.max_pixels, 5))


def test_animated_faults_refused() -> None:
    chunks = parse(animated(2))
    kinds = [k for k, _ in chunks]
    anmf = kinds.index(b"ANMF")
    frame = bytearray(chunks[anmf][1])
    frame[0:3] = (4).to_bytes(3, "little")  # x offset 8: the frame now leaves the canvas
    moved = [*chunks[:anmf], (b"ANMF", bytes(frame)), *chunks[anmf + 1 :]]
    with pytest.raises(Malformed, match="outside"):
        shape_of(riff(moved), "WEBP")
    no_anim = [c for c in chunks if c[0] != b"ANIM"]
    with pytest.raises(Malformed):
        shape_of(riff(no_anim), "WEBP")
    no_frames = [c for c in chunks if c[0] != b"ANMF"]
    with pytest.raises(Malformed, match="no frames"):
        shape_of(riff(no_frames), "WEBP")
    still = parse(encode(BASE, "WEBP"))
    with pytest.raises(Malformed):
        shape_of(riff([*chunks, *still]), "WEBP")  # a bare bitstream in an animation


def test_html_as_webp_refused() -> None:
    with pytest.raises(Malformed):
        shape_of(b"<!doctype html><html></html>", "WEBP")
