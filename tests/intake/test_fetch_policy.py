"""The fetch policy without an origin: the refused corpus, the address table, DNS pinning.

Nothing here opens a connection except the harness check, which dials the loopback
sentinel on purpose; "public" answers are checked at the resolution layer only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter

import pytest
from aiohttp.abc import ResolveResult

from cache.config import FetchConfig
from cache.errors import (
    CacheError,
    FetchFailed,
    FetchForbidden,
    FetchTimeout,
    InvalidUrl,
    PayloadTooLarge,
)
from cache.http.problems import problem_of
from cache.intake.fetch import (
    RESULT_LABELS,
    Fetcher,
    PinnedResolver,
    SystemResolver,
    allow_hosts_warning,
)
from cache.intake.fetch_policy import IPV4_POLICY, IPV6_POLICY, forbidden_reason, parse_url
from tests.support.fetch_corpus import CORPUS, Refused, all_refused
from tests.support.fetch_support import NetGuard, Sentinel, StubResolver

pytestmark = pytest.mark.usefixtures("net_guard")

PUBLIC_V4 = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "151.101.1.69"]
PUBLIC_V6 = ["2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80b::200e"]


def config(**changes: object) -> FetchConfig:
    values: dict[str, object] = {"timeout": 2.0, "connect_timeout": 0.2, **changes}
    return FetchConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("group", "entry"), all_refused(), ids=[f"{g}:{e.url!r}" for g, e in all_refused()]
)
async def test_corpus_refused(
    group: str, entry: Refused, sentinel: Sentinel, net_guard: NetGuard
) -> None:
    stub = StubResolver(list(entry.answers) if entry.answers else None)
    ports = (80, 443, sentinel.port)
    fetcher = Fetcher(config(ports=ports), 1024, resolver=stub)
    raised: CacheError | None = None
    try:
        await fetcher.fetch(entry.url.replace("{port}", str(sentinel.port)))
    except CacheError as exc:
        raised = exc
    finally:
        await fetcher.close()
    assert sentinel.accepted == [], "a refused URL reached the sentinel"
    assert net_guard.attempts == [], "a refused URL was dialled"
    assert type(raised) is entry.error, raised
    assert len(stub.calls) == (0 if entry.before_dns else 1)


def test_corpus_size_and_groups() -> None:
    counts = Counter(group for group, _ in all_refused())
    assert sum(counts.values()) >= 80
    assert all(count >= 4 for count in counts.values()), counts
    assert len({entry.url for _, entry in all_refused()}) == sum(counts.values())
    assert set(CORPUS) >= {"scheme", "userinfo", "legacy_ipv4", "odd_host", "port", "cgnat"}


async def test_harness_sentinel_sees_a_real_connection(sentinel: Sentinel) -> None:
    """Proves the corpus assertions can fail: an allowed pair does reach the sentinel."""
    fetcher = Fetcher(config(allow_hosts=(f"127.0.0.1:{sentinel.port}",)), 1024)
    with pytest.raises(FetchFailed):
        await fetcher.fetch(f"http://127.0.0.1:{sentinel.port}/")
    assert sentinel.accepted  # (aiohttp retries a GET once after a disconnect: same pin)


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "path_qs"),
    [
        ("http://example.com/a.png", "http", "example.com", 80, "/a.png"),
        ("HTTPS://Example.COM:443/x?y=1#frag", "https", "example.com", 443, "/x?y=1"),
        ("http://example.com:443", "http", "example.com", 443, "/"),
        ("https://cdn.example.com?id=3", "https", "cdn.example.com", 443, "/?id=3"),
        ("http://8.8.8.8/i.jpg", "http", "8.8.8.8", 80, "/i.jpg"),
        ("http://[2001:4860:4860:0::8888]/", "http", "2001:4860:4860::8888", 80, "/"),
        ("http://xn--bcher-kva.example/%E2%9C%93", "http", "xn--bcher-kva.example", 80,
         "/%E2%9C%93"),
        ("http://img_1.example.com/a", "http", "img_1.example.com", 80, "/a"),
        ("http://127.0.0.1.nip.io/a", "http", "127.0.0.1.nip.io", 80, "/a"),
    ],
)
def test_accepted_spellings(url: str, scheme: str, host: str, port: int, path_qs: str) -> None:
    target = parse_url(url)
    assert (target.scheme, target.host, target.port, target.path_qs) == (
        scheme, host, port, path_qs,
    )


@pytest.mark.parametrize("address", PUBLIC_V4 + PUBLIC_V6 + [
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_every_table_row_refuses_its_whole_range() -> None:
    networks = [net for net, _ in IPV4_POLICY] + [net for net, _ in IPV6_POLICY]
    for net in networks:  # embedding rows too: their ends embed 0.0.0.0 and 255.255.255.255
        assert forbidden_reason(net.network_address), net
        assert forbidden_reason(net.broadcast_address), net


@pytest.mark.parametrize("address", ["64:ff9b:1::1", "3fff::1", "5f00::1", "::ffff:0:808:808"])
def test_table_refuses_what_is_global_misses(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "embedded", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "192.0.2.1"]
)
def test_ipv6_forms_embedding_forbidden_ipv4(embedded: str) -> None:
    v4 = int(ipaddress.IPv4Address(embedded))
    for form in (
        (0xFFFF << 32) | v4,  # IPv4-mapped
        v4,  # IPv4-compatible
        (0x64FF9B << 96) | v4,  # NAT64
        (0x2002 << 112) | (v4 << 80) | 1,  # 6to4
    ):
        assert forbidden_reason(ipaddress.IPv6Address(form)), hex(form)


@pytest.mark.parametrize(
    "answers", [["127.0.0.1"], ["::1"], ["169.254.169.254"], ["10.0.0.1"], ["8.8.8.8", "10.0.0.1"],
                ["10.0.0.1", "8.8.8.8"], ["2606:4700:4700::1111", "fd00::1"]],
)
async def test_name_with_any_forbidden_answer_is_refused(answers: list[str]) -> None:
    stub = StubResolver(answers)
    fetcher = Fetcher(config(), 1024, resolver=stub)
    with pytest.raises(FetchForbidden) as caught:
        await fetcher.pin(parse_url("http://images.attacker.example/x.png?token=s3cret"))
    assert stub.calls == [("images.attacker.example", 80)]
    for answer in answers:
        assert answer not in caught.value.detail
    assert "s3cret" not in caught.value.detail and "x.png" not in caught.value.detail


async def test_public_answers_are_pinned_and_nothing_else() -> None:
    stub = StubResolver(PUBLIC_V4[:2] + PUBLIC_V6[:1], then=["127.0.0.1"])
    fetcher = Fetcher(config(), 1024, resolver=stub)
    pinned = await fetcher.pin(parse_url("https://cdn.example.com/a.png"))
    results = await pinned.resolve("cdn.example.com", 443, socket.AF_UNSPEC)
    again = await pinned.resolve("cdn.example.com", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in results] == [r["host"] for r in again] == [
        "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
    ]
    assert {r["family"] for r in results} == {socket.AF_INET, socket.AF_INET6}
    assert [r["host"] for r in await pinned.resolve("cdn.example.com", 443, socket.AF_INET6)] == [
        "2606:4700:4700::1111"
    ]
    assert len(stub.calls) == 1  # resolved once: a rebinding second answer is never asked for
    with pytest.raises(OSError):
        await pinned.resolve("other.example.com", 443)


def test_pinned_socket_factory_refuses_unchecked_addresses() -> None:
    pinned = PinnedResolver("cdn.example.com", [ipaddress.ip_address("8.8.8.8")])
    tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    with pytest.raises(OSError):
        pinned.socket_factory((socket.AF_INET, *tcp, ("127.0.0.1", 80)))
    assert pinned.violation
    sock = pinned.socket_factory((socket.AF_INET, *tcp, ("8.8.8.8", 80)))  # created, not dialled
    sock.close()


async def test_socket_factory_is_the_last_line(
    sentinel: Sentinel, net_guard: NetGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the pinned resolver handed aiohttp an unchecked address (a bug), the socket
    factory refuses before connect(): 403, no dial, the sentinel stays silent."""
    stub = StubResolver(["1.1.1.1"])

    async def leaky(self: PinnedResolver, host: str, port: int = 0, family: int = 0) -> object:
        return [ResolveResult(hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET,
                              proto=0, flags=0)]

    monkeypatch.setattr(PinnedResolver, "resolve", leaky)
    fetcher = Fetcher(config(ports=(80, 443, sentinel.port)), 1024, resolver=stub)
    with pytest.raises(FetchForbidden) as caught:
        await fetcher.fetch(f"http://leak.attacker.example:{sentinel.port}/")
    assert "127.0.0.1" not in caught.value.detail
    assert net_guard.attempts == [] and sentinel.accepted == []


