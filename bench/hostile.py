"""Bench: hostile load. Items fall due while cheap attacks run together; and a decode burst.

1. Purge lag under attack. server.py (memory backend, core 0) holds N small items whose
   deadlines fall over a few seconds, while, from this process (core 1): thumbnails of a
   flat 7000x7000 PNG are asked for without pause, multipart bodies of 20,000 empty parts
   are posted without pause, and nobody reads the service's stdout (the audit log) until
   every deadline has passed. Then the log is read: each item's `purged` line carries its
   lag (release minus deadline). Keys: hostile_purge_lag_p99_ms (target <= 25),
   hostile_ttl_violations (target 0).
2. Decode burst. server.py with limits.verify = decode, storage.max_bytes 64 MiB and
   memory locked as by default: 12 concurrent uploads of a flat 7000x7000 PNG and 12
   thumbnails of one held. Peak RSS (sampled every 10 ms) over start + max_bytes + the
   decode budget (decode_burst_rss_ratio, <= 1.2), and RSS 5 s after the burst over RSS at
   start (decode_burst_rss_after_ratio, <= 1.5).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

from .context import Ctx
from .flood import RssSampler
from .procs import ROOT, SERVER_CPU, Proc, free_port, pinned, start_service
from .stats import Section, at_most, fmt, fmt_bytes, percentile, ratio

MiB = 1024 * 1024
LAG_TARGET_MS = 25.0
BURST_TARGET, AFTER_TARGET = 1.2, 1.5
ATTACKERS = 4  # threads per attack


def flat_png(side: int) -> bytes:
    row = b"\x00" + bytes(3 * side)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    head = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", head) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def many_parts(parts: int) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = b"".join(b"--" + boundary.encode() + b"\r\n\r\n\r\n" for _ in range(parts))
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def call(url: str, body: bytes | None = None, ctype: str = "image/png") -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _attack(stop: threading.Event, work: list[tuple[str, bytes | None, str]]) -> None:
    while not stop.is_set():
        for url, body, ctype in work:
            call(url, body, ctype)


def run(ctx: Ctx) -> Section:
    section = Section("hostile")
    _purge_lag_under_attack(ctx, section)
    _decode_burst(ctx, section)
    return section


def _purge_lag_under_attack(ctx: Ctx, section: Section) -> None:
    count = {"full": 2000, "quick": 500}.get(ctx.sizes.mode, 40)
    port, ops = free_port(), free_port()
    env = {**os.environ, "CACHE_SERVER_PORT": str(port), "CACHE_OPS_PORT": str(ops)}
    argv = [sys.executable, str(ROOT / "server.py"), "--config", str(ROOT / "config.toml")]
    popen = subprocess.Popen(  # stdout is a pipe nobody reads until the end: a stalled log
        pinned(argv, SERVER_CPU), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[bytes] = []
    try:
        _wait_ready(base)
        huge = json.loads(_post(base + "/v1/images?ttl=300", flat_png(7000)))
        first = time.time() + 2.0
        small = flat_png(8)
        for n in range(count):  # deadlines spread over the 3 s from `first`
            ttl = first + 3.0 * n / count - time.time()
            _post(base + f"/v1/images?ttl={max(ttl, 1.0):.3f}", small)
        parts, ctype = many_parts(20_000)
        thumb = (f"{base}/v1/images/{huge['id']}/thumbnail?size=1024", None, "")
        stop = threading.Event()
        with ThreadPoolExecutor(2 * ATTACKERS) as pool:
            for work in ([thumb], [(base + "/v1/images", parts, ctype)]):
                for _ in range(ATTACKERS):
                    pool.submit(_attack, stop, work)
            time.sleep(max(0.0, first + 3.0 + 2.0 - time.time()))  # every deadline, + 2 s
            stop.set()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics").read().decode()
        violations = _sample(metrics, "cache_ttl_violations_total")
        reader = threading.Thread(target=lambda: lines.extend(popen.stdout or []))
        reader.start()  # the log drains now
        popen.terminate()
        popen.wait(60)
        reader.join(60)
    finally:
        if popen.poll() is None:
            popen.kill()
    lags = [
        e["lag_ms"]
        for e in (json.loads(line) for line in lines if line.startswith(b"{"))
        if e.get("event") == "purged" and e.get("reason") == "ttl"
    ]
    p99 = percentile(lags, 99) if lags else None
    section.add(
        f"purge lag p99 while thumbnails, 20,000-part bodies and a stalled log run ({count:,} due)",
        f"{fmt(p99)} ms over {len(lags):,} purges; violations {violations:g}",
        "",
        None,
        f"≤ {LAG_TARGET_MS:g} ms, 0 violations",
        None if p99 is None else p99 <= LAG_TARGET_MS and violations == 0,
    )
    section.keys["hostile_purge_lag_p99_ms"] = p99
    section.keys["hostile_ttl_violations"] = violations


def _decode_burst(ctx: Ctx, section: Section) -> None:
    budget = 256 * MiB
    env = {
        "CACHE_LIMITS_VERIFY": "decode",
        "CACHE_STORAGE_MAX_BYTES": str(64 * MiB),
        "CACHE_LIMITS_DECODE_BUDGET_BYTES": str(budget),
    }
    with ctx.procs() as procs:
        service = start_service(procs, env, name="decode-burst")
        proc: Proc = service.proc
        base = service.url
        time.sleep(0.5)
        start = proc.rss()
        image = flat_png(7000)
        held = json.loads(_post(base + "/v1/images?ttl=300", image))
        sampler = RssSampler(proc)
        sampler.start()
        thumb = f"{base}/v1/images/{held['id']}/thumbnail?size=512"
        with ThreadPoolExecutor(24) as pool:
            uploads = [pool.submit(call, base + "/v1/images?ttl=60", image) for _ in range(12)]
            thumbs = [pool.submit(call, thumb) for _ in range(12)]
            statuses = [f.result() for f in uploads + thumbs]
        peak = sampler.stop()
        time.sleep(5.0)
        after = proc.rss()
    bound = start + 64 * MiB + budget
    burst, settled = ratio(peak, bound), ratio(after, start)
    answers = ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses)))
    section.add(
        "decode burst: peak RSS / (start + max_bytes + decode budget)",
        f"{fmt(burst)} (peak {fmt_bytes(peak)}; answers {answers})",
        f"start {fmt_bytes(start)} + 64 MiB + {fmt_bytes(budget)}",
        burst,
        f"≤ {BURST_TARGET:g}",
        at_most(burst, BURST_TARGET),
    )
    section.add(
        "decode burst: RSS 5 s after / RSS at start",
        f"{fmt(settled)} ({fmt_bytes(after)})",
        f"start {fmt_bytes(start)}",
        settled,
        f"≤ {AFTER_TARGET:g}",
        at_most(settled, AFTER_TARGET),
    )
    section.keys["decode_burst_rss_ratio"] = burst
    section.keys["decode_burst_rss_after_ratio"] = settled


def _wait_ready(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if call(base + "/readyz") == 200:
            return
        time.sleep(0.05)
    raise RuntimeError("the service did not become ready")


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")
