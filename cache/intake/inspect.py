"""Turn untrusted bytes into facts about an allowed image, or into the right 4xx.

The format comes from the bytes, never from a filename or Content-Type. Then, by
`limits.verify`: "structure" (the default) walks the container without decoding pixels
(`structure`: chunk CRCs, inflated size, markers, nothing after the end), "decode" does
that and then has Pillow decode the pixels, within the decode budget. The caps are
checked from the header before any bulk work, so a decompression bomb costs a header
parse. The SHA-256 is taken in the same worker hop as the check.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

from PIL import Image, ImageFile

from ..config import LimitsConfig
from ..errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from ..item import ImageFacts
from . import structure
from .digests import Wanted, decoded_pdq_bytes, with_digests
from .work import WorkPool

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
ImageFile.LOAD_TRUNCATED_IMAGES = False
Data = bytes | bytearray | memoryview


def sniff(data: Data) -> str | None:
    """The image format the bytes start with, or None (text, PDF, SVG... all land here)."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "BMP"
    return None


def decoded_bytes(media_type: str, width: int, height: int, size: int | None = None) -> int:
    """What decoding one frame holds at most: 4 bytes a pixel (RGBA), a JPEG decoded at
    1/8 scale (`draft`) an eighth of that each way. `size` (a thumbnail's side) caps what
    a JPEG draft needs."""
    if media_type == "image/jpeg":
        scale = 8 if size is None else max(1, min(8, min(width, height) // max(size, 1)))
        return 4 * max(1, width // scale) * max(1, height // scale)
    return 4 * width * height


class Inspector:
    """The CPU part: the structural check and the SHA-256, and the optional decode."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.caps = structure.Caps(limits.max_side, limits.max_pixels, limits.max_frames)
        # Pillow's own bomb check agrees with ours; anything it flags is refused below.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels

    def inspect(self, data: Data) -> ImageFacts:
        """Format, structure, caps and SHA-256: no pixel is decoded."""
        fmt = sniff(data)
        if fmt is None or fmt not in self.limits.formats:
            allowed = ", ".join(self.limits.formats)
            raise UnsupportedFormat(f"the bytes are not an image in an allowed format ({allowed})")
        try:
            shape = structure.check(data, fmt, self.caps)
        except structure.OverCap as exc:
            raise ImageTooLarge(str(exc)) from None
        except structure.Malformed as exc:
            raise InvalidImage(f"the {fmt} data is malformed: {exc}") from None
        return ImageFacts(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            media_type=MEDIA_TYPES[fmt],
            width=shape.width,
            height=shape.height,
            frames=shape.frames,
        )

    def decode(self, data: Data, facts: ImageFacts) -> None:
        """Have Pillow decode the pixels (every frame's first pass: for a JPEG, every
        entropy-coded block at 1/8 scale). InvalidImage when it does not decode."""
        fmt = next(name for name, media in MEDIA_TYPES.items() if media == facts.media_type)
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                if fmt == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"over the {self.limits.max_pixels}-pixel cap") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise InvalidImage(f"the {fmt} data does not decode ({type(exc).__name__})") from None


class InspectorPool:
    """Runs the inspector in the request work pool: nothing of it on the event loop, and a
    decode only within the decode budget."""

    def __init__(self, limits: LimitsConfig, pool: WorkPool) -> None:
        self.inspector = Inspector(limits)
        self.pool = pool
        self._decode = limits.verify == "decode"
        self.wanted: Callable[[], Wanted] = Wanted  # the blocklist's: which hashes lists need
        self.lookup: Callable[[ImageFacts], ImageFacts] | None = None  # its PDQ lookup

    async def inspect(self, data: Data) -> ImageFacts:
        """The structural check, then the decode (`verify = "decode"`; PDQ's own decode
        when PDQ is on) and the digests the hash lists need, in one trip to the pool when
        their decoded bytes fit the budget at once; a step that does not fit waits for
        budget here, on the loop."""
        want = self.wanted()
        steps = _Steps(self, data, want)
        await self.pool.run(steps.run)
        facts = steps.facts
        assert facts is not None  # run() raised otherwise
        if steps.decoded is False:
            cost = self._decode_cost(facts)
            await self.pool.run_within(cost, self.inspector.decode, data, facts)
        if steps.digested is False:
            cost, fmt = _digest_cost(facts, want), _format_of(facts)
            facts = await self.pool.run_within(
                cost, with_digests, facts, data, fmt, want, self.lookup
            )
        return facts

    def _decode_cost(self, facts: ImageFacts) -> int:
        return decoded_bytes(facts.media_type, facts.width, facts.height)


def _format_of(facts: ImageFacts) -> str:
    return next(name for name, media in MEDIA_TYPES.items() if media == facts.media_type)


def _digest_cost(facts: ImageFacts, want: Wanted) -> int:
    """MD5 and SHA-1 decode nothing; PDQ decodes the image (`decoded_pdq_bytes`)."""
    return decoded_pdq_bytes(facts.width, facts.height) if want.pdq else 0


class _Steps:
    """One upload's checks as run in a work thread: each step after the structural check
    runs there only if its decoded bytes fit the budget now. `decoded` and `digested`:
    None (not wanted), True (done), False (left to the loop, which waits for budget)."""

    def __init__(self, owner: InspectorPool, data: Data, want: Wanted) -> None:
        self._owner, self._data, self._want = owner, data, want
        self.facts: ImageFacts | None = None
        self.decoded: bool | None = None
        self.digested: bool | None = None

    def run(self) -> None:
        owner, data, want = self._owner, self._data, self._want
        facts = self.facts = owner.inspector.inspect(data)
        pool = owner.pool
        # PDQ decodes the whole image (a JPEG at full scale): with PDQ on, that decode is
        # the validity check too, so an image is decoded once.
        if owner._decode and not want.pdq:
            self.decoded = pool.run_if_fits(
                owner._decode_cost(facts), owner.inspector.decode, data, facts
            )
            if not self.decoded:
                self.digested = False if want.any else None
                return  # the digests come after the decode, as before
        if want.any:
            self.digested = pool.run_if_fits(_digest_cost(facts, want), self._digest, facts)

    def _digest(self, facts: ImageFacts) -> None:
        owner = self._owner
        self.facts = with_digests(facts, self._data, _format_of(facts), self._want, owner.lookup)
