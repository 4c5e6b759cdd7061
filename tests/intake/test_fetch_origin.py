"""The fetcher against a real aiohttp origin on 127.0.0.1, allowed through `fetch.allow_hosts`.

Every other destination still gets the full policy, which is what the redirect tests show.
"""

from __future__ import annotations

import asyncio
import gzip
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from cache.config import FetchConfig
from cache.errors import FetchFailed, FetchForbidden, FetchTimeout, InvalidUrl, PayloadTooLarge
from cache.intake.fetch import USER_AGENT, Fetcher
from tests.support.fetch_support import NetGuard, Sentinel, StubResolver, closed_port

pytestmark = pytest.mark.usefixtures("net_guard")

CAP = 64 * 1024
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 60)).save(out, "PNG")
    return out.getvalue()


class Origin:
    """A small origin whose routes each play one part; records what it saw."""

    def __init__(self) -> None:
        self.png = png_bytes()
        self.bomb = gzip.compress(bytes(16 * 1024 * 1024))  # 16 MiB of zeros, ~16 KiB
        self.headers: list[dict[str, str]] = []
        self.endless_closed = asyncio.Event()
        self.release = asyncio.Event()
        self.target = ""  # where /to redirects

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/image.png", self.image)
        app.router.add_get("/redirect/{n}", self.redirect)
        app.router.add_get("/to", self.to)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/endless", self.endless)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/gzip-bomb", self.gzip_bomb)
        app.router.add_get("/gzip-raw", self.gzip_raw)
        app.router.add_get("/encoded/{encoding}", self.encoded)
        app.router.add_get("/bytes/{n}", self.sized)
        app.router.add_get("/declared-huge", self.declared_huge)
        app.router.add_get("/no-location", self.no_location)
        return app

    async def image(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        return web.Response(body=self.png, content_type="image/png",
                            headers={"Set-Cookie": "session=abc; Path=/"})

    async def redirect(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        n = int(request.match_info["n"])
        # n + 1 redirects, using the Location forms a server may use: path-absolute,
        # path-relative, scheme-relative
        location = (
            "/image.png" if n == 0 else
            [f"//127.0.0.1:{request.url.port}/redirect/{n - 1}", f"/redirect/{n - 1}",
             f"{n - 1}"][n % 3]
        )
        headers = {"Location": location, "Set-Cookie": f"hop{n}=1; Path=/"}
        return web.Response(status=(301, 302, 303, 307, 308)[n % 5], headers=headers)

    async def to(self, request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": self.target})

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(body=self.png)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"\x89PNG" * 4096)
        finally:
            self.endless_closed.set()

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def gzip_bomb(self, request: web.Request) -> web.Response:
        return web.Response(body=self.bomb, headers={"Content-Encoding": "gzip"})

    async def gzip_raw(self, request: web.Request) -> web.Response:
        return web.Response(body=self.bomb, content_type="application/octet-stream")

    async def encoded(self, request: web.Request) -> web.Response:
        headers = {"Content-Encoding": request.match_info["encoding"]}
        return web.Response(body=self.png, headers=headers)

    async def sized(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to trust
        await response.prepare(request)
        await response.write(bytes(int(request.match_info["n"])))
        await response.write_eof()
        return response

    async def declared_huge(self, request: web.Request) -> web.StreamResponse:
        """Claims a huge body and stalls: only an early refusal avoids the timeout."""
        response = web.StreamResponse(headers={"Content-Length": str(10**9)})
        await response.prepare(request)
        await response.write(b"\x89PNG")
        await self.release.wait()
        return response

    async def no_location(self, request: web.Request) -> web.Response:
        return web.Response(status=302)


@pytest.fixture
async def origin(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[Origin, TestServer]]:
    state = Origin()
    server = await aiohttp_server(state.app())
    yield state, server
    state.release.set()


def fetcher_for(server: TestServer, **changes: object) -> Fetcher:
    values: dict[str, object] = {
        "timeout": 5.0, "connect_timeout": 0.5, "max_redirects": 3,
        "allow_hosts": (f"127.0.0.1:{server.port}",), **changes,
    }
    resolver = values.pop("resolver", None)
    return Fetcher(FetchConfig(**values), CAP, resolver=resolver)  # type: ignore[arg-type]


def url(server: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def test_image_fetched_with_fixed_headers(origin: tuple[Origin, TestServer]) -> None:
    state, server = origin
    fetcher = fetcher_for(server)
    first = await fetcher.fetch(url(server, "/image.png?token=s3cret"))
    await fetcher.close()
    assert first.body == bytearray(state.png) and isinstance(first.body, bytearray)
    assert first.host == "127.0.0.1"
    sent = state.headers[0]
    assert sent["User-Agent"] == USER_AGENT
    assert sent["Accept"] == "image/*"
    assert sent["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("redirects", [1, 2, 3])
async def test_redirects_within_the_limit(
    origin: tuple[Origin, TestServer], redirects: int
) -> None:
    state, server = origin
    fetched = await fetcher_for(server).fetch(url(server, f"/redirect/{redirects - 1}"))
    assert fetched.body == bytearray(state.png)
    assert fetched.host == "127.0.0.1"
    assert len(state.headers) == redirects + 1  # each redirect hop plus the final image
    assert not any("Cookie" in sent for sent in state.headers)  # no cookie jar between hops


async def test_redirect_chain_over_the_limit(origin: tuple[Origin, TestServer]) -> None:
    _, server = origin
    with pytest.raises(FetchFailed):
        await fetcher_for(server).fetch(url(server, "/redirect/3"))  # 4 redirects
    with pytest.raises(FetchFailed):
        await fetcher_for(server, max_redirects=0).fetch(url(server, "/redirect/0"))


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("http://127.0.0.1:{sentinel}/x", FetchForbidden),  # port allowed, address not
        ("http://[::ffff:127.0.0.1]:{sentinel}/x", FetchForbidden),
        ("http://localhost:{sentinel}/x", FetchForbidden),
        ("http://169.254.169.254/latest/meta-data/", FetchForbidden),
        ("http://127.0.0.1:{origin}@127.0.0.1:{sentinel}/", InvalidUrl),
        ("http://2130706433:{sentinel}/", InvalidUrl),
        ("file:///etc/passwd", InvalidUrl),
        ("http://127.0.0.1:{closed}/", InvalidUrl),  # port not allowed for this host
    ],
)
async def test_redirect_to_forbidden_destination_refused_at_the_hop(
    origin: tuple[Origin, TestServer], sentinel: Sentinel, net_guard: NetGuard,
    target: str, error: type[Exception],
) -> None:
    state, server = origin
    state.target = target.format(sentinel=sentinel.port, origin=server.port, closed=closed_port())
    fetcher = fetcher_for(server, ports=(80, 443, sentinel.port))
    with pytest.raises(error):
        await fetcher.fetch(url(server, "/to"))
    assert sentinel.accepted == []
    assert {port for _, port in net_guard.attempts} == {server.port}


async def test_redirect_to_name_resolving_private_refused(
    origin: tuple[Origin, TestServer], sentinel: Sentinel
) -> None:
    state, server = origin
    stub = StubResolver(["10.0.0.1"])
    state.target = f"http://internal-api.attacker.example:{sentinel.port}/admin?key=s3cret"
    fetcher = fetcher_for(server, ports=(80, 443, sentinel.port), resolver=stub)
    with pytest.raises(FetchForbidden) as caught:
        await fetcher.fetch(url(server, "/to"))
    assert stub.calls == [("internal-api.attacker.example", sentinel.port)]
    assert "10.0.0.1" not in caught.value.detail and "s3cret" not in caught.value.detail
    assert sentinel.accepted == []


async def test_slow_origin_times_out(origin: tuple[Origin, TestServer]) -> None:
    _, server = origin
    with pytest.raises(FetchTimeout):
        await fetcher_for(server, timeout=0.2, connect_timeout=0.2).fetch(url(server, "/slow"))


async def test_endless_body_stops_at_the_cap_and_closes(origin: tuple[Origin, TestServer]) -> None:
    state, server = origin
    with pytest.raises(PayloadTooLarge):
        await fetcher_for(server).fetch(url(server, "/endless"))
    await asyncio.wait_for(state.endless_closed.wait(), 10)  # the origin saw the connection go


async def test_body_cap_is_exact(origin: tuple[Origin, TestServer]) -> None:
    _, server = origin
    fetched = await fetcher_for(server).fetch(url(server, f"/bytes/{CAP}"))
    assert len(fetched.body) == CAP
    with pytest.raises(PayloadTooLarge):
        await fetcher_for(server).fetch(url(server, f"/bytes/{CAP + 1}"))


async def test_declared_length_over_the_cap_refused_before_reading(
    origin: tuple[Origin, TestServer],
) -> None:
    _, server = origin
    with pytest.raises(PayloadTooLarge):
        await fetcher_for(server).fetch(url(server, "/declared-huge"))


@pytest.mark.parametrize("code", [404, 500, 204, 304])
async def test_origin_errors(origin: tuple[Origin, TestServer], code: int) -> None:
    _, server = origin
    with pytest.raises(FetchFailed):
        await fetcher_for(server).fetch(url(server, f"/status/{code}"))


async def test_redirect_without_location(origin: tuple[Origin, TestServer]) -> None:
    _, server = origin
    with pytest.raises(FetchFailed):
        await fetcher_for(server).fetch(url(server, "/no-location"))


async def test_connection_refused_on_closed_port() -> None:
    port = closed_port()
    fetcher = Fetcher(FetchConfig(allow_hosts=(f"127.0.0.1:{port}",), connect_timeout=0.5), CAP)
    with pytest.raises(FetchFailed) as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/a.png?token=s3cret")
    assert "s3cret" not in caught.value.detail


async def test_gzip_bomb_refused_unread(origin: tuple[Origin, TestServer]) -> None:
    """Content-Encoding other than identity is refused before the body is read."""
    _, server = origin
    with pytest.raises(FetchFailed):
        await fetcher_for(server).fetch(url(server, "/gzip-bomb"))


async def test_compressed_bytes_without_encoding_stay_compressed(
    origin: tuple[Origin, TestServer],
) -> None:
    state, server = origin
    fetched = await fetcher_for(server).fetch(url(server, "/gzip-raw"))
    assert fetched.body == bytearray(state.bomb)
    assert len(fetched.body) <= CAP  # never inflated: 16 MiB would be far over the cap


@pytest.mark.parametrize("encoding", ["deflate", "br", "zstd", "gzip,%20identity", "x-unknown"])
async def test_any_content_encoding_but_identity_refused(
    origin: tuple[Origin, TestServer], encoding: str
) -> None:
    _, server = origin
    with pytest.raises(FetchFailed):
        await fetcher_for(server).fetch(url(server, f"/encoded/{encoding}"))


async def test_identity_encoding_accepted(origin: tuple[Origin, TestServer]) -> None:
    state, server = origin
    fetched = await fetcher_for(server).fetch(url(server, "/encoded/identity"))
    assert fetched.body == bytearray(state.png)
