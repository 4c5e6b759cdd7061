"""SSRF-safe fetch of one image URL into bytes (the policy itself is in `cache.fetch_policy`).

Per hop: parse strictly, check scheme, port, name and literal before any DNS query,
resolve once, refuse if ANY answer is forbidden, then connect only to those checked
addresses. The answers are pinned in a per-hop connector: its resolver can return nothing
else, so a second lookup (DNS rebinding) never happens, and its socket factory refuses a
connect() to any address that was not checked. Nothing is shared between hops or fetches.

Why refuse on any forbidden answer rather than skip it: the attacker controls the record
set, and which answer a client tries first (happy eyeballs, retries) is not ours to pin.

Content-Encoding: we ask for `identity` and refuse any other encoding without reading the
body (502); aiohttp never decompresses (`auto_decompress=False`), so a gzip bomb costs
nothing. Error details name the host at most: never a resolved address, never the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..config import FetchConfig
from ..errors import (
    CacheError,
    FetchFailed,
    FetchForbidden,
    FetchTimeout,
    InvalidUrl,
    PayloadTooLarge,
)
from ..wipe import zero
from .fetch_policy import (
    IPAddress,
    Target,
    check_target,
    forbidden_reason,
    parse_allow_hosts,
    parse_url,
)

USER_AGENT = "query-cache/0.1 (+image fetch for reverse search)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024

RESULT_LABELS: dict[type[CacheError], str] = {
    InvalidUrl: "invalid_url",
    FetchForbidden: "forbidden",
    FetchFailed: "remote_error",
    FetchTimeout: "timeout",
    PayloadTooLarge: "too_large",
}


@dataclass(frozen=True)
class FetchedBody:
    """What the route gets: bytes to ingest and a host to audit."""

    body: bytearray  # the raw bytes, at most max_bytes
    host: str  # host of the original URL, for audit; never the full URL


class Resolver(Protocol):
    """Name -> IP strings; tests pass a stub so no test ever asks real DNS."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The libc resolver through the event loop's executor."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PinnedResolver(AbstractResolver):
    """One hop's checked addresses: the only answers its connector can ever get or dial."""

    def __init__(self, host: str, addresses: list[IPAddress]) -> None:
        self.host = host
        self.addresses = addresses
        self.violation = False  # set when something tried to dial an unchecked address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".") != self.host:
            raise OSError(f"{host} is not pinned on this connector")
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                proto=0,
                flags=0,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
            )
            for ip in self.addresses
            if family in (socket.AF_UNSPEC, socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
        ]

    async def close(self) -> None:
        return None

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """Last line: refuse connect() to any address but the checked ones, literals included."""
        family, type_, proto, _, sockaddr = addr_info
        try:
            allowed = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]) in self.addresses
        except ValueError:
            allowed = False
        if not allowed:
            self.violation = True
            raise OSError("refusing to connect to an unchecked address")
        return socket.socket(family, type_, proto)


def allow_hosts_warning(config: FetchConfig) -> str | None:
    """The start-up warning for `fetch.allow_hosts`, which switches part of the policy off."""
    if not config.allow_hosts:
        return None
    return (
        f"fetch.allow_hosts is set ({', '.join(config.allow_hosts)}): these exact host:port "
        "pairs bypass the SSRF address and port checks; use only for tests or local development"
    )


