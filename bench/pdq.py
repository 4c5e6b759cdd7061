"""Bench 6: hash lists. What PDQ costs an upload, and what a list of 10^6 hashes costs.

- PDQ cost per image: `intake.digests.extra_digests(..., Wanted(pdq=True))`, what an upload
  pays with `blocklist.pdq_mode` on (a full Pillow decode, the reference's 512x512 resize,
  the 8 dihedral hashes), over Pillow's plain decode of the same bytes (open + load): the
  100 KB PNG and the 1 MB JPEG of the lifecycle bench. Medians of interleaved runs, with
  the same decode and hashes by Meta's C++ core (`pdq.reference_dihedral`) alongside.
- A list of N PDQ hashes (10^6 in full and quick runs), written like a vendor list with
  `,quality` suffixes: `load_files` (parse + multi-index build) timed in a fresh process,
  whose peak RSS (VmHWM) is the figure, next to the same process's peak before loading.
- Lookup: the 8 dihedral hashes of an upload against that index at distance 31, as
  `Blocklist.check` does, half of them with a listed hash 5-31 bits away: wall time per
  query, p99; the querying thread's CPU time is reported too (the machine is shared).
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cache.intake.digests import Wanted, extra_digests
from cache.intake.pdq import reference_dihedral

from .context import Ctx
from .images import noise_jpeg, noise_png
from .stats import Section, at_most, fmt, percentile

COST_TARGET = 1.5
LOOKUP_TARGET_MS = 2.0
LOAD_TARGET_S = 10.0
LOAD_TARGET_MIB = 300.0
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def _reference_pdq(data: bytes) -> None:
    """The same decode and hashes by Meta's C++ core (what uploads used before the port)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        reference_dihedral(im)


def cost_ratio(data: bytes, fmt_name: str, repeats: int) -> tuple[float, float, float, float]:
    """(ratio, decode ms, PDQ ms, PDQ ms with Meta's C++ core): medians over `repeats`
    interleaved runs."""
    want = Wanted(pdq=True)
    extra_digests(data, fmt_name, want)  # warm: imports, first allocations
    _reference_pdq(data)
    decode, pdq, reference = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _decode(data)
        t1 = time.perf_counter()
        extra_digests(data, fmt_name, want)
        t2 = time.perf_counter()
        _reference_pdq(data)
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        pdq.append(t2 - t1)
        reference.append(t3 - t2)
    d, p = statistics.median(decode), statistics.median(pdq)
    return p / d, d * 1000, p * 1000, statistics.median(reference) * 1000


