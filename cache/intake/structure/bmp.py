"""BMP: the headers must agree with each other and with the file's exact length.

Why exact: a BMP has no checksum and no end marker, so the only defence against
truncation and appended payloads (polyglots) is arithmetic. bfSize must equal the file
length (writers that leave it 0 are refused: the field is mandatory and every encoder we
accept fills it). The pixel array of an uncompressed bitmap is exactly stride x rows
from bfOffBits, and only a few bytes of padding may follow it, plus a V5 header's
embedded or linked colour profile. RLE streams are matched against the opcode grammar
by one compiled regex ending at the end-of-bitmap code, so they need no Python loop.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .base import U32LE, Caps, Data, Malformed, Shape, check_size, need

_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_CORE_BITS = frozenset({1, 4, 8, 24})
_BITS = frozenset({1, 4, 8, 16, 24, 32})
_SLACK = 4  # some writers pad the file to a multiple of 4; more than that is a payload
_INFO = struct.Struct("<iiHHIIiiI")  # width .. colours used, after the header size
_V5_PROFILE = struct.Struct("<4s52xII")  # CSType, skip to ProfileData, ProfileSize
_PROFILE_TYPES = (b"DEBM", b"KNIL")  # 'MBED' and 'LINK' stored little-endian


def _rle_grammar(bytes_for: dict[int, int]) -> re.Pattern[bytes]:
    """Encoded runs, end-of-line, delta and absolute runs (padded to even), then EOB."""
    absolute = b"|".join(re.escape(bytes([n])) + b".{%d}" % size for n, size in bytes_for.items())
    return re.compile(
        rb"(?:(?:[\x01-\xff].)++|\x00(?:\x00|\x02..|" + absolute + rb"))*+\x00\x01", re.DOTALL
    )


def _even(n: int) -> int:
    return n + (n & 1)


_RLE8 = _rle_grammar({n: _even(n) for n in range(3, 256)})
_RLE4 = _rle_grammar({n: _even((n + 1) // 2) for n in range(3, 256)})


@dataclass(frozen=True, slots=True)
class Info:
    width: int
    height: int  # negative = rows stored top-down
    planes: int
    bits: int
    compression: int
    colours: int  # biClrUsed; 0 = the full 2**bits palette
    header: int  # DIB header size

    @property
    def palette_bytes(self) -> int:
        if self.bits > 8:
            return 0  # any optional palette sits in the gap before bfOffBits
        entry = 3 if self.header == 12 else 4
        return (self.colours or 1 << self.bits) * entry

    @property
    def mask_bytes(self) -> int:
        if self.header != 40 or self.compression not in (3, 6):
            return 0
        return 12 if self.compression == 3 else 16


def read_info(data: Data, header: int) -> Info:
    if header == 12:
        width, height, planes, bits = struct.unpack_from("<4H", data, 18)
        return Info(width, height, planes, bits, 0, 0, header)
    width, height, planes, bits, comp, _, _, _, colours = _INFO.unpack_from(data, 18)
    return Info(width, height, planes, bits, comp, colours, header)


def check_info(info: Info) -> None:
    if info.planes != 1:
        raise Malformed("the BMP plane count is not 1")
    if info.bits not in (_CORE_BITS if info.header == 12 else _BITS):
        raise Malformed("the BMP bit depth is not supported")
    allowed = {0: True, 1: info.bits == 8, 2: info.bits == 4}
    if info.header not in (12, 64):  # OS/2 headers give 3 and 6 other meanings
        allowed |= {3: info.bits in (16, 32), 6: info.bits in (16, 32)}
    if not allowed.get(info.compression, False):
        raise Malformed("the BMP compression does not match its bit depth or is unsupported")
    if info.height < 0 and info.compression in (1, 2):
        raise Malformed("a run-length-encoded BMP cannot be stored top-down")
    if info.bits <= 8 and info.colours > 1 << info.bits:
        raise Malformed("the BMP palette has more entries than its bit depth allows")


def pixel_end(data: Data, info: Info, offset: int) -> int:
    """Where the pixel data ends: stride x rows, or the end-of-bitmap code of an RLE stream."""
    if info.compression in (1, 2):
        found = (_RLE8 if info.compression == 1 else _RLE4).match(data, offset)
        if found is None:
            raise Malformed("the BMP run-length data is invalid or has no end code")
        return found.end()
    stride = (info.bits * info.width + 31) // 32 * 4
    end = offset + stride * abs(info.height)
    need(data, end, "the BMP pixel array")
    return end


def profile_end(data: Data, info: Info) -> int:
    """End of a V5 header's embedded or linked colour profile, 0 if there is none."""
    if info.header != 124:
        return 0
    kind: bytes
    start: int
    size: int
    kind, start, size = _V5_PROFILE.unpack_from(data, 70)
    if kind not in _PROFILE_TYPES:
        return 0
    start += 14
    if start < 14 + info.header or start + size > len(data):
        raise Malformed("the BMP colour profile lies outside the file")
    return start + size


def check(data: Data, caps: Caps) -> Shape:
    need(data, 18, "the BMP file header")
    if data[:2].tobytes() != b"BM":
        raise Malformed("the BMP signature is missing")
    if U32LE.unpack_from(data, 2)[0] != len(data):
        raise Malformed("the BMP file size field does not match the file length")
    header = U32LE.unpack_from(data, 14)[0]
    if header not in _HEADER_SIZES:
        raise Malformed("the BMP info header size is unknown")
    need(data, 14 + header, "the BMP info header")
    info = read_info(data, header)
    if info.height == 0:
        raise Malformed("the image has no pixels")
    check_size(info.width, abs(info.height), caps)
    check_info(info)
    offset = U32LE.unpack_from(data, 10)[0]
    if not 14 + header + info.mask_bytes + info.palette_bytes <= offset <= len(data):
        raise Malformed("the BMP pixel data offset overlaps the headers or passes the end")
    end = max(pixel_end(data, info, offset), profile_end(data, info))
    if len(data) - end > _SLACK:
        raise Malformed(f"{len(data) - end} bytes follow the BMP pixel data")
    return Shape(info.width, abs(info.height), 1)
