"""The public entry point: dispatch, input types, error classes and messages, and fuzzing
every format to prove nothing but Malformed / OverCap ever escapes."""

from __future__ import annotations

import io
import zipfile
import zlib

import pytest
from PIL import Image

from cache.intake.structure import FORMATS, Caps, Malformed, OverCap, Shape, check
from tests.support.structure_files import CAPS, chunk, encode, ihdr, mutations, photo, png_file

BASE = photo((48, 32), seed=7)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def sample(fmt: str) -> bytes:
    if fmt == "GIF":
        first, *rest = [BASE.rotate(a).quantize(8 + a % 50) for a in (0, 90, 180)]
        return encode(first, "GIF", save_all=True, append_images=rest)
    if fmt == "WEBP":
        return encode(BASE, "WEBP", save_all=True, append_images=[BASE.rotate(90)])
    if fmt == "JPEG":
        return encode(BASE, "JPEG", progressive=True, restart_marker_blocks=2)
    if fmt == "PNG":
        return encode(BASE, "PNG", save_all=True, append_images=[BASE.rotate(90)])
    return encode(BASE.convert("P"), "BMP")


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("evil.html", HTML)
    return out.getvalue()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_returns_shape_for_every_input_type(fmt: str) -> None:
    data = sample(fmt)
    frames = {"GIF": 3, "WEBP": 2, "PNG": 2}.get(fmt, 1)
    expected = Shape(48, 32, frames)
    assert check(data, fmt, CAPS) == expected
    assert check(bytearray(data), fmt, CAPS) == expected
    assert check(memoryview(data), fmt, CAPS) == expected
    assert check(memoryview(b"xx" + data)[2:], fmt, CAPS) == expected


def test_bytearray_is_released_after_check() -> None:
    data = bytearray(sample("PNG"))
    check(data, "PNG", CAPS)
    data += b"resizable again"  # a leaked memoryview export would make this raise
    with pytest.raises(Malformed):
        check(data, "PNG", CAPS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("body", [b"", HTML, SVG, PDF, b"\x00" * 64], ids=lambda b: repr(b[:5]))
def test_non_images_refused_as_malformed(fmt: str, body: bytes) -> None:
    with pytest.raises(Malformed) as caught:
        check(body, fmt, CAPS)
    assert "script" not in str(caught.value)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("tail", ["zip", "html", "same image"])
def test_polyglots_refused_as_trailing_data(fmt: str, tail: str) -> None:
    data = sample(fmt)
    extra = {"zip": zip_bytes(), "html": HTML, "same image": data}[tail]
    with pytest.raises(Malformed) as caught:
        check(data + extra, fmt, CAPS)
    assert "script" not in str(caught.value) and "evil" not in str(caught.value)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_other_format_under_the_wrong_label_refused(fmt: str) -> None:
    for other in FORMATS - {fmt}:
        with pytest.raises(Malformed):
            check(sample(other), fmt, CAPS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutations_raise_only_the_two_classes(fmt: str) -> None:
    """Random byte changes: each still parses or is refused with our errors, never another.

    Damage inside compressed pixel data is invisible without a decoder (except in PNG,
    where every byte is under a CRC), so only PNG must refuse every changed file.
    """
    original = sample(fmt)
    for mutant in mutations(original, 300, seed=len(fmt)):
        try:
            shape = check(mutant, fmt, CAPS)
        except (Malformed, OverCap) as exc:
            assert str(exc) and str(exc).isascii() and len(str(exc)) < 120
        else:
            assert fmt != "PNG" or mutant == original
            assert 1 <= shape.width <= CAPS.max_side and shape.frames <= CAPS.max_frames


def test_caps_are_inclusive() -> None:
    data = encode(photo((300, 200)), "PNG")
    assert check(data, "PNG", Caps(300, 60_000, 1)) == Shape(300, 200, 1)
    with pytest.raises(OverCap):
        check(data, "PNG", Caps(299, 60_000, 1))
    with pytest.raises(OverCap):
        check(data, "PNG", Caps(300, 59_999, 1))


def test_service_corpus_bombs() -> None:
    """The service's own hostile corpus: tiny PNG bombs and a GIF screen bomb."""
    caps = Caps(max_side=10_000, max_pixels=50_000_000, max_frames=100)
    for width, height in ((20_000, 20_000), (10_000, 10_000)):
        row = b"\x00" * (1 + (width + 7) // 8)
        compressor = zlib.compressobj(9)
        stream = b"".join(compressor.compress(row) for _ in range(2000)) + compressor.flush()
        bomb = png_file(ihdr(width, height, 1, 0), chunk(b"IDAT", stream))
        with pytest.raises(OverCap):
            check(bomb, "PNG", caps)
    gif = bytearray(encode(Image.new("L", (8, 8)), "GIF"))
    gif[6:10] = b"\xff\xff\xff\xff"
    with pytest.raises(OverCap):
        check(bytes(gif), "GIF", caps)


def test_unknown_format_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="format") as caught:
        check(b"II*\x00", "TIFF", CAPS)
    assert not isinstance(caught.value, (Malformed, OverCap))


def _tiny_structure_floods() -> dict[str, bytes]:
    png = encode(BASE, "PNG")
    jpeg = encode(BASE, "JPEG")
    gif = encode(BASE, "GIF")
    webp = encode(BASE.convert("RGBA"), "WEBP", lossless=True, exif=b"Exif\x00\x00")
    count = 20_000
    return {
        "PNG": png[:33] + chunk(b"teXt", b"") * count + png[33:],
        "JPEG": jpeg[:2] + b"\xff\xfe\x00\x02" * count + jpeg[2:],
        "GIF": gif[:-1] + b"\x21\xfe" + b"\x01a" * count + b"\x00\x3b",
        "WEBP": webp + b"XTRA\x00\x00\x00\x00" * count,
    }


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_floods_of_tiny_structures_refused_quickly(fmt: str) -> None:
    """Each chunk costs a Python step; thousands of empty ones would buy CPU time."""
    data = _tiny_structure_floods()[fmt]
    if fmt == "WEBP":
        fixed = bytearray(data)
        fixed[4:8] = (len(data) - 8).to_bytes(4, "little")
        data = bytes(fixed)
    with pytest.raises(Malformed, match="tiny structures"):
        check(data, fmt, CAPS)


def test_many_real_idat_chunks_are_within_the_step_budget() -> None:
    raw = b"".join(b"\x00" + bytes(range(256)) * 3 for _ in range(2000))
    stream = zlib.compress(raw, 0)  # stored: ~770 bytes per row, one IDAT per row
    idats = [chunk(b"IDAT", stream[i : i + 770]) for i in range(0, len(stream), 770)]
    assert len(idats) > 1000
    data = png_file(ihdr(256, 2000, 8, 2), *idats)
    assert check(data, "PNG", CAPS) == Shape(256, 2000, 1)
