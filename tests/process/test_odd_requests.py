"""Issue 12's odd requests against a real server process, over raw sockets where the bytes
matter (aiohttp's parser, header decoding, content codings): each is a problem+json
400/413/415 with its `rejected` audit line and metric, a client that hangs up mid-body is
a 499 and one INFO line, and the server's log has no traceback at the end."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import images
from tests.support.serverproc import TOKEN, ServerProcess
from tests.support.service import parse_metrics
from tests.support.waiting import wait_for

MULTIPART = "multipart/form-data; boundary=b"
DEEP = b"[" * 30_000 + b"]" * 30_000


@pytest.fixture(scope="module")
def odd_server() -> Iterator[ServerProcess]:
    env = {
        "CACHE_LIMITS_BODY_IDLE_TIMEOUT": "0.5",
        "CACHE_LIMITS_MAX_UPLOADS_IN_FLIGHT": "1",
        "CACHE_STORAGE_MAX_BYTES": "200000",
        "CACHE_LIMITS_MAX_UPLOAD_BYTES": "150000",
    }
    proc = ServerProcess(env=env).start()
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.stderr and " ERROR " not in proc.stderr, proc.stderr


def exchange(port: int, head: bytes, body: bytes = b"", hang_up: bool = False) -> bytes:
    """Send a request as bytes; the whole answer (the server closes: Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if hang_up:
            return b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [v for k, _, v in (f.partition(b":") for f in head.split(b"\r\n"))
                      if k.lower() == b"content-length"]
            if length and len(body) >= int(length[0]):
                break
        return answer


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if method in ("POST", "PUT", "PATCH") and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return parse(exchange(port, "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n", body))


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    if headers.get("content-type", "").startswith("application/problem+json"):
        return int(status_line.split()[1]), headers, json.loads(body)
    return int(status_line.split()[1]), headers, body


def refused(server: ServerProcess, answer: tuple[int, dict[str, str], Any], status: int) -> str:
    code, headers, body = answer
    assert code == status, body
    assert headers["content-type"].startswith("application/problem+json")
    slug = str(body["type"].rsplit("/", 1)[1])
    metrics = parse_metrics(server.metrics_text())
    assert metrics[f'cache_rejected_total{{reason="{slug}"}}'] >= 1
    return slug


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"--b\r\n[]--b--\r\n", id="part-without-headers"),
        pytest.param(b"--b\r\nX-A: " + b"a" * 60_000 + b"\r\n\r\nx\r\n--b--\r\n", id="60KB-line"),
        pytest.param(
            b"--b\r\n" + b"".join(b"X-%d: a\r\n" % n for n in range(2000)) + b"\r\nx\r\n--b--\r\n",
            id="2000-headers",
        ),
    ],
)
def test_odd_multipart_is_400(odd_server: ServerProcess, body: bytes) -> None:
    answer = request(odd_server.port, "POST", "/v1/images", body, {"Content-Type": MULTIPART})
    assert refused(odd_server, answer, 400) == "bad-request"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(DEEP, "application/json", 400, id="nested-30000"),
        pytest.param(b'{"url": "http://a/", "ttl": ' + b"9" * 5000 + b"}", "application/json",
                     400, id="5000-digit-integer"),
        pytest.param(b'{"url": "http://a/"}', "application/json; charset=x-klingon", 415,
                     id="unknown-charset"),
    ],
)
def test_odd_json_on_fetch(
    odd_server: ServerProcess, body: bytes, content_type: str, status: int
) -> None:
    answer = request(
        odd_server.port, "POST", "/v1/images/fetch", body, {"Content-Type": content_type}
    )
    refused(odd_server, answer, status)
    assert odd_server.request("GET", "/healthz")[0] == 200


def test_odd_admin_calls(odd_server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    deep = request(odd_server.ops_port, "POST", "/admin/purge", b'{"ids": ' + DEEP + b"}", auth)
    assert refused(odd_server, deep, 400) == "bad-request"
    head = b"GET /admin/items HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    answer = parse(exchange(odd_server.ops_port, head + b"Authorization: Bearer \xff\xfe\r\n\r\n"))
    assert refused(odd_server, answer, 400) == "bad-request"


@pytest.mark.parametrize("path", ["/v1/images", "/v1/images/fetch"])
def test_invalid_deflate_body_is_415(odd_server: ServerProcess, path: str) -> None:
    answer = request(
        odd_server.port, "POST", path, b"this is not deflate",
        {"Content-Encoding": "deflate", "Content-Type": "application/json"},
    )
    assert refused(odd_server, answer, 415) == "unsupported-encoding"
    assert answer[1]["accept-encoding"] == "identity"


def test_405_has_allow(odd_server: ServerProcess) -> None:
    status, headers, _ = request(odd_server.port, "PUT", "/v1/images")
    assert status == 405 and headers["allow"] == "POST"


def test_head_never_spends_a_read(odd_server: ServerProcess) -> None:
    data = images.png()
    item = odd_server.upload(data, "?max_reads=1")
    for _ in range(2):
        status, headers, _ = request(odd_server.port, "HEAD", f"/v1/images/{item['id']}")
        assert status == 200 and headers["content-length"] == str(len(data))
    assert odd_server.request("GET", f"/v1/images/{item['id']}") == (200, data)
    assert odd_server.request("GET", f"/v1/images/{item['id']}")[0] == 404


def test_a_client_that_hangs_up_mid_body_is_499_not_500(odd_server: ServerProcess) -> None:
    head = b"POST /v1/images HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
    exchange(odd_server.port, head, b"\x89PNG" + b"\0" * 1000, hang_up=True)

    def counted() -> float:
        metrics = parse_metrics(odd_server.metrics_text())
        return sum(
            value
            for key, value in metrics.items()
            if key.startswith("cache_request_duration_seconds_count{")
            and 'status="499"' in key and 'route="/v1/images"' in key
        )

    wait_for(counted, what="the aborted upload to be counted as 499")
    metrics = parse_metrics(odd_server.metrics_text())
    assert metrics['cache_rejected_total{reason="client-closed"}'] >= 1
    assert not any('status="500"' in key for key in metrics)
    # Everything it held is released: the one upload slot, and its 100,000 bytes in flight
    # (another 150,000 would not fit beside them: 503; it is read, and refused as no image).
    status, _, body = request(odd_server.port, "POST", "/v1/images", b"\0" * 150_000)
    assert status == 415, body


def test_a_stalled_body_is_408(odd_server: ServerProcess) -> None:
    head = b"POST /v1/images HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
    answer = parse(exchange(odd_server.port, head, b"\x89PNG"))  # then nothing
    assert refused(odd_server, answer, 408) == "request-timeout"


def test_the_log_has_one_info_line_per_hang_up(odd_server: ServerProcess) -> None:
    odd_server.stop()
    lines = [line for line in odd_server.stderr.splitlines() if "(499)" in line]
    assert lines and all(" INFO " in line for line in lines), odd_server.stderr
    rejected = [e for e in odd_server.audit("rejected") if e["reason"] == "client-closed"]
    assert rejected and rejected[0]["status"] == 499
