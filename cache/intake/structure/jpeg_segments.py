"""JPEG header segments: the frame header, Huffman and quantisation tables, scan parameters.

Why separate: these are the small, fixed-layout parts of a JPEG, parsed once each and
checked the way libjpeg checks them before it decodes (sampling factors, component
ids, canonical Huffman code lengths, progression parameters, MCU geometry). jpeg.py
walks the file and the scans; this module only answers "is this segment sound".
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import U16BE, Caps, Data, Malformed, check_size, need

SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@dataclass(frozen=True, slots=True)
class Component:
    ident: int
    h: int
    v: int
    tq: int


@dataclass(frozen=True, slots=True)
class Frame:
    marker: int
    width: int
    height: int
    components: tuple[Component, ...]

    @property
    def hmax(self) -> int:
        return max(c.h for c in self.components)

    @property
    def vmax(self) -> int:
        return max(c.v for c in self.components)


def parse_frame(marker: int, body: Data, caps: Caps) -> Frame:
    if len(body) < 6:
        raise Malformed("the JPEG frame header is too short")
    precision, count = body[0], body[5]
    height, width = U16BE.unpack_from(body, 1)[0], U16BE.unpack_from(body, 3)[0]
    if height == 0:
        raise Malformed("the JPEG height is deferred to a DNL marker, which is not accepted")
    check_size(width, height, caps)
    if not 1 <= count <= 4 or len(body) != 6 + 3 * count:
        raise Malformed("the JPEG frame header has a bad component count or length")
    if precision not in (range(2, 17) if marker in LOSSLESS else (8, 12)):
        raise Malformed("the JPEG sample precision is not supported")
    comps = tuple(
        Component(body[at], body[at + 1] >> 4, body[at + 1] & 15, body[at + 2])
        for at in range(6, 6 + 3 * count, 3)
    )
    if len({c.ident for c in comps}) != count:
        raise Malformed("the JPEG frame header repeats a component")
    if any(not (1 <= c.h <= 4 and 1 <= c.v <= 4 and c.tq <= 3) for c in comps):
        raise Malformed("a JPEG component has bad sampling factors or table number")
    return Frame(marker, width, height, comps)


def huffman_tables(body: Data) -> list[tuple[int, int]]:
    """The (class, id) of each table in a DHT segment, which must tile it exactly."""
    found, pos = [], 0
    while pos < len(body):
        need(body, pos + 17, "a JPEG Huffman table")
        cls, ident = body[pos] >> 4, body[pos] & 15
        counts = body[pos + 1 : pos + 17]
        end = pos + 17 + sum(counts)
        need(body, end, "a JPEG Huffman table")
        if cls > 1 or ident > 3 or not _prefix_code(counts):
            raise Malformed("a JPEG Huffman table is not valid")
        if cls == 0 and max(body[pos + 17 : end], default=0) > 16:
            raise Malformed("a JPEG DC Huffman table has a symbol out of range")
        found.append((cls, ident))
        pos = end
    return found


def _prefix_code(counts: Data) -> bool:
    """The code lengths fit a canonical Huffman code without the all-ones word (libjpeg)."""
    code = 0
    for bits, count in enumerate(counts, 1):
        code += count
        if code >= 1 << bits:
            return False
        code <<= 1
    return sum(counts) <= 256


def quant_tables(body: Data) -> list[int]:
    found, pos = [], 0
    while pos < len(body):
        precision, ident = body[pos] >> 4, body[pos] & 15
        if precision > 1 or ident > 3:
            raise Malformed("a JPEG quantisation table is not valid")
        pos += 1 + 64 * (precision + 1)
        need(body, pos, "a JPEG quantisation table")
        found.append(ident)
    return found


def check_progression(marker: int, count: int, ss: int, se: int, ah: int, al: int) -> None:
    if marker in PROGRESSIVE:
        bad = (se != 0) if ss == 0 else (ss > se or se > 63 or count != 1)
        bad = bad or (ah != 0 and al != ah - 1) or al > 13
    elif marker in LOSSLESS:
        bad = not 1 <= ss <= 7 or se != 0 or ah != 0
    else:
        bad = (ss, se, ah, al) != (0, 63, 0, 0)
    if bad:
        raise Malformed("the JPEG scan's spectral or approximation parameters are invalid")


def units(frame: Frame, comps: list[Component]) -> int:
    """MCUs in a scan (the unit restart intervals count), as libjpeg lays them out."""
    size = 1 if frame.marker in LOSSLESS else 8
    if len(comps) == 1:
        comp = comps[0]
        width = -(-frame.width * comp.h // frame.hmax)
        height = -(-frame.height * comp.v // frame.vmax)
        return -(-width // size) * -(-height // size)
    return -(-frame.width // (size * frame.hmax)) * -(-frame.height // (size * frame.vmax))
