"""Hash-list entries added through one node's admin API are refused by every node: they are
kept in Redis (`{bl}` sets and a version counter) and each node's 1 s job takes them up.
Two in-process nodes on a real Redis (one server, then a 3-master cluster)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from PIL import Image

from tests.support import images
from tests.support.nodes import Nodes
from tests.support.pdq_images import BRIDGE, digest, reference_hashes, transposed
from tests.support.service import Service

SYNC_WAIT = 5.0  # s: the job runs every second, on real time
LISTED_PDQ = reference_hashes()[BRIDGE][0]


async def admin(service: Service, method: str, body: Any) -> Any:
    response = await service.ops.request(
        method, "/admin/blocklist", json=body, headers=service.admin_headers
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + SYNC_WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_hash_added_on_a_is_refused_on_b(nodes: Nodes) -> None:
    a, b = await nodes(blocklist={"pdq_mode": "on"})
    data = images.jpeg()
    held = await b.upload_ok(data)  # held by B before the hash is listed through A
    body = await admin(a, "POST", {"md5": [digest("md5", data)], "pdq": [LISTED_PDQ]})
    assert body["added"] == 2
    # A's add purged B's copy at once: the listing scans the shared store.
    assert [(r["id"], r["reason"]) for r in body["receipts"]] == [(held["id"], "blocklist")]
    assert (await b.client.get(f"/v1/images/{held['id']}/meta")).status == 404
    # B takes the entries up by its own periodic job, within about a second.
    await until(lambda: b.rt.blocklist.counts()["md5"] == 1, "B to take up the entries")
    refused = await b.upload(data)
    assert refused.status == 451
    line = b.audit.events("rejected")[-1]
    assert (line["kind"], line["list"], line["md5"]) == ("md5", "admin", digest("md5", data))
    assert (await b.upload(transposed(Image.Transpose.ROTATE_90))).status == 451
    assert b.audit.events("rejected")[-1]["kind"] == "pdq"
    listing = await (await b.ops.get("/admin/blocklist", headers=b.admin_headers)).json()
    assert listing["md5"] == [digest("md5", data)] and listing["pdq"] == [LISTED_PDQ]
    # A removal through B reaches A the same way.
    assert (await admin(b, "DELETE", {"md5": digest("md5", data)}))["removed"] == 1
    await until(lambda: a.rt.blocklist.counts()["md5"] == 0, "A to see the removal")
    await a.upload_ok(data)


async def test_a_node_started_later_starts_with_the_shared_entries(nodes: Nodes) -> None:
    a, b = await nodes()
    data = images.png()
    await admin(a, "POST", {"sha256": digest("sha256", data)})
    await b.rt.lists.start()  # what start-up does before the listener accepts
    assert b.rt.blocklist.admin_entries("sha256") == [digest("sha256", data)]
    assert (await b.upload(data)).status == 451
