"""Thumbnails for browsers: re-encoded from the original on every request, never stored.

A browser is never handed the original bytes a client sent (a polyglot stays inert once
it has been decoded to pixels and encoded again by us).
"""

from __future__ import annotations

import io

from PIL import Image

MIN_SIZE = 16


def make_thumbnail(data: bytes, size: int) -> tuple[bytes, str]:
    """Fit the first frame into size x size; PNG when it has alpha, else JPEG."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im.seek(0)
        frame = im.convert("RGBA") if _has_alpha(im) else im.convert("RGB")
    frame.thumbnail((size, size))
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, format="PNG", optimize=False)
        return out.getvalue(), "image/png"
    frame.save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
