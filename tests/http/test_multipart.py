"""multipart/form-data uploads: the first part named `file` is the image; every bound of
the reader (parts, preamble, header block, header count, other fields, epilogue) has a
test that hits it, and each refusal is a 400/413 with its `rejected` line and metric."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from cache.http import multipart as mp
from tests.support import images
from tests.support.service import Service, ServiceFactory, make_config

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str | None, body: bytes, *headers: bytes) -> bytes:
    lines = list(headers)
    if name is not None:
        lines.insert(0, f'Content-Disposition: form-data; name="{name}"'.encode())
    head = b"".join(line + b"\r\n" for line in lines)
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n" + body + b"\r\n"


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n" + epilogue


async def post(service: Service, data: bytes) -> aiohttp.ClientResponse:
    return await service.client.post(
        "/v1/images", data=data, headers={"Content-Type": CONTENT_TYPE}
    )


async def refused(service: Service, data: bytes, status: int = 400) -> dict[str, Any]:
    response = await post(service, data)
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    problem = dict(await response.json())
    slug = problem["type"].rsplit("/", 1)[1]
    assert service.audit.events("rejected")[-1]["reason"] == slug
    assert (await service.metrics())[f'cache_rejected_total{{reason="{slug}"}}'] >= 1
    return problem


async def test_first_file_part_is_the_image_other_fields_dropped(service: Service) -> None:
    png, jpeg = images.png(), images.jpeg()
    data = body(part("note", b"hello"), part("file", png), part("file", jpeg), part("x", b"1"))
    response = await post(service, data)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["media_type"] == "image/png" and created["size"] == len(png)


async def test_a_browser_form_is_read(service: Service) -> None:
    form = aiohttp.FormData()
    form.add_field("caption", "x")
    form.add_field("file", images.gif(), filename="../../etc/passwd", content_type="text/html")
    response = await service.client.post("/v1/images", data=form)
    assert response.status == 201 and (await response.json())["media_type"] == "image/gif"


async def test_preamble_padding_and_epilogue_within_bounds(service: Service) -> None:
    data = body(part("file", images.png()), preamble=b"ignored\r\n", epilogue=b"bye\r\n")
    data = data.replace(b"--" + BOUNDARY.encode() + b"\r\n", b"--" + BOUNDARY.encode() + b" \t\r\n")
    assert (await post(service, data)).status == 201


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"--" + BOUNDARY.encode() + b"\r\n[]--" + BOUNDARY.encode() + b"--\r\n",
                     id="part-without-headers"),
        pytest.param(body(part(None, images.png())), id="part-with-empty-header-block"),
        pytest.param(body(part("image", images.png())), id="no-file-part"),
        pytest.param(body(), id="no-parts"),
        pytest.param(b"not multipart at all", id="no-delimiter"),
        pytest.param(body(part("file", images.png()))[:-12], id="truncated"),
        pytest.param(body(part("file", images.png()), preamble=b"p" * (mp.MAX_PREAMBLE + 1)),
                     id="preamble-over-bound"),
        pytest.param(body(part("file", images.png()), epilogue=b"e" * (mp.MAX_PREAMBLE + 1)),
                     id="epilogue-over-bound"),
        pytest.param(body(part("file", images.png(), b"X-Long: " + b"a" * 60_000)),
                     id="60KB-header-line"),
        pytest.param(body(part("file", images.png(), *[b"X-%d: a" % n for n in range(2000)])),
                     id="2000-headers"),
        pytest.param(body(part("file", images.png(), *[b"X-%d: a" % n for n in range(16)])),
                     id="17-headers"),
        pytest.param(body(part("file", images.png(), b"no colon here")), id="bad-header-line"),
        pytest.param(body(*[part("f", b"") for _ in range(mp.MAX_PARTS)], part("file", b"x")),
                     id="too-many-parts"),
        pytest.param(body(*[part("", b"") for _ in range(20_000)]), id="20000-empty-parts"),
        pytest.param(body(part("note", b"n" * (mp.MAX_FIELD_BYTES + 1)), part("file", b"x")),
                     id="field-over-bound"),
        pytest.param(body(part("file", images.png())).replace(b"\r\n", b"\r\r", 1),
                     id="delimiter-without-crlf"),
    ],
)
async def test_malformed_or_over_a_bound_is_400(service: Service, data: bytes) -> None:
    problem = await refused(service, data)
    assert problem["status"] == 400 and "Traceback" not in problem["detail"]


async def test_the_bounds_are_what_the_tests_say(service: Service) -> None:
    header_block = [b"X-%d: a" % n for n in range(mp.MAX_HEADERS - 1)]  # + Content-Disposition
    assert (await post(service, body(part("file", images.png(), *header_block)))).status == 201
    fields = [part("f", b"v" * mp.MAX_FIELD_BYTES) for _ in range(mp.MAX_PARTS - 1)]
    assert (await post(service, body(*fields, part("file", images.png())))).status == 201


async def test_image_part_over_the_upload_cap_is_413(make_service: ServiceFactory) -> None:
    service = await make_service(make_config(limits={"max_upload_bytes": 4096}))
    data = body(part("file", b"\x89PNG" + b"0" * 3000), part("other", b"1" * 2000))
    response = await service.client.post(
        "/v1/images",
        data=data[:4000] + data[4000:],
        headers={"Content-Type": CONTENT_TYPE},
        chunked=True,
    )
    assert response.status == 413, await response.text()


async def test_boundary_missing_or_too_long_is_400(service: Service) -> None:
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=" + "b" * 71):
        response = await service.client.post(
            "/v1/images", data=body(part("file", images.png())),
            headers={"Content-Type": content_type},
        )
        assert response.status == 400