async def test_system_resolver_returns_ip_strings() -> None:
    """Numeric host only: the test guard lets no real DNS query through."""
    assert await SystemResolver().resolve("127.0.0.1", 80) == ["127.0.0.1"]


async def test_resolver_failures() -> None:
    url = parse_url("http://gone.example.com/a.png")
    with pytest.raises(FetchFailed):
        await Fetcher(config(), 1024, resolver=StubResolver(None)).pin(url)
    with pytest.raises(FetchFailed):
        await Fetcher(config(), 1024, resolver=StubResolver([])).pin(url)
    with pytest.raises(FetchTimeout):
        await Fetcher(config(), 1024, resolver=StubResolver(hang=True)).fetch(url.url)


async def test_allow_hosts_bypass_only_the_exact_pair() -> None:
    stub = StubResolver(["127.0.0.1"])
    allow = ("127.0.0.1:9000", "[::1]:9001", "localhost:9002")
    fetcher = Fetcher(config(allow_hosts=allow), 1024, resolver=stub)
    assert (await fetcher.pin(parse_url("http://127.0.0.1:9000/a"))).addresses == [
        ipaddress.ip_address("127.0.0.1")
    ]
    assert (await fetcher.pin(parse_url("http://[0::1]:9001/a"))).host == "::1"
    assert (await fetcher.pin(parse_url("http://localhost:9002/a"))).host == "localhost"
    for url, error in [
        ("http://127.0.0.1:9001/", InvalidUrl),  # same host, other port
        ("http://127.0.0.1/", FetchForbidden),  # same host, default port
        ("http://[::1]:9000/", InvalidUrl),
        ("http://localhost:9000/", InvalidUrl),
        ("ftp://127.0.0.1:9000/", InvalidUrl),  # scheme still applies
        ("http://u@127.0.0.1:9000/", InvalidUrl),  # userinfo still applies
        ("http://127.1:9000/", InvalidUrl),  # spelling still applies
    ]:
        with pytest.raises(error):
            await fetcher.fetch(url)
    assert stub.calls == [("localhost", 9002)]


def test_allow_hosts_warning() -> None:
    assert allow_hosts_warning(FetchConfig()) is None
    warning = allow_hosts_warning(FetchConfig(allow_hosts=("127.0.0.1:9000",)))
    assert warning and "127.0.0.1:9000" in warning and "\n" not in warning


def test_result_labels() -> None:
    assert {cls: RESULT_LABELS[cls] for cls in RESULT_LABELS} == {
        InvalidUrl: "invalid_url",
        FetchForbidden: "forbidden",
        FetchFailed: "remote_error",
        FetchTimeout: "timeout",
        PayloadTooLarge: "too_large",
    }
    statuses = [problem_of(cls).status for cls in (InvalidUrl, FetchForbidden, FetchFailed)]
    assert statuses == [400, 403, 502]


async def test_disabled_fetch_is_refused() -> None:
    stub = StubResolver(["8.8.8.8"])
    with pytest.raises(FetchForbidden):
        await Fetcher(config(enabled=False), 1024, resolver=stub).fetch("http://example.com/")
    assert stub.calls == []