def _hex_lines(rows: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    chars = np.empty((len(rows), 69), dtype=np.uint8)
    chars[:, 0:64:2] = _HEX[rows >> 4]
    chars[:, 1:64:2] = _HEX[rows & 15]
    chars[:, 64:68] = np.frombuffer(b",100", dtype=np.uint8)
    chars[:, 68] = ord("\n")
    return chars.tobytes()


def _flip(row: np.ndarray[Any, np.dtype[np.uint8]], rng: np.random.Generator, n: int) -> str:
    out = row.copy()
    for bit in rng.choice(256, n, replace=False):
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return out.tobytes().hex()


def write_inputs(scratch: Path, entries: int, queries: int, seed: int) -> tuple[Path, Path]:
    """A list file of `entries` random hashes and a file of queries (8 hashes each)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (entries, 32), dtype=np.uint8)
    listing = scratch / "pdq-list.txt"
    listing.write_bytes(b"# bench list: one PDQ hash per line, quality after the comma\n")
    with listing.open("ab") as out:
        for start in range(0, entries, 100_000):
            out.write(_hex_lines(rows[start : start + 100_000]))
    lines = []
    for i in range(queries):
        hashes = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(8)]
        if i % 2 == 0:  # a near match: one of the 8 is a listed hash 5..31 bits away
            target = rows[int(rng.integers(entries))]
            hashes[int(rng.integers(8))] = _flip(target, rng, int(rng.integers(5, 32)))
        lines.append(",".join(hashes))
    query_file = scratch / "pdq-queries.txt"
    query_file.write_text("\n".join(lines) + "\n")
    return listing, query_file


CHILD = """
import json, sys, time
from pathlib import Path
def vm(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
from cache.config import BlocklistConfig
from cache.intake.blocklist import Blocklist, load_files
before = vm("VmHWM")
config = BlocklistConfig(pdq_files=(sys.argv[1],))
t0 = time.perf_counter()
blocklist = Blocklist(config, load_files(config))
load_s = time.perf_counter() - t0
peak = vm("VmHWM")
wall, cpu, hits = [], [], 0
for line in Path(sys.argv[2]).read_text().splitlines():
    hashes = line.split(",")
    c, s = time.thread_time(), time.perf_counter()
    found = blocklist.find_pdq(hashes, 100)
    wall.append(time.perf_counter() - s)
    cpu.append(time.thread_time() - c)
    hits += found is not None
print(json.dumps({"entries": blocklist.counts()["pdq"], "load_s": load_s, "hwm_before_mib": before,
                  "hwm_mib": peak, "wall": wall, "cpu": cpu, "hits": hits}))
"""


def load_and_lookup(listing: Path, queries: Path) -> dict[str, Any]:
    """Load the list and run the queries in a fresh process: its own peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(listing), str(queries)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"PDQ list child failed: {done.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def run(ctx: Ctx) -> Section:
    section = Section("pdq")
    sizes = ctx.sizes
    repeats = max(3, sizes.cost_repeats * 4)
    for key, label, data, fmt_name in (
        ("pdq_cost_ratio_png", "100 KB PNG", noise_png(100_000), "PNG"),
        ("pdq_cost_ratio_jpeg1m", "1 MB JPEG", noise_jpeg(1_000_000), "JPEG"),
    ):
        ratio_value, decode_ms, pdq_ms, reference_ms = cost_ratio(data, fmt_name, repeats)
        with Image.open(io.BytesIO(data)) as im:
            shape = f"{im.width}x{im.height}"
        section.add(
            f"PDQ per upload (decode + 8 hashes), {label} {shape}",
            f"{fmt(pdq_ms)} ms",
            f"Pillow decode {fmt(decode_ms)} ms; with Meta's C++ core {fmt(reference_ms)} ms "
            f"({fmt(reference_ms / decode_ms)}x)",
            ratio_value,
            f"≤ {COST_TARGET:g}x decode",
            at_most(ratio_value, COST_TARGET),
        )
        section.keys[key] = round(ratio_value, 3)
    listing, queries = write_inputs(ctx.scratch, sizes.pdq_entries, sizes.pdq_queries, ctx.seed)
    result = load_and_lookup(listing, queries)
    wall_ms = [w * 1000 for w in result["wall"]]
    cpu_ms = [c * 1000 for c in result["cpu"]]
    p99, cpu99 = percentile(wall_ms, 99), percentile(cpu_ms, 99)
    n = f"{result['entries']:,}"
    section.add(
        f"PDQ lookup p99, 8 hashes at distance 31, {n} listed",
        f"{fmt(p99)} ms",
        f"p50 {fmt(percentile(wall_ms, 50))} ms; thread CPU p99 {fmt(cpu99)} ms",
        None,
        f"≤ {LOOKUP_TARGET_MS:g} ms",
        at_most(p99, LOOKUP_TARGET_MS),
    )
    size_mib = listing.stat().st_size / 2**20
    section.add(
        f"PDQ list load, {n} lines ({size_mib:.0f} MiB file)",
        f"{fmt(result['load_s'])} s",
        "parse + multi-index build",
        None,
        f"≤ {LOAD_TARGET_S:g} s",
        at_most(result["load_s"], LOAD_TARGET_S),
    )
    section.add(
        f"PDQ list load, peak RSS of the process, {n} lines",
        f"{fmt(result['hwm_mib'])} MiB",
        f"{fmt(result['hwm_before_mib'])} MiB before loading",
        None,
        f"≤ {LOAD_TARGET_MIB:g} MiB",
        at_most(result["hwm_mib"], LOAD_TARGET_MIB),
    )
    section.keys.update(
        pdq_lookup_p99_ms=round(p99 or 0.0, 3),
        pdq_load_1e6_s=round(result["load_s"], 3),
        pdq_load_1e6_rss_mib=round(result["hwm_mib"], 1),
    )
    section.series["lookup"] = {
        "entries": result["entries"],
        "queries": len(wall_ms),
        "near_matches_found": result["hits"],
        "cpu_p99_ms": cpu99,
    }
    section.notes.append(
        f"PDQ: cost is the median of {repeats} interleaved runs; lookups are "
        f"{len(wall_ms):,} queries, half with a listed hash 5-31 bits away "
        f"({result['hits']} found); the list, load and lookups run in a fresh process"
        + ("" if sizes.pdq_entries >= 10**6 else f" (only {n} entries in this mode)")
        + "."
    )
    return section
