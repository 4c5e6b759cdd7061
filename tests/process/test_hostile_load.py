"""Attacks from an unauthenticated client, against a real server process: items keep
falling due on time while they run (no TTL violation), and each attack gets its bound.

- thumbnails of a huge flat PNG while tmpfs items fall due: deletes never wait behind
  decodes (their own thread pool), and thumbnails beyond the decode budget get 503;
- a reader of the audit log (stdout) that stops reading: purges go on and are logged
  later, uploads get 503 and /readyz 503 while the backlog is over its bound, nothing is
  dropped, and everything comes back when the reader does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import images
from tests.support.serverproc import ServerFactory, ServerProcess
from tests.support.service import parse_metrics
from tests.support.system import needs_linux_shm
from tests.support.waiting import wait_for


def metrics(server: ServerProcess) -> dict[str, float]:
    return parse_metrics(server.metrics_text())


def lag_le(values: dict[str, float], seconds: str) -> float:
    return values[f'cache_purge_lag_seconds_bucket{{le="{seconds}"}}']


@needs_linux_shm
def test_thumbnail_storm_does_not_delay_tmpfs_purges(
    server_process: ServerFactory, shm_dir: Path
) -> None:
    server = server_process(
        env={
            "CACHE_STORAGE_BACKEND": "tmpfs",
            "CACHE_STORAGE_PATH": str(shm_dir),
            "CACHE_TTL_SWEEP_INTERVAL": "0.2",
        }
    ).start()
    huge = server.upload(images.flat_png(7000), "?ttl=120")
    due = [server.upload(images.png(), "?ttl=2")["id"] for _ in range(20)]
    url = f"/v1/images/{huge['id']}/thumbnail?size=1024"
    with ThreadPoolExecutor(18) as pool:
        answers = list(pool.map(lambda _: server.request("GET", url)[0], range(18)))
    assert set(answers) <= {200, 503}, answers
    assert 200 in answers  # the budget lets one at a time through
    wait_for(lambda: not any(server.request("GET", f"/v1/images/{i}")[0] == 200 for i in due))
    values = wait_for(
        lambda: (m := metrics(server))['cache_purged_total{reason="ttl"}'] >= 20 and m,
        what="the 20 due items to be purged",
    )
    assert values["cache_ttl_violations_total"] == 0
    assert lag_le(values, "0.25") == values["cache_purge_lag_seconds_count"]  # all within 250 ms
    assert sorted(p.name for p in shm_dir.iterdir() if p.is_file()) == [huge["id"]]


def test_a_stalled_audit_reader_delays_no_purge(server_process: ServerFactory) -> None:
    server = server_process(
        env={"CACHE_TTL_SWEEP_INTERVAL": "0.2", "CACHE_SERVER_AUDIT_BACKLOG": "200"},
        hold_stdout=True,
    ).start()
    stored = 0
    status = 201
    while status == 201 and stored < 5000:  # until the backlog refuses new uploads
        status, _ = server.request("POST", "/v1/images?ttl=1", images.png((8, 8)))
        stored += status == 201
    assert status == 503, "uploads were never refused while the audit log could not be written"
    assert server.request("GET", "/readyz")[0] == 503
    values = wait_for(
        lambda: (m := metrics(server))['cache_purged_total{reason="ttl"}'] >= stored and m,
        what="every stored item to be purged while nobody reads the log",
    )
    assert values["cache_ttl_violations_total"] == 0
    assert values["cache_audit_lines_waiting"] > 200
    assert values["cache_audit_lines_dropped_total"] == 0

    server.release_stdout()
    wait_for(lambda: metrics(server)["cache_audit_lines_waiting"] == 0, what="the log to drain")
    assert server.request("GET", "/readyz")[0] == 200
    server.upload(images.png())
    assert server.stop() == 0
    purged = {e["id"] for e in server.audit("purged") if e.get("reason") == "ttl"}
    assert len(purged) == stored  # every purge was logged, late but complete


def test_slow_readers_are_cut_at_deadline_plus_grace(server_process: ServerFactory) -> None:
    server = server_process(env={"CACHE_TTL_GRACE": "1"}).start()
    data = images.noise_png(1850)
    created = server.upload(data, "?ttl=2")
    request = f"GET /v1/images/{created['id']} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    readers = []
    for _ in range(40):  # readers that never read: the response cannot finish
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request)
        readers.append(sock)
    time.sleep(max(0.0, created["expires_at"] + 1.0 - time.time()) + 0.5)  # deadline + grace
    values = wait_for(
        lambda: (m := metrics(server))["cache_reads_cut_total"] >= 40 and m,
        timeout=10,
        what="the 40 stalled responses to be cut",
    )
    assert values["cache_ttl_violations_total"] == 0
    for sock in readers:  # each was cut: what it can still read ends short of the body
        sock.settimeout(5)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        sock.close()
        assert received < len(data)
    assert server.request("GET", f"/v1/images/{created['id']}")[0] == 404


def multipart_parts(parts: int) -> tuple[bytes, str]:
    body = b"".join(b"--b0undary\r\n\r\n\r\n" for _ in range(parts)) + b"--b0undary--\r\n"
    return body, "multipart/form-data; boundary=b0undary"


def test_bodies_of_20000_empty_parts_delay_no_purge(server_process: ServerFactory) -> None:
    server = server_process(env={"CACHE_TTL_SWEEP_INTERVAL": "0.2"}).start()
    due = [server.upload(images.png(), "?ttl=2")["id"] for _ in range(20)]
    body, ctype = multipart_parts(20_000)
    stop = time.monotonic() + 3.5  # past every deadline

    def attack(_: int) -> set[int]:
        seen = set()
        while time.monotonic() < stop:
            seen.add(server.request("POST", "/v1/images", body, headers={"Content-Type": ctype})[0])
        return seen

    with ThreadPoolExecutor(4) as pool:
        answers = set().union(*pool.map(attack, range(4)))
    assert answers == {400}, answers  # refused by the bounded multipart reader
    values = wait_for(
        lambda: (m := metrics(server))['cache_purged_total{reason="ttl"}'] >= len(due) and m,
        what="the due items to be purged",
    )
    assert values["cache_ttl_violations_total"] == 0
    assert lag_le(values, "0.25") == values["cache_purge_lag_seconds_count"]


def test_stalled_chunked_uploads_hold_no_capacity(server_process: ServerFactory) -> None:
    """Chunked bodies count against capacity as their bytes arrive; stalled ones are cut
    at limits.body_idle_timeout and give their bytes back, so a real upload gets in."""
    mib = 1024 * 1024
    server = server_process(
        env={"CACHE_STORAGE_MAX_BYTES": str(50 * mib), "CACHE_LIMITS_BODY_IDLE_TIMEOUT": "1"}
    ).start()
    stalled = []
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = bytes(1 * mib)
        for _ in range(4):  # 4 MiB each, then nothing more
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        stalled.append(sock)
    time.sleep(2.0)  # past the idle timeout: every stalled body is cut
    answers = []
    for sock in stalled:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            answers.append(sock.recv(65536).split(b" ", 2)[1])
        sock.close()
    assert set(answers) <= {b"408", b"503"} and b"408" in answers, answers
    big = images.noise_png(1200)  # about 4 MB: fits only if the stalled bytes were given back
    created = server.upload(big)
    assert created["size"] == len(big)
    values = metrics(server)
    assert values['cache_rejected_total{reason="request-timeout"}'] >= 1


def rss_bytes(server: ServerProcess) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_uploads_of_huge_flat_pngs_keep_memory_flat(server_process: ServerFactory) -> None:
    """12 uploads at once of a 7000x7000 PNG (150 KiB on the wire, 147 MB of pixels): the
    structure check inflates it in 64 KiB windows and decodes nothing, so the process
    grows by little more than the bodies (before: 45 -> 1,165 MiB, kept)."""
    server = server_process().start()
    before = rss_bytes(server)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(server))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    body = images.flat_png(7000)
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(lambda _: server.request("POST", "/v1/images", body)[0], range(12))
            )
    finally:
        done.set()
        sampler.join()
    assert answers.count(201) == 12
    assert peak - before < 64 * 1024 * 1024, (before, peak)
