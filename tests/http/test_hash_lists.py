"""Hash lists over real HTTP: refusals of every kind (451, nothing stored, the audit line
says which list; the client is told nothing more), runtime add and purge with receipts,
purge by hash, PDQ off, and a reload with a bad file keeping the lists in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support import images
from tests.support.pdq_images import BRIDGE, digest, flat_png, reference_hashes, transposed
from tests.support.pdq_images import vendored as bridge
from tests.support.service import Service, ServiceFactory, make_config

EXACT = ("sha256", "md5", "sha1")


def listing(tmp_path: Path, name: str, *lines: str) -> str:
    path = tmp_path / name
    path.write_text("# test list\n" + "".join(f"{line}\n" for line in lines))
    return str(path)


async def refused(service: Service, data: bytes) -> dict[str, Any]:
    """Upload `data`, expect 451 with nothing stored; the public body and the audit line."""
    response = await service.upload(data)
    assert response.status == 451, await response.text()
    problem = await response.json()
    assert problem["type"].endswith("/blocklisted")
    assert set(problem) == {"type", "title", "status", "detail", "instance"}  # no list
    assert len(service.rt.store) == 0 or not [
        it for it in await service.rt.store.list_items() if it.sha256 == digest("sha256", data)
    ]
    line = service.audit.events("rejected")[-1]
    assert line["reason"] == "blocklisted" and line["sha256"] == digest("sha256", data)
    return line


async def admin(service: Service, method: str, path: str, body: Any = None) -> Any:
    response = await service.ops.request(method, path, json=body, headers=service.admin_headers)
    return response.status, await response.json()


@pytest.mark.parametrize("kind", EXACT)
async def test_listed_digest_is_refused(
    make_service: ServiceFactory, tmp_path: Path, kind: str
) -> None:
    data = images.jpeg()
    path = listing(tmp_path, f"{kind}.txt", digest(kind, data).upper())
    service = await make_service(make_config(blocklist={f"{kind}_files": [path]}))
    line = await refused(service, data)
    assert line["kind"] == kind and line["list"] == path and "distance" not in line
    if kind != "sha256":  # the upload's own digests, computed because such a list is loaded
        assert line[kind] == digest(kind, data)
    metrics = await service.metrics()
    assert metrics[f'cache_blocklist_matches_total{{kind="{kind}"}}'] == 1
    assert metrics[f'cache_blocklist_entries{{kind="{kind}"}}'] == 1
    stored = await service.upload_ok(images.png())  # others pass, without a PDQ hash
    assert "pdq" not in stored


async def test_pdq_refuses_rotated_and_mirrored_copies(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    listed, _ = reference_hashes()[BRIDGE]
    path = listing(tmp_path, "pdq.txt", f"{listed},100")
    service = await make_service(make_config(blocklist={"pdq_files": [path]}))
    for transpose in (Image.Transpose.ROTATE_90, Image.Transpose.FLIP_TOP_BOTTOM):
        line = await refused(service, transposed(transpose))
        assert (line["kind"], line["list"], line["listed"]) == ("pdq", path, listed)
        assert 0 <= line["distance"] <= 31 and line["pdq_quality"] == 100
        assert len(line["pdq"]) == 64 and line["pdq"] != listed
    await refused(service, bridge())
    assert service.audit.events("rejected")[-1]["distance"] == 0
    metrics = await service.metrics()
    assert metrics['cache_blocklist_matches_total{kind="pdq"}'] == 3
    # Anything else is stored with its PDQ hash: 201 body, /meta, /admin/items, audit.
    other = await service.upload_ok(images.png())
    assert len(other["pdq"]) == 64 and isinstance(other["pdq_quality"], int)
    meta = await (await service.client.get(f"/v1/images/{other['id']}/meta")).json()
    assert (meta["pdq"], meta["pdq_quality"]) == (other["pdq"], other["pdq_quality"])
    _, held = await admin(service, "GET", "/admin/items")
    assert held["items"][0]["pdq"] == other["pdq"]
    assert service.audit.events("stored")[-1]["pdq"] == other["pdq"]


async def test_low_quality_hashes_never_match(make_service: ServiceFactory, tmp_path: Path) -> None:
    flat = flat_png()
    service = await make_service(make_config(blocklist={"pdq_mode": "on"}))
    stored = await service.upload_ok(flat)
    assert stored["pdq_quality"] < 50
    status, body = await admin(service, "POST", "/admin/blocklist", {"pdq": stored["pdq"]})
    assert status == 200 and body["added"] == 1 and body["purged"] == 0  # not the held copy
    await service.upload_ok(flat)  # nor a new one


async def test_runtime_add_purges_held_copies_with_receipts(service: Service) -> None:
    data, other = images.jpeg(), images.png()
    held = [await service.upload_ok(data), await service.upload_ok(data)]
    kept = await service.upload_ok(other)
    status, body = await admin(service, "POST", "/admin/blocklist", {"md5": digest("md5", data)})
    assert status == 200 and body["added"] == 1 and body["purged"] == 2
    assert {r["id"] for r in body["receipts"]} == {h["id"] for h in held}
    assert {r["reason"] for r in body["receipts"]} == {"blocklist"}
    assert (await service.client.get(f"/v1/images/{kept['id']}/meta")).status == 200
    line = await refused(service, data)  # MD5 is computed from now on
    assert (line["kind"], line["list"], line["md5"]) == ("md5", "admin", digest("md5", data))
    metrics = await service.metrics()
    assert metrics['cache_purged_total{reason="blocklist"}'] == 2
    _, listed = await admin(service, "GET", "/admin/blocklist")
    assert listed["md5"] == [digest("md5", data)] and listed["entries"]["md5"] == 1
    status, body = await admin(
        service, "DELETE", "/admin/blocklist", {"md5": [digest("md5", data)]}
    )
    assert status == 200 and body["removed"] == 1
    await service.upload_ok(data)


async def test_runtime_pdq_add_purges_near_copies(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(blocklist={"pdq_mode": "on"}))
    held = await service.upload_ok(bridge())
    other = await service.upload_ok(images.png())
    near = reference_hashes()[BRIDGE][0][:-1] + "0"  # a few bits off the held hash
    status, body = await admin(service, "POST", "/admin/blocklist", {"pdq": [near]})
    assert status == 200 and [r["id"] for r in body["receipts"]] == [held["id"]]
    line = await refused(service, transposed(Image.Transpose.ROTATE_270))
    assert line["list"] == "admin" and line["listed"] == near
    assert (await service.client.get(f"/v1/images/{other['id']}/meta")).status == 200


@pytest.mark.parametrize("kind", ["md5", "sha1", "pdq"])
async def test_purge_by_hash_gives_receipts(make_service: ServiceFactory, kind: str) -> None:
    service = await make_service(make_config(blocklist={"pdq_mode": "on"}))
    target = await service.upload_ok(bridge())
    await service.upload_ok(images.png())
    selector: dict[str, Any] = {kind: digest(kind, bridge()) if kind != "pdq" else target["pdq"]}
    if kind == "pdq":
        flipped = "0" if selector["pdq"][0] != "0" else "1"
        selector = {"pdq": flipped + selector["pdq"][1:], "max_distance": 4}
    status, body = await admin(service, "POST", "/admin/purge", selector)
    assert status == 200 and body["purged"] == 1
    assert body["receipts"][0]["id"] == target["id"] and body["receipts"][0]["reason"] == "admin"
    assert len(service.rt.store) == 1
    await service.upload_ok(bridge())  # a purge lists nothing


async def test_pdq_off_answers_409(service: Service) -> None:
    for path, body in (
        ("/admin/blocklist", {"pdq": ["0" * 64]}),
        ("/admin/purge", {"pdq": "0" * 64, "max_distance": 10}),
    ):
        status, problem = await admin(service, "POST", path, body)
        assert status == 409 and problem["type"].endswith("/conflict")
        assert "pdq_mode" in problem["detail"]
    assert "pdq" not in await service.upload_ok(images.png())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/blocklist", {"sha256": ["a" * 64], "md5": ["nothex"]}),
        ("/admin/blocklist", {"sha512": ["a" * 128]}),
        ("/admin/blocklist", {}),
        ("/admin/purge", {"pdq": "0" * 64, "max_distance": 64}),
        ("/admin/purge", {"md5": "0" * 32, "max_distance": 3}),
        ("/admin/purge", {"sha1": "0" * 32}),
    ],
)
async def test_malformed_hash_calls_are_400_and_change_nothing(
    make_service: ServiceFactory, path: str, body: dict[str, Any]
) -> None:
    service = await make_service(make_config(blocklist={"pdq_mode": "on"}))
    status, _ = await admin(service, "POST", path, body)
    assert status == 400
    assert service.rt.blocklist.counts() == dict.fromkeys(("sha256", "md5", "sha1", "pdq"), 0)


async def test_reload_with_a_bad_file_keeps_the_lists_in_force(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    first, second = images.jpeg(), images.png()
    path = listing(tmp_path, "sha1.txt", digest("sha1", first))
    service = await make_service(make_config(blocklist={"sha1_files": [path]}))
    held = await service.upload_ok(second)
    listing(tmp_path, "sha1.txt", digest("sha1", second), "not a hash")
    status, problem = await admin(service, "POST", "/admin/blocklist/reload")
    assert status == 422 and problem["type"].endswith("/invalid-hash-list")
    assert f"blocklist.sha1_files: {path}:3: " in problem["detail"]
    await refused(service, first)  # the old list is still in force
    assert (await service.client.get(f"/v1/images/{held['id']}/meta")).status == 200
    metrics = await service.metrics()
    assert metrics["cache_blocklist_last_reload_ok"] == 0
    assert metrics["cache_blocklist_reload_failures_total"] == 1
    assert service.audit.events("blocklist")[-1]["ok"] is False
    listing(tmp_path, "sha1.txt", digest("sha1", second))
    status, body = await admin(service, "POST", "/admin/blocklist/reload")
    assert status == 200 and body["entries"]["sha1"] == 1
    assert [(r["id"], r["reason"]) for r in body["receipts"]] == [(held["id"], "blocklist")]
    await refused(service, second)
    await service.upload_ok(first)
    assert (await service.metrics())["cache_blocklist_last_reload_ok"] == 1
