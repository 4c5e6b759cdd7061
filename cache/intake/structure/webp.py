"""WebP: the RIFF chunks must tile the file exactly, and each bitstream header must agree.

Why: a RIFF container is self-describing, so the only ways to hide bytes in it are a
RIFF length that disagrees with the file or chunks that do not tile the body; both
are refused. Inside, the VP8/VP8L headers carry the real pixel size, which must match
the VP8X canvas (still) or the ANMF frame (animated) and fit inside the canvas, and
each ANMF is counted against the frame cap as it is met. The VP8/VP8L/ALPH payloads
themselves are compressed bitstreams and are not decoded.
"""

from __future__ import annotations

from .base import U16LE, U32LE, Caps, Data, Malformed, Shape, Steps, check_frames, check_size, need

Chunk = tuple[bytes, int, int]  # fourcc, payload start, payload end
_IMAGES = (b"VP8 ", b"VP8L")
_VP8_START = b"\x9d\x01\x2a"


def _u24(data: Data, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


def chunks(data: Data, start: int, end: int, steps: Steps) -> list[Chunk]:
    """The chunks in data[start:end], which they must fill exactly (odd sizes padded)."""
    found, pos = [], start
    while pos < end:
        steps.take()
        if pos + 8 > end:
            raise Malformed("a WebP chunk header is cut short")
        size = U32LE.unpack_from(data, pos + 4)[0]
        stop = pos + 8 + size
        if stop + (size & 1) > end:
            raise Malformed("a WebP chunk runs past its container")
        found.append((data[pos : pos + 4].tobytes(), pos + 8, stop))
        pos = stop + (size & 1)
    return found


def bitstream_size(data: Data, chunk: Chunk) -> tuple[int, int]:
    """Width and height from a VP8 (lossy) or VP8L (lossless) bitstream header."""
    kind, start, end = chunk
    if kind == b"VP8L":
        if end - start < 5 or data[start] != 0x2F:
            raise Malformed("the WebP lossless header is missing")
        bits = U32LE.unpack_from(data, start + 1)[0]
        if bits >> 29:
            raise Malformed("the WebP lossless version is unknown")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if end - start < 10 or data[start + 3 : start + 6].tobytes() != _VP8_START:
        raise Malformed("the WebP lossy header is missing")
    tag = _u24(data, start)
    if tag & 1 or (tag >> 1) & 7 > 3 or not (tag >> 4) & 1:
        raise Malformed("the WebP lossy frame is not a visible key frame")
    if tag >> 5 > end - start - 10:
        raise Malformed("the WebP lossy first partition runs past its chunk")
    return U16LE.unpack_from(data, start + 6)[0] & 0x3FFF, U16LE.unpack_from(data, start + 8)[
        0
    ] & 0x3FFF


def check_alpha(data: Data, chunk: Chunk, pixels: int) -> None:
    _, start, end = chunk
    if end <= start:
        raise Malformed("the WebP alpha chunk is empty")
    head = data[start]
    if head & 3 > 1 or (head >> 4) & 3 > 1 or head >> 6:
        raise Malformed("the WebP alpha chunk header is invalid")
    if head & 3 == 0 and end - start - 1 < pixels:
        raise Malformed("the WebP uncompressed alpha is shorter than the image")


def image(data: Data, parts: list[Chunk], width: int, height: int) -> None:
    """[ALPH] + VP8, or VP8L, then only unknown chunks, sized exactly width x height."""
    kinds = [kind for kind, _, _ in parts]
    at = 1 if kinds[:1] == [b"ALPH"] else 0
    if len(kinds) <= at or kinds[at] not in _IMAGES:
        raise Malformed("a WebP image has no bitstream where one is required")
    if any(kind in (*_IMAGES, b"ALPH", b"ANIM", b"ANMF", b"VP8X") for kind in kinds[at + 1 :]):
        raise Malformed("a WebP image has a second bitstream or a misplaced chunk")
    if bitstream_size(data, parts[at]) != (width, height):
        raise Malformed("a WebP bitstream size does not match its canvas or frame")
    if at and kinds[at] == b"VP8 ":
        check_alpha(data, parts[0], width * height)


def animation(
    data: Data, parts: list[Chunk], canvas: tuple[int, int], caps: Caps, steps: Steps
) -> int:
    """Check ANIM then the ANMF frames; return the frame count."""
    frames = 0
    anim = False
    for kind, start, end in parts:
        if kind == b"ANIM":
            if anim or frames or end - start < 6:
                raise Malformed("the WebP animation header is repeated, late or too short")
            anim = True
        elif kind == b"ANMF":
            if not anim or end - start < 16:
                raise Malformed("a WebP frame comes before the animation header or is too short")
            frames += 1
            check_frames(frames, caps)
            x, y = 2 * _u24(data, start), 2 * _u24(data, start + 3)
            width, height = _u24(data, start + 6) + 1, _u24(data, start + 9) + 1
            if x + width > canvas[0] or y + height > canvas[1]:
                raise Malformed("a WebP frame lies outside the canvas")
            image(data, chunks(data, start + 16, end, steps), width, height)
        elif kind in (*_IMAGES, b"ALPH", b"VP8X"):
            raise Malformed("an animated WebP has image data outside its frames")
    if not frames:
        raise Malformed("the animated WebP has no frames")
    return frames


def extended(data: Data, parts: list[Chunk], caps: Caps, steps: Steps) -> Shape:
    _, start, end = parts[0]
    if end - start != 10:
        raise Malformed("the WebP extended header has the wrong size")
    width, height = _u24(data, start + 4) + 1, _u24(data, start + 7) + 1
    check_size(width, height, caps)
    rest = parts[1:]
    if data[start] & 0x02:
        return Shape(width, height, animation(data, rest, (width, height), caps, steps))
    if any(kind in (b"ANIM", b"ANMF", b"VP8X") for kind, _, _ in rest):
        raise Malformed("a still WebP has animation chunks")
    first = next((i for i, (kind, _, _) in enumerate(rest) if kind in (b"ALPH", *_IMAGES)), 0)
    image(data, rest[first:], width, height)
    return Shape(width, height, 1)


def check(data: Data, caps: Caps) -> Shape:
    need(data, 12, "the RIFF header")
    if data[:4].tobytes() != b"RIFF" or data[8:12].tobytes() != b"WEBP":
        raise Malformed("the RIFF WebP header is missing")
    if U32LE.unpack_from(data, 4)[0] + 8 != len(data):
        raise Malformed("the RIFF length does not match the file length")
    steps = Steps(data)
    parts = chunks(data, 12, len(data), steps)
    kind = parts[0][0] if parts else b""
    if kind == b"VP8X":
        return extended(data, parts, caps, steps)
    if kind not in _IMAGES:
        raise Malformed("the first WebP chunk is not an image or extended header")
    width, height = bitstream_size(data, parts[0])
    check_size(width, height, caps)
    if len(parts) != 1:
        raise Malformed("a simple WebP has chunks after its bitstream")
    return Shape(width, height, 1)
