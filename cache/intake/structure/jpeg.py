"""JPEG: the marker segments walked and cross-checked, the entropy-coded data skipped at C speed.

Why no decode: almost all of a JPEG is Huffman-coded scan data, and the only structural
rule inside it is byte stuffing (0xFF is always followed by 0x00, a restart marker or
more 0xFF fill before a real marker). A compiled regex finds the marker that ends a
scan without a Python loop per byte. Restart markers are followed one search at a
time while sparse (still one pass over the data) and, in a dense scan, pulled out in
bulk with `findall`; either way they must run RST0..RST7 in order and number exactly
what the frame geometry and restart interval imply. The header segments are checked
against each other in jpeg_segments.py.
"""

from __future__ import annotations

import re

from .base import U16BE, Caps, Data, Malformed, Shape, Steps, expect_end, need
from .jpeg_segments import (
    ARITHMETIC,
    LOSSLESS,
    PROGRESSIVE,
    SOF,
    Component,
    Frame,
    check_progression,
    huffman_tables,
    parse_frame,
    quant_tables,
    units,
)

_IGNORED = frozenset(range(0xE0, 0xF0)) | {0xFE}  # APPn and COM: opaque payloads
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # skips over restart markers
_SCAN_END_ANY = re.compile(rb"\xff[^\x00\xff]")  # stops at restart markers too
_RESTART = re.compile(rb"\xff([\xd0-\xd7])")
_FILL = re.compile(rb"\xff+")
_CYCLE = bytes(range(0xD0, 0xD8))
_MAX_BLOCKS_IN_MCU = 10
_FEW_RESTARTS = 256  # followed one by one; a denser scan is finished with findall
_WINDOW = 1 << 20  # bytes per findall in a dense scan


class Walk:
    """State carried between segments: the frame, the tables defined so far, the scans."""

    def __init__(self, caps: Caps, steps: Steps) -> None:
        self.caps = caps
        self.steps = steps
        self.frame: Frame | None = None
        self.quant: set[int] = set()
        self.huffman: set[tuple[int, int]] = set()
        self.restart = 0
        self.scanned: set[int] = set()
        self.mcus = 0

    def segment(self, marker: int, body: Data) -> None:
        if marker in SOF:
            if self.frame is not None:
                raise Malformed("the JPEG has more than one frame header")
            self.frame = parse_frame(marker, body, self.caps)
        elif marker == 0xC4:
            self.huffman.update(huffman_tables(body))
        elif marker == 0xDB:
            self.quant.update(quant_tables(body))
        elif marker == 0xDD:
            if len(body) != 2:
                raise Malformed("the JPEG restart interval segment has the wrong size")
            self.restart = U16BE.unpack_from(body, 0)[0]
        elif marker == 0xCC:
            if len(body) % 2:
                raise Malformed("the JPEG arithmetic conditioning segment has the wrong size")
        elif marker not in _IGNORED:
            raise Malformed("the JPEG has a marker that is not allowed here")

    def scan(self, body: Data) -> None:
        frame = self.frame
        if frame is None:
            raise Malformed("a JPEG scan comes before the frame header")
        count = body[0] if len(body) else 0
        if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
            raise Malformed("the JPEG scan header has a bad component count or length")
        by_id = {c.ident: c for c in frame.components}
        idents = [body[at] for at in range(1, 1 + 2 * count, 2)]
        if len(set(idents)) != count or not by_id.keys() >= set(idents):
            raise Malformed("the JPEG scan names a missing or repeated component")
        comps = [by_id[ident] for ident in idents]
        ss, se, ah, al = body[-3], body[-2], body[-1] >> 4, body[-1] & 15
        check_progression(frame.marker, count, ss, se, ah, al)
        if count > 1 and sum(c.h * c.v for c in comps) > _MAX_BLOCKS_IN_MCU:
            raise Malformed("the JPEG scan has too many blocks per unit")
        for at, comp in enumerate(comps):
            tables = body[2 + 2 * at]
            self._check_tables(frame.marker, comp, tables >> 4, tables & 15, ss, ah)
            self.scanned.add(comp.ident)
        self.mcus = units(frame, comps)

    def _check_tables(self, marker: int, comp: Component, dc: int, ac: int, ss: int,
                      ah: int) -> None:  # fmt: skip
        if marker not in LOSSLESS and comp.tq not in self.quant:
            raise Malformed("a JPEG scan uses a quantisation table that was never defined")
        if marker in ARITHMETIC:
            return
        needed: list[tuple[int, int]]
        if marker in PROGRESSIVE:
            needed = [(1, ac)] if ss else ([] if ah else [(0, dc)])
        else:
            needed = [(0, dc)] if marker in LOSSLESS else [(0, dc), (1, ac)]
        if any(table not in self.huffman for table in needed):
            raise Malformed("a JPEG scan uses a Huffman table that was never defined")

    def entropy(self, data: Data, start: int) -> int:
        """Skip a scan's coded data; return where the marker that ends it starts.

        Restart markers are followed one search at a time (still a single pass over the
        data) while they are sparse; past `_FEW_RESTARTS` the rest of the scan is found
        with one more search and its markers are pulled out in bulk with `findall`.
        """
        pos, seen = start, 0
        while seen <= _FEW_RESTARTS:
            found = _SCAN_END_ANY.search(data, pos)
            if found is None:
                raise Malformed("the JPEG scan data runs to the end of the file")
            marker = data[found.start() + 1]
            if not 0xD0 <= marker <= 0xD7:
                return self._scan_end(start, found.start(), seen)
            if not self.restart:
                raise Malformed("a JPEG restart marker appears without a restart interval")
            if marker != 0xD0 + seen % 8:
                raise Malformed("the JPEG restart markers are out of order")
            seen, pos = seen + 1, found.end()
            if seen % 4 == 0:  # a restart search costs about a quarter of a segment
                self.steps.take()
        found = _SCAN_END.search(data, pos)
        if found is None:
            raise Malformed("the JPEG scan data runs to the end of the file")
        return self._scan_end(start, found.start(), _bulk_restarts(data, pos, found.start(), seen))

    def _scan_end(self, start: int, end: int, restarts: int) -> int:
        if end == start:
            raise Malformed("a JPEG scan has no coded data")
        if self.restart and restarts != (self.mcus - 1) // self.restart:
            raise Malformed("the JPEG scan has the wrong number of restart markers")
        return end

    def shape(self) -> Shape:
        frame = self.frame
        if frame is None or not self.scanned:
            raise Malformed("the JPEG ends before any scan")
        if self.scanned != {c.ident for c in frame.components}:
            raise Malformed("a JPEG component is never scanned")
        return Shape(frame.width, frame.height, 1)


