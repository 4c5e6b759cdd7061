"""`server.py` for real: serve, SIGTERM, purge everything, exit 0.

Each test gets its own process, the `server` fixture (tests/process/conftest.py).
"""

from __future__ import annotations

import signal

from tests.support import images
from tests.support.serverproc import ServerProcess


def test_sigterm_purges_every_item_and_exits_0(server: ServerProcess) -> None:
    ids = {server.upload(images.jpeg(), "?ttl=300")["id"] for _ in range(5)}
    status, body = server.request("GET", f"/v1/images/{next(iter(ids))}")
    assert status == 200 and body.startswith(b"\xff\xd8")
    assert server.stop(signal.SIGTERM) == 0
    purged = {e["id"]: e for e in server.audit("purged") if "id" in e}
    assert set(purged) == ids
    assert all(e["reason"] == "shutdown" for e in purged.values())
    stored = server.audit("stored")
    assert {e["id"] for e in stored} == ids
    for line in server.stdout.splitlines():  # the audit log never carries bytes
        assert "\\xff" not in line and len(line) < 2000


def test_sigint_also_purges(server: ServerProcess) -> None:
    created = server.upload(images.png())
    assert server.stop(signal.SIGINT) == 0
    assert [e["reason"] for e in server.audit("purged") if e.get("id") == created["id"]] == [
        "shutdown"
    ]


def test_audit_is_clean_json_on_stdout_and_logs_on_stderr(server: ServerProcess) -> None:
    server.upload(images.png())
    server.request("POST", "/v1/images", images.HTML)
    server.stop()
    for line in server.stdout.splitlines():
        assert line.startswith("{"), line
    events = [e["event"] for e in server.audit()]
    assert "stored" in events and "rejected" in events
    assert "serving on" in server.stderr
