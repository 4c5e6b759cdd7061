"""The hashes of an upload beyond its SHA-256: MD5 and SHA-1 (when lists of that kind are
in force) and the PDQ perceptual hash (when `blocklist.pdq_mode` is on).

Why here and not in the blocklist: these are computed off the event loop, in the same
worker hop as the inspector's checks, from bytes the inspector already vetted (format
sniffed, caps checked), so a decode here cannot be a bomb. Why only when wanted: MD5 and
SHA-1 cost a pass over the bytes, PDQ a full decode; an upload pays only for the lists
that can refuse it. `want` comes from `Blocklist.wanted()` for each upload, so an MD5 added
at run time is checked from the next upload on.

PDQ decodes the whole image (frame 0, EXIF orientation not applied, as the reference
does). A JPEG the validity check decoded at 1/8 scale cannot be reused: those are not the
reference's pixels. `decoded` lets a caller that already decoded at full size share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import ImageTooLarge, InvalidImage
from ..item import ImageFacts
from .pdq import pdq_dihedral

Data = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Wanted:
    """Which extra hashes an upload needs now."""

    md5: bool = False
    sha1: bool = False
    pdq: bool = False

    @property
    def any(self) -> bool:
        return self.md5 or self.sha1 or self.pdq


@dataclass(frozen=True, slots=True)
class Digests:
    md5: str | None = None
    sha1: str | None = None
    pdq: str | None = None  # 64 hex chars, as Meta's pdq-photo-hasher prints it
    pdq_quality: int | None = None  # 0..100
    pdq_variants: tuple[str, ...] = ()  # the 8 dihedral hashes, [0] == pdq

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for `ImageFacts` (`ImageFacts(..., **digests.fields())`)."""
        return {
            "md5": self.md5,
            "sha1": self.sha1,
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
            "pdq_variants": self.pdq_variants,
        }


# The hash's own arrays at 512x512 at their peak: `_pdqcore`'s 65 rows of float32
# across the image, then a few 64x64 and 16x16 arrays (149,776 bytes by tracemalloc).
PDQ_HASH_BYTES = 65 * 512 * 4 + 64 * 1024


def decoded_pdq_bytes(width: int, height: int) -> int:
    """Decoded bytes a PDQ hash holds at most for one image: RGBA at full size, the
    512x512 copy the reference resize makes, its pixels copied out for the hash (RGBX)
    and the hash's own arrays (for a decode budget)."""
    return 4 * width * height + (4 + 4) * 512 * 512 + PDQ_HASH_BYTES


def extra_digests(
    data: Data, fmt: str, want: Wanted, decoded: Image.Image | None = None
) -> Digests:
    """MD5/SHA-1/PDQ of `data` (a vetted image in format `fmt`), as far as `want` says.

    InvalidImage (422) when the pixels do not decode: a structural check passes data whose
    entropy-coded pixels are corrupt, and such an image cannot be hashed."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if want.md5 else None
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest() if want.sha1 else None
    if not want.pdq:
        return Digests(md5=md5, sha1=sha1)
    try:
        if decoded is None:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                im.load()
                hashes, quality = pdq_dihedral(im)
        else:
            hashes, quality = pdq_dihedral(decoded)
    except Image.DecompressionBombError:
        raise ImageTooLarge("over the pixel cap") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImage(f"the {fmt} data does not decode ({type(exc).__name__})") from None
    return Digests(md5, sha1, hashes[0], quality, tuple(hashes))


def with_digests(
    facts: ImageFacts,
    data: Data,
    fmt: str,
    want: Wanted,
    lookup: Callable[[ImageFacts], ImageFacts] | None = None,
) -> ImageFacts:
    """`facts` with the extra digests, and the PDQ list lookup done here (`lookup`, the
    blocklist's `look_up_pdq`): this runs in a worker thread, and a lookup among 10^6
    listed hashes costs about a millisecond that the event loop would otherwise pay."""
    facts = dataclasses.replace(facts, **extra_digests(data, fmt, want).fields())
    return lookup(facts) if lookup is not None and want.pdq else facts
