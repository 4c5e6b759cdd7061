"""The listener under hostile connections, against a real server process: aiohttp's own
parser and connection handling decide these, so no in-process client can stand in.

- a connection past `server.max_connections` gets a 503 problem+json and a close;
- a client that trickles its request head (slowloris) is closed at `server.header_timeout`;
- what the HTTP parser refuses is problem+json that does not echo the request.
"""

from __future__ import annotations

import json
import socket
import time

from tests.support.serverproc import ServerFactory, ServerProcess
from tests.support.service import parse_metrics


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def head_and_body(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_a_connection_past_the_cap_gets_503_and_a_close(server_process: ServerFactory) -> None:
    server = server_process(env={"CACHE_SERVER_MAX_CONNECTIONS": "4"}).start()
    held = [connect(server) for _ in range(4)]
    try:
        for sock in held:  # each is really open: it answers
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        extra = connect(server)
        status, headers, body = head_and_body(read_all(extra))
        assert status.startswith("HTTP/1.1 503")
        assert headers["content-type"] == "application/problem+json"
        assert headers["retry-after"] == "1"
        assert json.loads(body)["type"].endswith("/unavailable")
    finally:
        for sock in held:
            sock.close()
    metrics = parse_metrics(server.metrics_text())
    assert metrics["cache_connections_refused_total"] >= 1
    # once the held ones are gone, connections are accepted again
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if read_all(sock).startswith(b"HTTP/1.1 200"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the listener did not accept connections again")


def test_a_trickled_request_head_is_cut_at_the_header_deadline(
    server_process: ServerFactory,
) -> None:
    server = server_process(env={"CACHE_SERVER_HEADER_TIMEOUT": "1"}).start()
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\n")
    closed_after = None
    for n in range(40):  # a header byte every 0.1 s, for up to 4 s
        try:
            sock.sendall(b"X-Slow-%d: 1\r\n" % n)
            sock.settimeout(0.1)
            if sock.recv(65536) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            closed_after = time.monotonic() - started
            break
    sock.close()
    assert closed_after is not None, "the trickling connection was never closed"
    assert closed_after < 3.0


def test_parser_refusals_are_problem_json_without_the_input(server: ServerProcess) -> None:
    marker = "Z" * 9000
    cases = {
        "long request line": f"GET /{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (n, b"ZZZZ") for n in range(300))
        + b"\r\n",
        "bad chunk size": b"POST /v1/images HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZZZ\r\nabc\r\n0\r\n\r\n",
    }
    for name, request in cases.items():
        sock = connect(server)
        sock.sendall(request)
        status, headers, body = head_and_body(read_all(sock))
        sock.close()
        assert status.split()[1] in ("400", "413"), (name, status)
        assert headers["content-type"].split(";")[0] == "application/problem+json", name
        problem = json.loads(body)
        assert problem["status"] == int(status.split()[1]), name
        assert b"ZZZZ" not in body, f"{name}: the answer echoes the request"
