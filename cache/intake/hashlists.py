"""Hash-list files (SHA-256, MD5, SHA-1, PDQ), parsed fast enough for million-line lists,
and the exact-digest sets they become.

Why not a per-line loop: at 1e6 lines, Python-level parsing (split, strip, fromhex, a list
of bytes objects) costs seconds and ~100 MB of transient objects. Instead a file is read
whole and processed in ~4 MiB slices: one compiled regex validates a slice in a single
C-level pass (possessive repetition, so no backtracking across lines), and the digests are
pulled out and hex-decoded in bulk. Only when a slice fails validation are its lines walked
one by one, to name the first bad line.

Why `DigestSet` and not a Python set: a set of a million 16-byte `bytes` costs ~100 MB;
sorted numpy rows cost the digest bytes plus 10 bytes an entry, and a lookup is two
binary searches.

Format: one hex digest per line (either case); `#` starts a comment (whole-line or
trailing); blank lines, surrounding spaces/tabs and CRLF line ends are accepted. A PDQ line
may carry `,quality` (1-3 digits, ignored) after the hash.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
HEX_DIGITS = {"sha256": 64, "md5": 32, "sha1": 40, "pdq": 64}
SLICE_BYTES = 4 << 20
_HEX_RE = re.compile(rb"[0-9a-fA-F]*")


class ListFormatError(ValueError):
    """A malformed line in a hash-list file (line numbers start at 1)."""

    def __init__(self, path: str, line_number: int, reason: str) -> None:
        super().__init__(f"{path}:{line_number}: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


class _Grammar:
    """The regexes for one kind of list."""

    def __init__(self, kind: str) -> None:
        self.digits = HEX_DIGITS[kind]
        self.quality = kind == "pdq"
        suffix = rb"(?:,[ \t]*[0-9]{1,3}[ \t]*)?" if self.quality else b""
        line = rb"[ \t]*(?:[0-9a-fA-F]{%d}[ \t]*%b)?(?:#[^\n]*)?\r?" % (self.digits, suffix)
        self.line = re.compile(line)
        self.slice = re.compile(rb"(?:" + line + rb"\n)*+" + line)
        self.digest = re.compile(rb"^[ \t]*([0-9a-fA-F]{%d})" % self.digits, re.MULTILINE)

    def why(self, line: bytes) -> str:
        body = line.split(b"#", 1)[0].strip()
        digest, comma, quality = body.partition(b",")
        digest = digest.strip()
        if not _HEX_RE.fullmatch(digest):
            bad = next(chr(c) for c in digest if not _HEX_RE.fullmatch(bytes([c])))
            return f"non-hex character {bad!r} in {digest[:80].decode('latin-1')!r}"
        if len(digest) != self.digits:
            return f"hash has {len(digest)} hex digits, expected {self.digits}"
        if comma and not self.quality:
            return "unexpected text after the hash"
        return f"bad quality suffix {quality.strip()[:20].decode('latin-1')!r}, expected 1-3 digits"


_GRAMMARS = {kind: _Grammar(kind) for kind in HEX_DIGITS}


def parse_list(data: bytes, kind: str, path: str = "<bytes>") -> U8:
    """List-file contents -> (n, digest bytes) uint8 rows, duplicates kept, file order."""
    grammar = _GRAMMARS[kind]
    width = grammar.digits // 2
    # Every digest line has >= `digits` bytes, so this bounds the row count; pages never
    # written are never resident, so the over-allocation costs address space, not RSS.
    out = np.empty((len(data) // grammar.digits + 1, width), dtype=np.uint8)
    n = 0
    start, line_base = 0, 0
    while start < len(data):
        end = data.find(b"\n", min(start + SLICE_BYTES, len(data)) - 1)
        end = len(data) if end < 0 else end + 1
        chunk = data[start:end]
        if grammar.slice.fullmatch(chunk) is None:
            for i, line in enumerate(chunk.split(b"\n")):
                if grammar.line.fullmatch(line) is None:
                    raise ListFormatError(path, line_base + i + 1, grammar.why(line))
            raise AssertionError("slice failed validation but every line passed")
        digests = grammar.digest.findall(chunk)
        if digests:
            raw = binascii.unhexlify(b"".join(digests))
            out[n : n + len(digests)] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
            n += len(digests)
        line_base += chunk.count(b"\n")
        start = end
    return out[:n] if n > len(out) // 2 else out[:n].copy()


def load_list(path: str, kind: str) -> U8:
    """Read a list file; ListFormatError(path, line, reason) on a bad line, OSError when
    it cannot be read."""
    with open(path, "rb") as handle:
        data = handle.read()
    return parse_list(data, kind, path)


def hex_to_rows(hashes: Sequence[str], digits: int = 64) -> U8:
    """Hex strings of `digits` digits -> (k, digits/2) uint8 rows; ValueError otherwise."""
    out = np.empty((len(hashes), digits // 2), dtype=np.uint8)
    for i, h in enumerate(hashes):
        try:
            raw = bytes.fromhex(h) if len(h) == digits else b""
        except ValueError:
            raw = b""
        if len(raw) != digits // 2:
            raise ValueError(f"not a {digits}-hex-digit hash: {h[:80]!r}")
        out[i] = np.frombuffer(raw, dtype=np.uint8)
    return out


class DigestSet:
    """Exact digests of one kind from several files, each tagged with its file's name.

    Rows are sorted by their first 8 bytes (as a big-endian uint64), so a lookup is a
    binary search over those keys and a compare of the few rows that share the key.
    Immutable: a reload builds a new one.
    """

    def __init__(self, width: int, parts: Iterable[tuple[str, U8]] = ()) -> None:
        self.names: list[str] = []
        rows_list: list[U8] = []
        srcs: list[npt.NDArray[np.uint16]] = []
        for name, rows in parts:
            if len(self.names) >= 1 << 16:
                raise ValueError("more than 65536 list files")
            rows_list.append(np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, width))
            srcs.append(np.full(len(rows_list[-1]), len(self.names), np.uint16))
            self.names.append(name)
        rows_all = np.concatenate(rows_list) if rows_list else np.zeros((0, width), np.uint8)
        src_all = np.concatenate(srcs) if srcs else np.zeros(0, np.uint16)
        keys = np.ascontiguousarray(rows_all[:, :8]).view(">u8").ravel().astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = rows_all[order]
        self._srcs = src_all[order]
        self._width = width

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, digest_hex: str) -> str | None:
        """The name of the first file listing this digest, or None."""
        try:
            raw = bytes.fromhex(digest_hex)
        except ValueError:
            return None
        if len(raw) != self._width or not len(self._keys):
            return None
        key = np.uint64(int.from_bytes(raw[:8], "big"))
        lo = int(np.searchsorted(self._keys, key, "left"))
        hi = int(np.searchsorted(self._keys, key, "right"))
        for i in range(lo, hi):
            if self._rows[i].tobytes() == raw:
                return self.names[int(self._srcs[i])]
        return None
