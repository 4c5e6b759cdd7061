"""JPEG: Pillow's baseline, progressive, restart, grey, CMYK, EXIF/ICC output passes;
segment, table, scan and trailing-byte faults are refused."""

from __future__ import annotations

import random
import re
import struct

import pytest
from PIL import Image

from cache.intake.structure import Caps, Malformed, OverCap, jpeg
from tests.support.structure_files import cut_points, encode, photo, shape_of

BASE = photo((83, 61), seed=3)


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset of 0xFF, total length incl. marker) for header segments up to SOS."""
    found, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        length = struct.unpack_from(">H", data, pos + 2)[0]
        found.append((marker, pos, 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return found


def drop(data: bytes, marker: int) -> bytes:
    for m, pos, size in segments(data):
        if m == marker:
            return data[:pos] + data[pos + size :]
    raise AssertionError("marker not found")


def exif_blob() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    exif[0x0110] = "Model"
    return exif.tobytes()


@pytest.mark.parametrize(
    "save",
    [
        {},
        {"quality": 95},
        {"quality": 10},
        {"progressive": True},
        {"optimize": True},
        {"optimize": True, "progressive": True},
        {"subsampling": 0},
        {"subsampling": 1},
        {"subsampling": 2},
        {"restart_marker_blocks": 1},
        {"restart_marker_blocks": 5},
        {"restart_marker_rows": 1},
        {"restart_marker_blocks": 3, "progressive": True},
        {"exif": "EXIF"},
        {"icc_profile": "ICC"},
        {"icc_profile": "BIG_ICC"},
        {"comment": "hello"},
    ],
    ids=str,
)
def test_pillow_rgb_variants_accepted(save: dict[str, object]) -> None:
    extra = {"EXIF": exif_blob(), "ICC": b"\x00" * 600, "BIG_ICC": bytes(range(256)) * 400}
    options = {k: extra.get(v, v) if isinstance(v, str) else v for k, v in save.items()}
    data = encode(BASE, "JPEG", **options)
    if any(k.startswith("restart") for k in save):
        assert b"\xff\xdd" in data and re.search(rb"\xff[\xd0-\xd7]", data)
    assert shape_of(data, "JPEG") == (83, 61, 1)


@pytest.mark.parametrize("mode", ["L", "CMYK", "YCbCr"])
@pytest.mark.parametrize("progressive", [False, True])
def test_other_colour_spaces_accepted(mode: str, progressive: bool) -> None:
    data = encode(BASE.convert(mode), "JPEG", progressive=progressive, restart_marker_rows=1)
    assert shape_of(data, "JPEG") == (83, 61, 1)


def test_random_sizes_with_restarts_accepted() -> None:
    rnd = random.Random(11)
    sizes = [(1, 1), (3000, 2000), (8, 8), (17, 9)]
    sizes += [(rnd.randint(1, 900), rnd.randint(1, 700)) for _ in range(8)]
    for at, size in enumerate(sizes):
        im = Image.linear_gradient("L").resize(size).convert("RGB") if at == 1 else photo(size)
        save = {
            "subsampling": at % 3,
            "progressive": at % 2 == 1,
            "restart_marker_blocks": (0, 1, 2, 7)[at % 4],
        }
        for mode in ("RGB", "L"):
            data = encode(im.convert(mode), "JPEG", **save)
            assert shape_of(data, "JPEG") == (*size, 1), (size, save, mode)


def test_truncated_everywhere_refused() -> None:
    for save in ({}, {"progressive": True}, {"restart_marker_blocks": 2}):
        data = encode(photo((160, 120)), "JPEG", **save)
        for cut in cut_points(data):
            with pytest.raises(Malformed):
                shape_of(data[:cut], "JPEG")


@pytest.mark.parametrize("tail", [b"\x00", b"\xff\xd9", b"<html><script>alert(1)</script>"])
def test_bytes_after_eoi_refused(tail: bytes) -> None:
    with pytest.raises(Malformed, match="follow"):
        shape_of(encode(BASE, "JPEG") + tail, "JPEG")


def test_missing_eoi_refused() -> None:
    with pytest.raises(Malformed):
        shape_of(encode(BASE, "JPEG")[:-2], "JPEG")


@pytest.mark.parametrize("marker", [0xC4, 0xDB, 0xC0])
def test_missing_tables_or_frame_refused(marker: int) -> None:
    data = encode(BASE, "JPEG")
    assert marker in [m for m, _, _ in segments(data)]
    with pytest.raises(Malformed):
        shape_of(drop(data, marker), "JPEG")


def test_dht_between_progressive_scans_accepted() -> None:
    data = encode(BASE, "JPEG", progressive=True)
    assert data.count(b"\xff\xc4") > 1 and data.count(b"\xff\xda") > 1
    assert shape_of(data, "JPEG") == (83, 61, 1)


def _restart_file() -> bytes:
    return encode(BASE, "JPEG", restart_marker_blocks=1)


def test_restart_markers_out_of_order_refused() -> None:
    data = bytearray(_restart_file())
    scan = data.index(b"\xff\xda")
    first = [m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", data[scan:])][:2]
    a, b = (scan + x + 1 for x in first)
    data[a], data[b] = data[b], data[a]
    with pytest.raises(Malformed, match="order"):
        shape_of(bytes(data), "JPEG")


def test_restart_marker_dropped_refused() -> None:
    data = _restart_file()
    scan = data.index(b"\xff\xda")
    spots = [scan + m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", data[scan:])]
    last = spots[-1]  # removing the last keeps the cycle in order: only the count is wrong
    with pytest.raises(Malformed, match="number"):
        shape_of(data[:last] + data[last + 2 :], "JPEG")


def test_restart_marker_without_interval_refused() -> None:
    with pytest.raises(Malformed, match="interval"):
        shape_of(drop(_restart_file(), 0xDD), "JPEG")


def test_stray_marker_inside_scan_refused() -> None:
    data = bytearray(encode(BASE, "JPEG"))
    at = data.index(b"\xff\xda") + 40
    data[at : at + 2] = b"\xff\x01"
    with pytest.raises(Malformed):
        shape_of(bytes(data), "JPEG")


def _patched_sof(**fields: int) -> bytes:
    data = bytearray(encode(BASE, "JPEG"))
    _, pos, _ = next(s for s in segments(bytes(data)) if s[0] == 0xC0)
    layout = {"precision": (4, "B"), "height": (5, ">H"), "width": (7, ">H"), "count": (9, "B")}
    for name, value in fields.items():
        offset, fmt = layout[name]
        struct.pack_into(fmt, data, pos + offset, value)
    return bytes(data)


def test_frame_header_faults() -> None:
    with pytest.raises(Malformed, match="DNL"):
        shape_of(_patched_sof(height=0), "JPEG")
    with pytest.raises(Malformed):
        shape_of(_patched_sof(width=0), "JPEG")
    with pytest.raises(Malformed):
        shape_of(_patched_sof(precision=9), "JPEG")
    with pytest.raises(Malformed):
        shape_of(_patched_sof(count=2), "JPEG")
    with pytest.raises(OverCap):
        shape_of(_patched_sof(width=60000, height=60000), "JPEG")
    with pytest.raises(OverCap):
        shape_of(_patched_sof(width=9000, height=9000), "JPEG")


def test_second_frame_header_refused() -> None:
    data = encode(BASE, "JPEG")
    _, pos, size = next(s for s in segments(data) if s[0] == 0xC0)
    with pytest.raises(Malformed, match="more than one"):
        shape_of(data[: pos + size] + data[pos : pos + size] + data[pos + size :], "JPEG")


def test_scan_header_faults() -> None:
    data = encode(BASE, "JPEG")
    _, pos, _ = next(s for s in segments(data) if s[0] == 0xDA)
    for offset, value in ((5, 0x77), (6, 0x33), (12, 5), (13, 0x10)):
        bad = bytearray(data)
        bad[pos + offset] = value  # unknown component, undefined tables, Se=5, Ah=1
        with pytest.raises(Malformed):
            shape_of(bytes(bad), "JPEG")


def test_bad_huffman_table_refused() -> None:
    data = bytearray(encode(BASE, "JPEG"))
    _, pos, _ = next(s for s in segments(bytes(data)) if s[0] == 0xC4)
    data[pos + 5] = 3  # three 1-bit codes cannot exist
    with pytest.raises(Malformed, match="Huffman"):
        shape_of(bytes(data), "JPEG")


def test_garbage_after_magic_refused() -> None:
    rnd = random.Random(5)
    for _ in range(20):
        with pytest.raises(Malformed):
            shape_of(b"\xff\xd8\xff\xe0" + rnd.randbytes(2000), "JPEG")


def test_fill_bytes_before_markers_accepted() -> None:
    data = encode(BASE, "JPEG")
    eoi = len(data) - 2
    assert shape_of(data[:eoi] + b"\xff\xff\xff" + data[eoi:], "JPEG") == (83, 61, 1)
    sos = data.index(b"\xff\xda")
    assert shape_of(data[:sos] + b"\xff\xff" + data[sos:], "JPEG") == (83, 61, 1)


def test_dimension_cap_is_checked_at_the_frame_header() -> None:
    data = encode(photo((300, 200)), "JPEG")
    with pytest.raises(OverCap):
        shape_of(data, "JPEG", Caps(max_side=299, max_pixels=10**9, max_frames=1))
    with pytest.raises(OverCap):
        shape_of(data, "JPEG", Caps(max_side=1000, max_pixels=59_999, max_frames=1))


def test_scan_without_coded_data_refused() -> None:
    data = encode(BASE, "JPEG")
    _, pos, size = next(s for s in segments(data) if s[0] == 0xDA)
    with pytest.raises(Malformed, match="no coded data"):
        shape_of(data[: pos + size] + b"\xff\xd9", "JPEG")


def test_arithmetic_frame_needs_no_huffman_tables() -> None:
    """DHT is required for Huffman processes only (the coded data itself is not decoded)."""
    data = bytearray(drop(encode(BASE.convert("L"), "JPEG"), 0xC4))
    with pytest.raises(Malformed, match="Huffman"):
        shape_of(bytes(data), "JPEG")
    _, pos, _ = next(s for s in segments(bytes(data)) if s[0] == 0xC0)
    data[pos + 1] = 0xC9  # SOF9: sequential, arithmetic-coded
    assert shape_of(bytes(data), "JPEG") == (83, 61, 1)


@pytest.mark.parametrize("window", [1 << 20, 61, 7])
@pytest.mark.parametrize("progressive", [False, True])
def test_dense_restarts_past_the_one_by_one_limit(
    progressive: bool, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 256 restart markers in a scan: the tail is checked in bulk, with the same rules,
    including when the bulk windows are tiny and split the data next to markers."""
    monkeypatch.setattr(jpeg, "_WINDOW", window)
    data = encode(photo((400, 240)), "JPEG", restart_marker_blocks=1, progressive=progressive)
    assert shape_of(data, "JPEG") == (400, 240, 1)
    scan = data.index(b"\xff\xda")
    spots = [scan + m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", data[scan:])]
    assert len(spots) > 300
    swapped = bytearray(data)
    a, b = spots[280] + 1, spots[281] + 1
    swapped[a], swapped[b] = swapped[b], swapped[a]
    with pytest.raises(Malformed, match="order"):
        shape_of(bytes(swapped), "JPEG")
    eight_fewer = data[: spots[290]] + data[spots[298] :]  # the cycle still lines up
    with pytest.raises(Malformed, match="number"):
        shape_of(eight_fewer, "JPEG")
