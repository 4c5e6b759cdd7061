"""The references for purge lag: Redis's own expiry, and memcached's.

Redis: keys written with `SET ... PXAT deadline` (a deadline in wall-clock ms, carried in the
key's name too), `notify-keyspace-events Ex`; a raw socket subscribed to
`__keyevent@0__:expired` timestamps every chunk it receives, and parsing waits until the
end, so the subscriber costs a recv() per chunk and nothing per message. Lag = arrival of
the expired event - deadline (Redis frees the value before it publishes the event).

memcached: items written with an absolute exptime (whole seconds: memcached's resolution)
and never read; `stats curr_items` is polled. Its lags are estimated from the count (k-th
release matched to k-th deadline); its max is the time from the last deadline until
curr_items reaches 0, as the issue asks.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import random
import re
import socket
import threading
import time

import redis

from .lagrun import LagRun, fifo_estimate, plan_anchor
from .procs import Proc

CHANNEL = b"__keyevent@0__:expired"
KEY = re.compile(rb"e:(\d+):\d+\r\n")
CALIBRATE = 2_000
WAIT_AFTER_LAST = 15.0  # seconds past the last deadline before giving up on a reference
POLL = 0.02


class _Subscriber(threading.Thread):
    """Collects (arrival time, chunk) from a RESP subscription until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(name="expired-subscriber", daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        cmd = b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL)
        self.sock.sendall(cmd)
        confirmation = b""
        while not confirmation.endswith(b":1\r\n"):
            confirmation += self.sock.recv(4096)
        self.sock.settimeout(0.1)
        self.chunks: list[tuple[float, bytes]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.chunks.append((time.time(), chunk))

    def stop(self) -> None:
        self.stopping.set()
        self.join(2)
        with contextlib.suppress(OSError):
            self.sock.close()

    def lags_ms(self) -> list[float]:
        """Each expired event's arrival minus the deadline in its key name."""
        ends: list[int] = []
        total = 0
        for _, chunk in self.chunks:
            total += len(chunk)
            ends.append(total)
        stream = b"".join(chunk for _, chunk in self.chunks)
        lags = []
        for match in KEY.finditer(stream):
            index = bisect.bisect_left(ends, match.end())
            arrived = self.chunks[index][0]
            lags.append(arrived * 1000 - int(match.group(1)))
        return lags


def redis_expiry(
    server: Proc, items: int, ttl: tuple[float, float], payload: bytes, rng_seed: str
) -> LagRun:
    rng = random.Random(rng_seed)
    port = server.ports["port"]
    run = LagRun("Redis expiry", items, "expired keyspace event arrival - PXAT deadline (per key)")
    client = redis.Redis(host="127.0.0.1", port=port)
    subscriber = _Subscriber(port)
    subscriber.start()
    try:
        started = time.time()
        far = 300_000 + int(started * 1000)
        _fill(client, [(f"cal:{i}", far) for i in range(CALIBRATE)], payload)
        per_item = (time.time() - started) / CALIBRATE
        client.flushdb()
        anchor = plan_anchor(time.time(), items, per_item)
        lo, hi = ttl
        deadlines = [int((anchor + rng.uniform(lo, hi)) * 1000) for _ in range(items)]
        fill_start = time.time()
        _fill(client, [(f"e:{d}:{i}", d) for i, d in enumerate(deadlines)], payload)
        fill_end = time.time()
        run.fill_s = fill_end - fill_start
        run.fill_overran = fill_end * 1000 > min(deadlines)
        give_up = max(deadlines) / 1000 + WAIT_AFTER_LAST
        while time.time() < give_up:
            if time.time() * 1000 > max(deadlines) and client.dbsize() == 0:
                break
            time.sleep(0.05)
        left = int(client.dbsize())
        time.sleep(0.05)  # the last events are on their way
    finally:
        subscriber.stop()
        client.close()
    run.lags_ms = subscriber.lags_ms()
    run.released = len(run.lags_ms)
    run.complete = left == 0 and run.released == items
    return run


def _fill(client: redis.Redis, keys: list[tuple[str, int]], payload: bytes) -> None:
    pipe = client.pipeline(transaction=False)
    for i, (key, deadline_ms) in enumerate(keys, 1):
        pipe.set(key, payload, pxat=deadline_ms)
        if i % 1000 == 0:
            pipe.execute()
    pipe.execute()


# -- memcached -------------------------------------------------------------------------------
def _stats(sock: socket.socket) -> dict[str, str]:
    sock.sendall(b"stats\r\n")
    buffer = b""
    while not buffer.endswith(b"END\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("memcached closed the connection")
        buffer += chunk
    values = {}
    for line in buffer.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT":
            values[parts[1]] = parts[2]
    return values


def _mc_fill(sock: socket.socket, items: list[tuple[str, int]], payload: bytes) -> None:
    batch: list[bytes] = []
    for key, exptime in items:
        head = b"set %s 0 %d %d noreply\r\n" % (key.encode(), exptime, len(payload))
        batch.append(head + payload + b"\r\n")
        if len(batch) == 500:
            sock.sendall(b"".join(batch))
            batch = []
    sock.sendall(b"".join(batch))


def memcached_expiry(
    server: Proc, items: int, ttl: tuple[float, float], payload: bytes, rng_seed: str
) -> LagRun:
    rng = random.Random(rng_seed)
    run = LagRun(
        "memcached",
        items,
        "polled curr_items; k-th release matched to k-th deadline (estimate); max = last "
        "deadline to curr_items 0",
        estimated=True,
    )
    with socket.create_connection(("127.0.0.1", server.ports["port"])) as sock:
        started = time.time()
        far = int(started) + 3600
        _mc_fill(sock, [(f"cal{i}", far) for i in range(CALIBRATE)], payload)
        _stats(sock)  # a round trip: the noreply sets are done
        per_item = (time.time() - started) / CALIBRATE
        sock.sendall(b"".join(b"delete cal%d noreply\r\n" % i for i in range(CALIBRATE)))
        anchor = plan_anchor(time.time(), items, per_item)
        lo, hi = ttl
        # memcached keeps whole seconds: an item is due at the start of its second
        deadlines = [math.ceil(anchor + rng.uniform(lo, hi)) for _ in range(items)]
        fill_start = time.time()
        _mc_fill(sock, [(f"e{i}", d) for i, d in enumerate(deadlines)], payload)
        held = int(_stats(sock)["curr_items"])
        fill_end = time.time()
        run.fill_s = fill_end - fill_start
        run.fill_overran = fill_end > min(deadlines)
        polls: list[tuple[float, int]] = []
        give_up = max(deadlines) + WAIT_AFTER_LAST
        while time.time() < give_up:
            remaining = int(_stats(sock)["curr_items"])
            polls.append((time.time(), remaining))
            if remaining == 0:
                break
            time.sleep(POLL)
    run.lags_ms, run.released = fifo_estimate(deadlines, polls, held)
    run.complete = bool(polls) and polls[-1][1] == 0 and held == items
    if run.complete:  # the figure: last deadline -> curr_items 0
        run.extra["zero_after_last_deadline_ms"] = (polls[-1][0] - max(deadlines)) * 1000
    return run