class Fetcher:
    """Fetches one URL at a time per call; safe to share, holds no state between fetches."""

    def __init__(
        self, config: FetchConfig, max_bytes: int, *, resolver: Resolver | None = None
    ) -> None:
        self.config = config
        self.max_bytes = max_bytes
        self.resolver: Resolver = resolver or SystemResolver()
        self.allowed_pairs = parse_allow_hosts(config.allow_hosts)
        self._sessions: set[aiohttp.ClientSession] = set()

    async def fetch(self, url: str) -> FetchedBody:
        """The body of `url` after the whole policy, or one of the `RESULT_LABELS` errors."""
        if not self.config.enabled:
            raise FetchForbidden("fetching URLs is disabled")
        target = parse_url(url)
        try:
            async with asyncio.timeout(self.config.timeout):
                body = await self._follow(target)
        except TimeoutError:
            raise FetchTimeout(f"fetching from {target.host} timed out") from None
        return FetchedBody(body=body, host=target.host)

    async def close(self) -> None:
        """Close sessions of fetches still in flight (each fetch closes its own)."""
        sessions, self._sessions = self._sessions, set()
        for session in sessions:
            await session.close()

    async def pin(self, target: Target) -> PinnedResolver:
        """Check `target` in full and resolve it once: the addresses this hop may dial."""
        allowed = (target.host, target.port) in self.allowed_pairs
        if not allowed:
            check_target(target, self.config.ports)
        if target.ip is not None:
            return PinnedResolver(target.host, [target.ip])
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                answers = await self.resolver.resolve(target.host, target.port)
        except TimeoutError:  # before OSError, its base class
            raise FetchTimeout(f"resolving {target.host} timed out") from None
        except OSError:
            raise FetchFailed(f"could not resolve {target.host}") from None
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer.partition("%")[0])
            except ValueError:
                raise FetchForbidden(f"{target.host} resolves to an invalid address") from None
            if not allowed and forbidden_reason(ip):
                raise FetchForbidden(f"{target.host} resolves to an address that is not allowed")
            addresses.append(ip)
        if not addresses:
            raise FetchFailed(f"could not resolve {target.host}")
        return PinnedResolver(target.host, addresses)

    async def _follow(self, target: Target) -> bytearray:
        for _hop in range(self.config.max_redirects + 1):
            location = await self._hop(target)
            if isinstance(location, bytearray):
                return location
            try:
                target = parse_url(urljoin(target.url, location))
            except InvalidUrl as exc:
                raise InvalidUrl(f"redirect from {target.host} refused: {exc.detail}") from None
        raise FetchFailed(f"{target.host}: more than {self.config.max_redirects} redirects")

    async def _hop(self, target: Target) -> bytearray | str:
        """One request: the body, or the Location of a redirect (still to be checked)."""
        pinned = await self.pin(target)
        path, _, query = target.path_qs.partition("?")
        url = URL.build(  # from the checked parts, never from the caller's string
            scheme=target.scheme,
            host=target.url_host,
            port=target.port,
            path=path,
            query_string=query,
            encoded=True,
        )
        connector = aiohttp.TCPConnector(
            resolver=pinned,
            use_dns_cache=False,
            force_close=True,
            limit=1,
            socket_factory=pinned.socket_factory,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(
                total=self.config.timeout, sock_connect=self.config.connect_timeout
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
        )
        self._sessions.add(session)
        try:
            async with session.get(url, allow_redirects=False) as response:
                return await self._read(target, response)
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise FetchTimeout(f"fetching from {target.host} timed out") from None
        except aiohttp.ClientError:
            if pinned.violation:
                raise FetchForbidden(f"destination {target.host} is not allowed") from None
            raise FetchFailed(f"fetching from {target.host} failed") from None
        finally:
            self._sessions.discard(session)
            await session.close()

    async def _read(self, target: Target, response: aiohttp.ClientResponse) -> bytearray | str:
        status = response.status
        if status in REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise FetchFailed(f"{target.host} answered a redirect without Location")
            return location
        if status != 200:
            raise FetchFailed(f"{target.host} answered HTTP {status}")
        if response.headers.get("Content-Encoding", "").strip().lower() not in ("", "identity"):
            raise FetchFailed(f"{target.host} sent an encoded body (Content-Encoding)")
        if (response.content_length or 0) > self.max_bytes:
            raise PayloadTooLarge(f"the image at {target.host} is over {self.max_bytes} bytes")
        body = bytearray()
        while chunk := await response.content.read(min(CHUNK, self.max_bytes + 1 - len(body))):
            body += chunk
            if len(body) > self.max_bytes:
                response.close()  # drop the connection: an endless body stops here
                zero(body)  # best effort, as for stored items
                raise PayloadTooLarge(f"the image at {target.host} is over {self.max_bytes} bytes")
        return body
