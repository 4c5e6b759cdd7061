"""Hash lists in a real `server.py`: a bad list file stops start-up (exit 2, one line naming
the file and line), and SIGHUP re-reads the files (a bad one keeps the lists in force)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support import images
from tests.support.pdq_images import digest
from tests.support.serverproc import ServerFactory, ServerProcess
from tests.support.service import parse_metrics
from tests.support.waiting import wait_for


def metric(server: ServerProcess, name: str) -> float:
    return parse_metrics(server.metrics_text()).get(name, -1.0)


def test_a_bad_list_line_stops_start_up_with_exit_2(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "md5.txt"
    path.write_text("# vendor list\n" + "0" * 32 + "\n" + "0" * 31 + "\n")
    node = server_process(env={"CACHE_BLOCKLIST_MD5_FILES": json.dumps([str(path)])})
    with pytest.raises(RuntimeError) as failed:
        node.start()
    assert str(failed.value) == (
        f"server exited 2: query-cache: blocklist.md5_files: {path}:3: "
        "hash has 31 hex digits, expected 32\n"
    )


def test_sighup_reloads_and_a_bad_file_keeps_the_lists(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    first, second = images.jpeg(), images.png()
    path = tmp_path / "sha256.txt"
    path.write_text(digest("sha256", first) + "\n")
    server = server_process(env={"CACHE_BLOCKLIST_SHA256_FILES": json.dumps([str(path)])})
    server.start()
    assert server.request("POST", "/v1/images", first)[0] == 451
    held = server.upload(second)
    assert server.proc is not None

    path.write_text(digest("sha256", second) + "\nnot a hash\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: metric(server, "cache_blocklist_last_reload_ok") == 0, what="a failed reload")
    assert metric(server, "cache_blocklist_reload_failures_total") == 1
    assert server.request("POST", "/v1/images", first)[0] == 451  # the old list stays
    assert server.request("GET", f"/v1/images/{held['id']}/meta")[0] == 200

    path.write_text(digest("sha256", second) + "\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: metric(server, "cache_blocklist_last_reload_ok") == 1, what="a reload")
    assert server.request("POST", "/v1/images", second)[0] == 451
    assert server.request("GET", f"/v1/images/{held['id']}/meta")[0] == 404  # purged
    assert metric(server, 'cache_purged_total{reason="blocklist"}') == 1
    server.upload(first)

    assert server.stop() == 0
    assert (
        f"hash-list reload failed, the lists in force stay: blocklist.sha256_files: {path}:2:"
        in (server.stderr)
    )
    assert "hash lists reloaded" in server.stderr
    reloads = [e for e in server.audit("blocklist") if e["action"] == "reload"]
    assert [e["ok"] for e in reloads] == [False, True] and reloads[1]["purged"] == 1
    (purge,) = [e for e in server.audit("purged") if e.get("reason") == "blocklist"]
    assert purge["id"] == held["id"]