def _bulk_restarts(data: Data, pos: int, end: int, seen: int) -> int:
    """Check the restart markers in data[pos:end] continue the cycle; return the total.

    Windowed so the findall list stays small even for a file made of nothing but RSTs.
    """
    while pos < end:
        stop = min(end, pos + _WINDOW)
        while stop < end and data[stop - 1] == 0xFF:  # never split a marker from its 0xFF
            stop += 1
        found = b"".join(_RESTART.findall(data, pos, stop))
        if found != (_CYCLE * (len(found) // 8 + 2))[seen % 8 : seen % 8 + len(found)]:
            raise Malformed("the JPEG restart markers are out of order")
        seen, pos = seen + len(found), stop
    return seen


def check(data: Data, caps: Caps) -> Shape:
    if data[:2].tobytes() != b"\xff\xd8":
        raise Malformed("the JPEG start marker is missing")
    walk, pos = Walk(caps, Steps(data)), 2
    while True:
        walk.steps.take()
        need(data, pos + 2, "a JPEG marker")
        if data[pos] != 0xFF:
            raise Malformed(f"a JPEG marker was expected at byte {pos}")
        fill = _FILL.match(data, pos)
        pos = fill.end() if fill else pos
        need(data, pos + 1, "a JPEG marker")
        marker = data[pos]
        if marker == 0xD9:
            shape = walk.shape()
            expect_end(data, pos + 1, "JPEG end marker")
            return shape
        need(data, pos + 3, "a JPEG segment length")
        length = U16BE.unpack_from(data, pos + 1)[0]
        end = pos + 1 + length
        if length < 2:
            raise Malformed("a JPEG segment length is too small")
        need(data, end, "a JPEG segment")
        body = data[pos + 3 : end]
        if marker == 0xDA:
            walk.scan(body)
            pos = walk.entropy(data, end)
        else:
            walk.segment(marker, body)
            pos = end
