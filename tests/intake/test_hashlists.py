"""Hash-list files (every kind) and the exact-digest sets they become.

The parser validates million-line files in bulk; these pin its grammar (comments, blanks,
CRLF, PDQ's `,quality` suffix), its error line numbers (across the bulk slices too) and
that a list of one kind refuses digests of another length.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cache.intake.hashlists import (
    SLICE_BYTES,
    DigestSet,
    ListFormatError,
    hex_to_rows,
    load_list,
    parse_list,
)
from cache.intake.pdq_index import Match, PdqIndex

U8 = npt.NDArray[np.uint8]


def _random(rng: np.random.Generator, n: int, width: int = 32) -> U8:
    return rng.integers(0, 256, (n, width), dtype=np.uint8)


def _hex(row: U8) -> str:
    return row.tobytes().hex()


def _load_pdq(path: str) -> U8:
    return load_list(path, "pdq")


def _write(tmp_path: Path, text: str | bytes) -> str:
    p = tmp_path / "list.txt"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def test_loader_accepts_comments_blanks_quality_crlf(tmp_path: Path) -> None:
    rows = _random(np.random.default_rng(3), 4)
    h = [_hex(r) for r in rows]
    text = (
        f"# a list\n\n{h[0]}\n  {h[1].upper()},100\r\n\t\n{h[2]} , 87  # trailing note\n"
        f"   # indented comment\n{h[3]}"
    )
    got = _load_pdq(_write(tmp_path, text))
    assert got.dtype == np.uint8 and np.array_equal(got, rows)


def test_loader_empty_and_comment_only(tmp_path: Path) -> None:
    assert _load_pdq(_write(tmp_path, "")).shape == (0, 32)
    assert _load_pdq(_write(tmp_path, "# nothing\n\n")).shape == (0, 32)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("0" * 63, "63 hex digits"),
        ("0" * 65, "65 hex digits"),
        ("0" * 63 + "g", "non-hex character 'g'"),
        ("0" * 64 + ",1000", "bad quality suffix '1000'"),
        ("0" * 64 + ",abc", "bad quality suffix 'abc'"),
        ("0" * 64 + " 100", "non-hex character ' '"),
        ("hello", "non-hex character 'h'"),
    ],
)
def test_loader_reports_line_number(tmp_path: Path, bad_line: str, reason: str) -> None:
    good = "f" * 64
    path = _write(tmp_path, f"# header\n{good}\n\n{good},50\n{bad_line}\n{good}\n")
    with pytest.raises(ListFormatError) as err:
        _load_pdq(path)
    assert err.value.line_number == 5 and err.value.path == path
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{path}:5: ")


def test_loader_line_numbers_across_slices() -> None:
    good = ("a" * 64 + "\n").encode()
    n = SLICE_BYTES // len(good) * 2 + 17
    data = good * n + b"not a hash\n" + good
    with pytest.raises(ListFormatError) as err:
        parse_list(data, "pdq", "big.txt")
    assert err.value.line_number == n + 1
    assert parse_list(good * n, "pdq").shape == (n, 32)


def test_index_names_sources(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1" * 64 + "\n")
    b.write_text("2" * 64 + ",90\n")
    index = PdqIndex.build([(str(a), _load_pdq(str(a))), (str(b), _load_pdq(str(b)))])
    assert index.query("2" * 64) == Match(0, "2" * 64, str(b))
    assert np.array_equal(hex_to_rows(["1" * 64]), _load_pdq(str(a)))


@pytest.mark.parametrize(("kind", "digits"), [("md5", 32), ("sha1", 40), ("sha256", 64)])
def test_exact_kinds_parse_their_own_length_only(tmp_path: Path, kind: str, digits: int) -> None:
    good = [hashlib.new(kind, str(i).encode()).hexdigest() for i in range(3)]
    text = f"# {kind} list\n{good[0]}\n\n  {good[1].upper()}  # note\r\n{good[2]}"
    rows = load_list(_write(tmp_path, text), kind)
    assert rows.shape == (3, digits // 2) and [_hex(r) for r in rows] == good
    other = "a" * (64 if digits != 64 else 32)
    with pytest.raises(ListFormatError) as err:
        load_list(_write(tmp_path, f"{good[0]}\n{other}\n"), kind)
    assert err.value.line_number == 2 and f"expected {digits}" in err.value.reason
    with pytest.raises(ListFormatError) as err:
        load_list(_write(tmp_path, f"{good[0]},100\n"), kind)  # ",quality" is PDQ's only
    assert err.value.line_number == 1 and "after the hash" in err.value.reason


def test_digest_set_finds_exact_digests_and_names_the_first_file() -> None:
    rng = np.random.default_rng(11)
    a, b = _random(rng, 3000, 16), _random(rng, 2000, 16)
    b[0] = a[5]  # listed twice: the first file named wins
    b[1] = a[6].copy()
    b[1][-1] ^= 1  # same first 8 bytes as a[6], another digest
    digests = DigestSet(16, [("a.txt", a), ("b.txt", b)])
    assert len(digests) == 5000
    assert digests.find(_hex(a[5])) == "a.txt" and digests.find(_hex(b[1])) == "b.txt"
    assert digests.find(_hex(a[6])) == "a.txt" and digests.find(_hex(b[1999])) == "b.txt"
    assert digests.find(_hex(_random(rng, 1, 16)[0])) is None
    assert digests.find("zz" * 16) is None and digests.find("ab" * 20) is None
    assert DigestSet(16).find(_hex(a[0])) is None
