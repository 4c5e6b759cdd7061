"""The async client and the ops CLI against a real running server (`module_server`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from cache.client import CacheClient, OpsClient, ProblemError
from cache.ctl import default_ops_url, glued_ids
from tests.support import ROOT, images
from tests.support.serverproc import TOKEN, ServerProcess


def ctl(
    server: ServerProcess, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHE_")}
    if token is not None:
        env["CACHE_OPS_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cache.ctl", "--ops-url", server.ops_url, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_public_client_round_trip(module_server: ServerProcess) -> None:
    async with CacheClient(module_server.url) as client:
        data = images.jpeg((200, 100))
        stored = await client.upload(data, ttl=30, max_reads=3)
        assert stored.media_type == "image/jpeg" and stored.width == 200 and stored.reads_left == 3
        assert await client.read(stored.id) == data
        assert (await client.thumbnail(stored.id, 32)).startswith(b"\xff\xd8")
        assert (await client.meta(stored.id))["reads"] == 1
        await client.delete(stored.id)
        with pytest.raises(ProblemError) as missing:
            await client.read(stored.id)
        assert missing.value.status == 404 and missing.value.slug == "not-found"
        with pytest.raises(ProblemError) as bad:
            await client.upload(data, ttl=10_000)
        assert bad.value.slug == "invalid-parameter" and "ttl" in bad.value.detail
        with pytest.raises(ProblemError) as forbidden:
            await client.fetch_url("http://169.254.169.254/latest/meta-data")
        assert forbidden.value.status == 403


async def test_ops_client(module_server: ServerProcess) -> None:
    data = images.png((30, 30))
    sha = hashlib.sha256(data).hexdigest()
    async with (
        CacheClient(module_server.url) as client,
        OpsClient(module_server.ops_url, TOKEN) as ops,
    ):
        stored = await client.upload(data)
        assert any(item["id"] == stored.id for item in await ops.items(sha256=sha))
        assert "cache_items" in await ops.metrics_text()
        checks = await ops.guarantees()
        assert {c.check for c in checks} >= {"storage_is_ram", "core_dumps_off"}
        result = await ops.purge_sha256(sha)
        assert [r.id for r in result.receipts] == [stored.id]
        assert result.receipts[0].reason == "admin"
        added = await ops.blocklist_add([sha])
        assert added.purged == 0 and sha in await ops.blocklist()
        with pytest.raises(ProblemError) as refused:
            await client.upload(data)
        assert refused.value.status == 451
        assert await ops.blocklist_remove([sha]) == 1
    async with OpsClient(module_server.ops_url, "wrong") as bad_ops:
        with pytest.raises(ProblemError) as denied:
            await bad_ops.items()
        assert denied.value.status == 401


def test_ctl_items_purge_guarantees_stats(module_server: ServerProcess) -> None:
    created = module_server.upload(images.gif())
    items = ctl(module_server, "items")
    assert items.returncode == 0 and created["id"] in items.stdout
    purge = ctl(module_server, "purge", "--id", created["id"], "--id", "AAAAAAAAAAAAAAAAAAAAAA")
    assert purge.returncode == 0
    lines = purge.stdout.splitlines()
    assert lines[0].startswith(f"purged {created['id']} sha256={created['sha256']}")
    assert "not found AAAAAAAAAAAAAAAAAAAAAA" in lines
    module_server.upload(images.png())
    everything = ctl(module_server, "purge", "--all")
    assert everything.returncode == 0 and everything.stdout.splitlines()[-1] == "1 purged"
    by_hash = ctl(module_server, "purge", "--sha256", "0" * 64)
    assert by_hash.returncode == 0 and by_hash.stdout.strip() == "0 purged"
    guarantees = ctl(module_server, "guarantees")
    assert guarantees.returncode == 0 and "core_dumps_off" in guarantees.stdout
    stats = ctl(module_server, "stats")
    assert stats.returncode == 0
    assert "items held" in stats.stdout and "purged" in stats.stdout and "admin=" in stats.stdout


def test_an_id_that_begins_with_a_dash_is_an_id_not_an_option(
    module_server: ServerProcess,
) -> None:
    dashed = "-" + "A" * 21  # URL-safe base64: one id in 64 begins with "-"
    purge = ctl(module_server, "purge", "--id", dashed)
    assert purge.returncode == 0, purge.stderr
    assert f"not found {dashed}" in purge.stdout.splitlines()
    assert glued_ids(["purge", "--id", "-x", "--id", "y"]) == ["purge", "--id=-x", "--id=y"]


def test_ctl_api_errors_exit_1_with_one_line(module_server: ServerProcess) -> None:
    denied = ctl(module_server, "items", token="wrong")
    assert denied.returncode == 1
    assert denied.stderr.strip().splitlines() == [denied.stderr.strip()]
    assert "401" in denied.stderr
    bad = ctl(module_server, "purge", "--sha256", "xyz")
    assert bad.returncode == 1 and "invalid-parameter" in bad.stderr


def test_default_ops_url_from_env_or_config() -> None:
    assert default_ops_url({"CACHE_OPS_URL": "http://ops:9"}) == "http://ops:9"
    assert default_ops_url({"CACHE_OPS_PORT": "9191"}) == "http://127.0.0.1:9191"
