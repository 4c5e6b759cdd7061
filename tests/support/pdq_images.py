"""Images for the hash-list tests: ThreatExchange's bridge photo (vendored with Meta's
licence in tests/intake/data/pdq/), its rotated and mirrored copies, and images whose
PDQ hash is meaningless (flat, tiny). Plus the digests a list would carry for them."""

from __future__ import annotations

import hashlib
import io
from functools import cache
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "intake" / "data" / "pdq"
BRIDGE = "bridge-square-512x512.jpg"


def vendored(name: str = BRIDGE) -> bytes:
    return (DATA / name).read_bytes()


@cache
def reference_hashes() -> dict[str, tuple[str, int]]:
    """{file: (hash, quality)} from the reference hasher (expected.csv)."""
    rows = (line.split(",") for line in (DATA / "expected.csv").read_text().splitlines())
    return {r[0]: (r[1], int(r[2])) for r in rows if r and not r[0].startswith("#")}


def transposed(transpose: Image.Transpose, name: str = BRIDGE) -> bytes:
    """A rotated or mirrored copy, as a PNG (lossless: only the geometry changes)."""
    with Image.open(io.BytesIO(vendored(name))) as im:
        out = io.BytesIO()
        im.transpose(transpose).save(out, "PNG")
        return out.getvalue()


def flat_png(
    size: tuple[int, int] = (300, 200), colour: tuple[int, int, int] = (90, 120, 150)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def digest(kind: str, data: bytes) -> str:
    return hashlib.new(kind, data).hexdigest()
