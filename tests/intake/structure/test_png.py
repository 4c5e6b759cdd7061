"""PNG: every Pillow-written variant passes; every framing, CRC and size fault is refused."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from cache.intake.structure import Caps, Malformed, OverCap, png
from tests.support.structure_files import (
    CAPS,
    adam7_stream,
    chunk,
    cut_points,
    encode,
    flat,
    ihdr,
    interlaced_grey,
    photo,
    png_chunks,
    png_file,
    reframe_png,
    shape_of,
)

BASE = photo((67, 41), seed=2)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"])
def test_pillow_modes_accepted(mode: str) -> None:
    im = BASE.convert("L").convert(mode) if mode == "I;16" else BASE.convert(mode)
    assert shape_of(encode(im, "PNG"), "PNG") == (67, 41, 1)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_low_bit_palette_accepted(bits: int) -> None:
    im = BASE.convert("P", palette=Image.Palette.ADAPTIVE, colors=1 << bits)
    data = encode(im, "PNG", bits=bits)
    assert data[24] == bits  # IHDR bit depth really is low
    assert shape_of(data, "PNG")[0] == 67


def test_16_bit_rgb_hand_built() -> None:
    raw = b"".join(b"\x00" + bytes(range(6)) * 5 for _ in range(4))
    data = png_file(ihdr(5, 4, 16, 2), chunk(b"IDAT", zlib.compress(raw)))
    assert shape_of(data, "PNG") == (5, 4, 1)
    Image.open(io.BytesIO(data)).load()


@pytest.mark.parametrize(("w", "h"), [(1, 1), (2, 2), (3, 5), (8, 8), (9, 9), (17, 3), (33, 20)])
@pytest.mark.parametrize("depth", [1, 2, 4, 8, 16])
def test_interlaced_accepted_and_matches_pillow(w: int, h: int, depth: int) -> None:
    data, rows = interlaced_grey(w, h, depth)
    assert shape_of(data, "PNG") == (w, h, 1)
    with Image.open(io.BytesIO(data)) as im:  # the hand-built file is a real Adam7 PNG
        assert im.info.get("interlace") == 1
        decoded = flat(im)
    if depth in (8, 16):
        assert decoded == [v for row in rows for v in row]
    else:  # Pillow scales low-bit grey to 0..255
        assert decoded == [v * 255 // ((1 << depth) - 1) for row in rows for v in row]


def test_interlaced_size_formula() -> None:
    header = png.Header(10, 7, 24, 2, True)
    passes = [(2, 1), (1, 1), (3, 1), (2, 2), (5, 2), (5, 4), (10, 3)]  # (cols, rows) by hand
    assert png.raw_size(header) == sum(r * (1 + c * 3) for c, r in passes)
    assert png.raw_size(png.Header(1, 1, 1, 0, True)) == 2  # only the first pass has pixels


@pytest.mark.parametrize("interlaced", [False, True])
def test_idat_one_byte_short_or_long_refused(interlaced: bool) -> None:
    rows = [[(x * y) % 256 for x in range(9)] for y in range(9)]
    raw = adam7_stream(rows, 8) if interlaced else b"".join(b"\x00" + bytes(r) for r in rows)
    header = ihdr(9, 9, 8, 0, int(interlaced))
    assert shape_of(png_file(header, chunk(b"IDAT", zlib.compress(raw))), "PNG") == (9, 9, 1)
    for body in (raw[:-1], raw + b"\x00"):
        with pytest.raises(Malformed, match=r"shorter|longer"):
            shape_of(png_file(header, chunk(b"IDAT", zlib.compress(body))), "PNG")


def test_random_sizes_accepted() -> None:
    rnd = random.Random(10)
    sizes = [(1, 1), (3000, 2000)] + [(rnd.randint(1, 900), rnd.randint(1, 700)) for _ in range(4)]
    for size in sizes:
        im = Image.linear_gradient("L").resize(size) if size[0] > 1000 else photo(size)
        for mode in ("RGB", "L", "P"):
            assert shape_of(encode(im.convert(mode), "PNG"), "PNG") == (*size, 1)


@pytest.mark.parametrize("interlaced", [False, True])
@pytest.mark.parametrize("width", [2100, 1023])  # 1023: row 64's filter byte is at 65536
@pytest.mark.parametrize("bad_row", [0, 1, 37, 63, 64, 99])
def test_unknown_row_filter_type_refused(interlaced: bool, width: int, bad_row: int) -> None:
    """Filter bytes are checked in every 64 KiB window, including rows that straddle two."""
    rows = [[(x + y) % 256 for x in range(width)] for y in range(100)]
    raw = bytearray(
        adam7_stream(rows, 8) if interlaced else b"".join(b"\x00" + bytes(r) for r in rows)
    )
    header = ihdr(width, 100, 8, 0, int(interlaced))
    assert shape_of(png_file(header, chunk(b"IDAT", zlib.compress(bytes(raw)))), "PNG")
    layout = png.row_layout(png.Header(width, 100, 8, 0, interlaced))
    starts = [start + k * size for start, size, count in layout for k in range(count)]
    raw[starts[bad_row]] = 5
    with pytest.raises(Malformed, match="filter"):
        shape_of(png_file(header, chunk(b"IDAT", zlib.compress(bytes(raw)))), "PNG")


def test_apng_accepted_with_frame_count() -> None:
    frames = [BASE.rotate(a) for a in (90, 180, 270)]
    data = encode(BASE, "PNG", save_all=True, append_images=frames, duration=50)
    assert b"acTL" in data and b"fdAT" in data
    assert shape_of(data, "PNG") == (67, 41, 4)


def test_apng_over_frame_cap() -> None:
    frames = [BASE.rotate(a) for a in range(1, 6)]
    data = encode(BASE, "PNG", save_all=True, append_images=frames)
    with pytest.raises(OverCap):
        shape_of(data, "PNG", Caps(10_000, 10**8, 5))


def _apng() -> bytes:
    return encode(BASE, "PNG", save_all=True, append_images=[BASE.rotate(90)])


def test_apng_faults_refused() -> None:
    data = _apng()
    actl = struct.pack(">II", 3, 0)  # claims a frame that is not there
    with pytest.raises(Malformed):
        shape_of(reframe_png(data, {b"acTL": actl}), "PNG")
    fctl = [c for c in png_chunks(data) if c[0] == b"fcTL"][1]
    body = bytearray(data[fctl[1] + 8 : fctl[1] + 8 + fctl[2]])
    body[0:4] = struct.pack(">I", 7)  # sequence number out of order
    bad = data[: fctl[1]] + chunk(b"fcTL", bytes(body)) + data[fctl[1] + 12 + fctl[2] :]
    with pytest.raises(Malformed):
        shape_of(bad, "PNG")
    body[0:4] = data[fctl[1] + 8 : fctl[1] + 12]
    body[12:16] = struct.pack(">I", 60)  # x offset pushes the frame off the canvas
    bad = data[: fctl[1]] + chunk(b"fcTL", bytes(body)) + data[fctl[1] + 12 + fctl[2] :]
    with pytest.raises(Malformed):
        shape_of(bad, "PNG")
    iend = len(data) - 12
    frame_without_control = data[: fctl[1]] + data[fctl[1] + 12 + fctl[2] : iend]
    with pytest.raises(Malformed, match="before its frame control"):
        shape_of(frame_without_control + chunk(b"IEND", b""), "PNG")
    fdat = next(c for c in png_chunks(data) if c[0] == b"fdAT")
    flipped = bytearray(data)
    flipped[fdat[1] + 12 + fdat[2] - 1] ^= 1  # fdAT CRC
    with pytest.raises(Malformed):
        shape_of(bytes(flipped), "PNG")


@pytest.mark.parametrize("kind", [b"IHDR", b"PLTE", b"tEXt", b"IDAT", b"IEND"])
def test_bad_crc_refused(kind: bytes) -> None:
    parts = [
        chunk(b"PLTE", bytes(12)),
        chunk(b"tEXt", b"k\x00v"),
        chunk(b"IDAT", zlib.compress(bytes(20))),
    ]
    data = bytearray(png_file(ihdr(4, 4, 8, 3), *parts))
    assert shape_of(bytes(data), "PNG") == (4, 4, 1)
    found = next(c for c in png_chunks(bytes(data)) if c[0] == kind)
    data[found[1] + 8 + found[2]] ^= 0x40
    with pytest.raises(Malformed, match="CRC"):
        shape_of(bytes(data), "PNG")


def test_truncated_everywhere_refused() -> None:
    data = encode(photo((120, 90)), "PNG")
    for cut in cut_points(data):
        with pytest.raises(Malformed):
            shape_of(data[:cut], "PNG")


@pytest.mark.parametrize("tail", [b"\x00", b"PK\x03\x04" + bytes(40), b"<html><script>x</script>"])
def test_data_after_iend_refused(tail: bytes) -> None:
    with pytest.raises(Malformed, match="follow"):
        shape_of(encode(BASE, "PNG") + tail, "PNG")


def test_missing_iend_refused() -> None:
    with pytest.raises(Malformed):
        shape_of(encode(BASE, "PNG")[:-12], "PNG")


def _raw_rgb(w: int, h: int) -> bytes:
    return b"".join(b"\x00" + bytes(range(3 * w)) for _ in range(h))


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("short inflate", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 3)))]),
        ("long inflate", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 5)))]),
        ("cut zlib", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4))[:-5])]),
        ("zlib then junk", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)) + b"x")]),
        ("not zlib", [ihdr(4, 4), chunk(b"IDAT", b"\x00" * 20)]),
        ("no IDAT", [ihdr(4, 4)]),
        ("IDAT then junk IDAT", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4))),
                                 chunk(b"IDAT", b"junk")]),
        ("split IDAT run", [ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4))[:10]),
                            chunk(b"tEXt", b"k\x00v"),
                            chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4))[10:])]),
        ("bad depth", [ihdr(4, 4, 4, 2), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("bad colour", [ihdr(4, 4, 8, 5), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("interlace 2", [ihdr(4, 4, 8, 2, 2), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("IHDR 12 bytes", [chunk(b"IHDR", bytes(12)), chunk(b"IDAT", b"")]),
        ("zero width", [ihdr(0, 4), chunk(b"IDAT", zlib.compress(b""))]),
        ("palette missing", [ihdr(4, 4, 8, 3), chunk(b"IDAT", zlib.compress(bytes(20)))]),
        ("palette in grey", [ihdr(4, 4, 8, 0), chunk(b"PLTE", bytes(6)),
                             chunk(b"IDAT", zlib.compress(bytes(20)))]),
        ("palette 4 bytes", [ihdr(4, 4, 8, 3), chunk(b"PLTE", bytes(4)),
                             chunk(b"IDAT", zlib.compress(bytes(20)))]),
        ("unknown critical", [ihdr(4, 4), chunk(b"ABCD", b""),
                              chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("non-letter type", [ihdr(4, 4), chunk(b"ab1d", b""),
                             chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("header not first", [chunk(b"tEXt", b"k\x00v"), ihdr(4, 4),
                              chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
        ("two headers", [ihdr(4, 4), ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4)))]),
    ],
)  # fmt: skip
def test_structural_faults_refused(name: str, parts: list[bytes]) -> None:
    with pytest.raises(Malformed):
        shape_of(png_file(parts[0], *parts[1:]), "PNG")


def test_iend_with_data_refused() -> None:
    good = png_file(ihdr(4, 4), chunk(b"IDAT", zlib.compress(_raw_rgb(4, 4))))
    assert shape_of(good, "PNG") == (4, 4, 1)
    with pytest.raises(Malformed):
        shape_of(good[:-12] + chunk(b"IEND", b"x"), "PNG")


def test_idat_split_into_tiny_chunks_and_ancillary_accepted() -> None:
    stream = zlib.compress(_raw_rgb(30, 20))
    idats = [chunk(b"IDAT", stream[i : i + 3]) for i in range(0, len(stream), 3)]
    data = png_file(ihdr(30, 20), chunk(b"teSt", b"anything"), *idats, chunk(b"IDAT", b""))
    assert shape_of(data, "PNG") == (30, 20, 1)


def test_bomb_header_refused_without_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise AssertionError("inflate started")

    monkeypatch.setattr(png, "Inflater", boom)
    one_pixel = zlib.compress(b"\x00\x00")
    data = png_file(ihdr(100_000, 100_000, 1, 0), chunk(b"IDAT", one_pixel))
    with pytest.raises(OverCap):
        shape_of(data, "PNG")
    with pytest.raises(OverCap):  # pixel cap with both sides under the side cap
        shape_of(png_file(ihdr(9000, 9000, 1, 0), chunk(b"IDAT", one_pixel)), "PNG")


def test_inflate_stops_one_byte_past_the_declared_size() -> None:
    """A small header over a stream that inflates to 200 MB: refused in milliseconds."""
    compressor = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    stream = b"".join(compressor.compress(zeros) for _ in range(200)) + compressor.flush()
    data = png_file(ihdr(100, 100, 8, 0), chunk(b"IDAT", stream))
    started = time.perf_counter()
    with pytest.raises(Malformed, match="longer"):
        shape_of(data, "PNG")
    assert time.perf_counter() - started < 0.05


def test_svg_and_html_as_png_refused() -> None:
    for body in (b'<svg xmlns="http://www.w3.org/2000/svg"/>', b"<!doctype html><p>x</p>"):
        with pytest.raises(Malformed):
            shape_of(body, "PNG")
    with pytest.raises(Malformed):
        shape_of(b"\x89PNG\r\n\x1a\n", "PNG")


def _stream(rows: bytes) -> bytes:
    return zlib.compress(rows)


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("not deflate (method 15)", lambda z: b"\x7f" + z[1:]),
        ("bad header check bits", lambda z: z[:1] + bytes([z[1] ^ 1]) + z[2:]),
        ("preset dictionary", lambda z: z[:1] + bytes([z[1] | 0x20]) + z[2:]),
        ("trailer cut short", lambda z: z[:-1]),
        ("a byte after the trailer", lambda z: z + b"\x00"),
    ],
)
def test_zlib_wrapper_is_checked(name: str, mangle: Callable[[bytes], bytes]) -> None:
    rows = b"\x00" + bytes(3 * 4)
    data = png_file(ihdr(4, 1), chunk(b"IDAT", mangle(_stream(rows))))
    with pytest.raises(Malformed):
        png.check(memoryview(data), CAPS)


def test_adler_split_over_idat_chunks_is_accepted() -> None:
    stream = _stream(b"\x00" + bytes(3 * 4))
    parts = [stream[:1], stream[1:-3], stream[-3:]]  # header and trailer cut across chunks
    data = png_file(ihdr(4, 1), *(chunk(b"IDAT", part) for part in parts))
    assert png.check(memoryview(data), CAPS).width == 4
