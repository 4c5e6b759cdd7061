"""Every limit hit once, and hostile inputs: each gets the right 4xx and nothing is stored."""

from __future__ import annotations

import pytest

from tests.support import images
from tests.support.service import Service, ServiceFactory, make_config


async def assert_refused(
    service: Service, data: bytes, status: int, slug: str, **query: object
) -> None:
    response = await service.upload(data, **query)
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["type"].endswith("/" + slug), problem
    assert problem["status"] == status
    assert len(service.rt.store) == 0
    metrics = await service.metrics()
    assert metrics["cache_items"] == 0
    assert metrics.get(f'cache_rejected_total{{reason="{slug}"}}', 0) >= 1


@pytest.fixture(params=["structure", "decode"])
async def leveled(request: pytest.FixtureRequest, make_service: ServiceFactory) -> Service:
    """A service at each `limits.verify` level: every refusal holds under both."""
    return await make_service(make_config(limits={"verify": request.param}))


@pytest.mark.parametrize(
    ("name", "data", "status", "slug"),
    [
        ("png bomb (side cap)", images.png_bomb(20000, 20000), 422, "image-dimensions-exceeded"),
        ("png bomb (pixel cap)", images.png_bomb(10000, 10000), 422, "image-dimensions-exceeded"),
        ("gif bomb (logical screen)", images.gif_bomb(), 422, "image-dimensions-exceeded"),
        ("truncated jpeg", images.truncated_jpeg(), 422, "invalid-image"),
        ("png with a bad CRC", images.png_bad_crc(), 422, "invalid-image"),
        ("random bytes", images.random_bytes(), 415, "unsupported-format"),
        ("html", images.HTML, 415, "unsupported-format"),
        ("svg", images.SVG, 415, "unsupported-format"),
        ("pdf", images.PDF, 415, "unsupported-format"),
        ("tiff (real image, not allowed)", images.tiff(), 415, "unsupported-format"),
        ("gif with 300 frames", images.gif_many_frames(300), 422, "image-dimensions-exceeded"),
        (
            "jpeg magic then garbage",
            b"\xff\xd8\xff\xe0" + images.random_bytes(2000),
            422,
            "invalid-image",
        ),
        ("png signature only", b"\x89PNG\r\n\x1a\n", 422, "invalid-image"),
        ("html after the jpeg end", images.trailing_polyglot(), 422, "invalid-image"),
    ],
)
async def test_hostile_inputs(
    leveled: Service, name: str, data: bytes, status: int, slug: str
) -> None:
    service = leveled
    await assert_refused(service, data, status, slug)
    rejected = service.audit.events("rejected")
    assert rejected[-1]["reason"] == slug and "id" not in rejected[-1]


async def test_polyglot_is_stored_but_served_as_its_image_type(leveled: Service) -> None:
    service = leveled
    created = await service.upload_ok(images.polyglot())
    response = await service.client.get(f"/v1/images/{created['id']}")
    assert response.content_type == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"


async def test_empty_body_is_400(service: Service) -> None:
    await assert_refused(service, b"", 400, "bad-request")


async def test_upload_size_cap_by_count_and_by_content_length(make_service: ServiceFactory) -> None:
    data = images.png((300, 300))
    service = await make_service(make_config(limits={"max_upload_bytes": len(data) - 1}))
    await assert_refused(service, data, 413, "payload-too-large")

    async def stream() -> object:  # no Content-Length: the running count must stop it
        for start in range(0, len(data), 100):
            yield data[start : start + 100]

    response = await service.client.post("/v1/images", data=stream())
    assert response.status == 413
    assert len(service.rt.store) == 0


async def test_upload_exactly_at_the_cap_is_accepted(make_service: ServiceFactory) -> None:
    data = images.png((300, 300))
    service = await make_service(make_config(limits={"max_upload_bytes": len(data)}))
    await service.upload_ok(data)


async def test_side_pixel_and_frame_caps(make_service: ServiceFactory) -> None:
    service = await make_service(
        make_config(limits={"max_side": 100, "max_pixels": 5000, "max_frames": 3})
    )
    await assert_refused(service, images.png((101, 10)), 422, "image-dimensions-exceeded")
    await assert_refused(service, images.png((10, 101)), 422, "image-dimensions-exceeded")
    await assert_refused(service, images.png((80, 80)), 422, "image-dimensions-exceeded")
    await assert_refused(service, images.gif_many_frames(4), 422, "image-dimensions-exceeded")
    await service.upload_ok(images.png((100, 50)))
    await service.upload_ok(images.gif_many_frames(3))


async def test_formats_list_is_enforced(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(limits={"formats": ["PNG"]}))
    await assert_refused(service, images.jpeg(), 415, "unsupported-format")
    await service.upload_ok(images.png())


async def test_blocklisted_hash_is_451_and_never_stored(
    make_service: ServiceFactory, tmp_path: object
) -> None:
    import hashlib
    from pathlib import Path

    data = images.jpeg()
    listing = Path(str(tmp_path)) / "bad.txt"
    listing.write_text("# known bad\n" + hashlib.sha256(data).hexdigest() + "\n")
    service = await make_service(make_config(blocklist={"sha256_files": [str(listing)]}))
    await assert_refused(service, data, 451, "blocklisted")
    metrics = await service.metrics()
    assert metrics['cache_blocklist_matches_total{kind="sha256"}'] == 1
    assert service.audit.events("rejected")[-1]["sha256"] == hashlib.sha256(data).hexdigest()
    await service.upload_ok(images.png())
