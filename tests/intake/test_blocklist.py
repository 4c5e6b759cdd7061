"""The Blocklist on its own: list files and their errors, matching rules (dihedral PDQ,
distance, quality gate), what an upload must be hashed with, and the admin layer."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from PIL import Image

from cache.app import build_runtime
from cache.config import BlocklistConfig
from cache.intake.blocklist import Blocklist, ListLoadError, load_files
from cache.intake.digests import Wanted, extra_digests, with_digests
from cache.item import ImageFacts
from tests.support import images
from tests.support.pdq_images import BRIDGE, digest, flat_png, reference_hashes, transposed
from tests.support.service import make_config

TRANSPOSES = list(Image.Transpose)


def facts_of(data: bytes, fmt: str = "PNG") -> ImageFacts:
    digests = extra_digests(data, fmt, Wanted(md5=True, sha1=True, pdq=True))
    return ImageFacts(digest("sha256", data), len(data), "image/png", 1, 1, **digests.fields())


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "line", "why"),
    [
        ("sha256", "ab" * 31, "hash has 62 hex digits, expected 64"),
        ("md5", "0" * 31 + "x", "non-hex character 'x' in '" + "0" * 31 + "x'"),
        ("sha1", "a" * 40 + ",90", "unexpected text after the hash"),
        ("pdq", "f" * 64 + ",abc", "bad quality suffix 'abc', expected 1-3 digits"),
    ],
)
def test_a_bad_line_stops_start_up_naming_file_and_line(
    tmp_path: Path, kind: str, line: str, why: str
) -> None:
    good = {"sha256": "a" * 64, "md5": "b" * 32, "sha1": "c" * 40, "pdq": "d" * 64}[kind]
    path = write(tmp_path, f"{kind}.txt", f"# list\n{good}\n\n{line}\n{good}\n")
    config = make_config(blocklist={f"{kind}_files": [path], "pdq_mode": "on"})
    with pytest.raises(ListLoadError) as caught:
        build_runtime(config)
    assert str(caught.value) == f"blocklist.{kind}_files: {path}:4: {why}"
    assert isinstance(caught.value, ValueError)  # server.py: one line, exit 2


def test_an_unreadable_file_stops_start_up(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(ListLoadError, match=r"^blocklist.md5_files: .*nope.txt: cannot read"):
        load_files(BlocklistConfig(md5_files=(missing,)))


def test_pdq_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "pdq.txt", reference_hashes()[BRIDGE][0] + "\n")
    assert BlocklistConfig(pdq_files=(path,)).pdq_on  # auto: on with a PDQ list
    assert not BlocklistConfig().pdq_on and BlocklistConfig(pdq_mode="on").pdq_on
    off = Blocklist.from_config(BlocklistConfig(pdq_files=(path,), pdq_mode="off"))
    assert off.counts()["pdq"] == 0 and not off.wanted().pdq  # not even loaded
    assert off.find(facts_of(transposed(Image.Transpose.ROTATE_90))) is None


@pytest.mark.parametrize("transpose", TRANSPOSES, ids=[t.name for t in TRANSPOSES])
def test_rotated_and_mirrored_copies_match(tmp_path: Path, transpose: Image.Transpose) -> None:
    listed = reference_hashes()[BRIDGE][0]
    path = write(tmp_path, "pdq.txt", f"# ThreatExchange bridge\n{listed},100\n")
    blocklist = Blocklist.from_config(BlocklistConfig(pdq_files=(path,)))
    match = blocklist.find(facts_of(transposed(transpose)))
    assert match is not None and (match.kind, match.listed, match.source) == ("pdq", listed, path)
    assert match.distance is not None and match.distance <= 31
    # Why the 8 variants: the upload's own hash alone is far from the listed one.
    own = facts_of(transposed(transpose))
    alone = ImageFacts(own.sha256, 1, "image/png", 1, 1, pdq=own.pdq, pdq_quality=own.pdq_quality)
    assert blocklist.find(alone) is None


def test_distance_threshold_and_quality_gate(tmp_path: Path) -> None:
    facts = facts_of(transposed(Image.Transpose.FLIP_LEFT_RIGHT))
    listed = reference_hashes()[BRIDGE][0]
    path = write(tmp_path, "pdq.txt", listed + "\n")
    loose = Blocklist.from_config(BlocklistConfig(pdq_files=(path,)))
    found = loose.find(facts)
    assert found is not None and found.distance is not None and found.distance > 0
    strict = BlocklistConfig(pdq_files=(path,), pdq_max_distance=found.distance - 1)
    assert Blocklist.from_config(strict).find(facts) is None
    # A flat image's hash is listed: an upload of it must not match (quality 0 < 50).
    flat = facts_of(flat_png())
    assert flat.pdq_quality is not None and flat.pdq_quality < 50
    path = write(tmp_path, "flat.txt", f"{flat.pdq}\n")
    assert Blocklist.from_config(BlocklistConfig(pdq_files=(path,))).find(flat) is None
    gate = BlocklistConfig(pdq_files=(path,), pdq_min_quality=0)
    assert Blocklist.from_config(gate).find(flat) is not None


def test_wanted_follows_the_lists_in_force(tmp_path: Path) -> None:
    blocklist = Blocklist(BlocklistConfig())
    assert blocklist.wanted() == Wanted()
    blocklist.add("md5", ["0" * 32])
    assert blocklist.wanted() == Wanted(md5=True)
    blocklist.remove("md5", ["0" * 32])
    path = write(tmp_path, "sha1.txt", "1" * 40 + "\n")
    assert Blocklist.from_config(BlocklistConfig(sha1_files=(path,))).wanted() == Wanted(sha1=True)


def test_exact_kinds_from_files_and_admin(tmp_path: Path) -> None:
    data = images.jpeg()
    facts = facts_of(data, "JPEG")
    paths = {
        kind: write(tmp_path, f"{kind}.txt", digest(kind, data).upper() + "  # listed\n")
        for kind in ("sha256", "md5", "sha1")
    }
    for kind, path in paths.items():
        blocklist = Blocklist.from_config(BlocklistConfig(**{f"{kind}_files": (path,)}))
        match = blocklist.find(facts)
        assert match is not None and (match.kind, match.source) == (kind, path)
        blocklist.add(kind, [digest(kind, data)])  # listed twice: admin answers first
        assert blocklist.find(facts) == type(match)(kind, digest(kind, data), "admin")
        assert blocklist.counts()[kind] == 2 and blocklist.file_counts()[kind] == 1


def test_replace_admin_reports_what_is_new() -> None:
    blocklist = Blocklist(BlocklistConfig(pdq_mode="on"))
    blocklist.add("sha256", ["a" * 64, "b" * 64])
    new = blocklist.replace_admin({"sha256": {"b" * 64, "c" * 64}, "pdq": {"d" * 64}})
    assert new == {"sha256": ["c" * 64], "md5": [], "sha1": [], "pdq": ["d" * 64]}
    assert blocklist.admin_entries("sha256") == ["b" * 64, "c" * 64]
    hit = ImageFacts("0" * 64, 1, "image/png", 1, 1, pdq="d" * 63 + "c", pdq_quality=90)
    found = blocklist.find(hit)
    assert found is not None and found.distance == 1
    blocklist.replace_admin({})
    assert blocklist.find(hit) is None and blocklist.counts() == dict.fromkeys(
        ("sha256", "md5", "sha1", "pdq"), 0
    )


def test_digests_of_an_upload_only_as_wanted() -> None:
    data = (Path(__file__).parent / "data" / "pdq" / BRIDGE).read_bytes()
    assert extra_digests(data, "JPEG", Wanted()).fields()["pdq"] is None
    some = extra_digests(data, "JPEG", Wanted(sha1=True))
    assert some.sha1 == digest("sha1", data) and some.md5 is None and some.pdq is None
    full = extra_digests(data, "JPEG", Wanted(md5=True, pdq=True))
    assert (full.pdq, full.pdq_quality) == reference_hashes()[BRIDGE]
    assert len(full.pdq_variants) == 8 and full.pdq_variants[0] == full.pdq
    decoded = Image.open(io.BytesIO(data))
    assert extra_digests(data, "JPEG", Wanted(pdq=True), decoded).pdq == full.pdq


def test_the_pdq_lookup_done_in_the_worker_thread_is_what_check_uses(tmp_path: Path) -> None:
    listed = reference_hashes()[BRIDGE][0]
    path = write(tmp_path, "pdq.txt", listed + "\n")
    blocklist = Blocklist.from_config(BlocklistConfig(pdq_files=(path,)))
    facts = facts_of(transposed(Image.Transpose.ROTATE_90))
    looked = blocklist.look_up_pdq(facts)
    assert looked.pdq_looked_up and looked.pdq_match is not None
    assert looked.pdq_match[:2] == (listed, path)
    assert blocklist.find(looked) == blocklist.find(facts)
    answered = dataclasses.replace(facts, pdq_looked_up=True, pdq_match=None)
    assert blocklist.find(answered) is None  # the loop does not look again
    data = transposed(Image.Transpose.FLIP_LEFT_RIGHT)
    base = ImageFacts(digest("sha256", data), len(data), "image/png", 512, 512)
    hashed = with_digests(base, data, "PNG", Wanted(pdq=True), blocklist.look_up_pdq)
    assert hashed.pdq_looked_up and hashed.pdq_match is not None
