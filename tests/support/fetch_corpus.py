"""URLs that `cache.intake.fetch` must refuse, grouped by the trick they try.

Each entry names the error class and whether the refusal must come before any DNS query.
"{port}" is replaced by the sentinel listener's port (which the test config allows), so
an address that slips through the policy would land on a recorder, never elsewhere.
DNS entries carry the answers the stub resolver gives for their name.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache.errors import CacheError, FetchForbidden, InvalidUrl


@dataclass(frozen=True)
class Refused:
    url: str
    error: type[CacheError]
    before_dns: bool
    answers: tuple[str, ...] = ()


def syntax(url: str) -> Refused:
    return Refused(url, InvalidUrl, before_dns=True)


def literal(url: str) -> Refused:
    return Refused(url, FetchForbidden, before_dns=True)


def dns(url: str, *answers: str) -> Refused:
    return Refused(url, FetchForbidden, before_dns=False, answers=answers)


CORPUS: dict[str, tuple[Refused, ...]] = {
    "scheme": tuple(map(syntax, (
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://example.com:70/_GET",
        "dict://example.com:11211/stat",
        "ldap://example.com/",
        "ws://example.com/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "hxxp://example.com/",
        "http:/example.com/a.png",
        "http:example.com/a.png",
        "//example.com/a.png",
        "example.com/a.png",
        "https:\\\\example.com\\a.png",
        " http://example.com/",
    ))),
    "userinfo": (
        syntax("http://user@example.com/"),
        syntax("http://user:pass@example.com/"),
        syntax("http://example.com@127.0.0.1:{port}/"),
        syntax("http://example.com:80@127.0.0.1:{port}/"),
        syntax("http://a@b@127.0.0.1:{port}/"),
        syntax("http://@example.com/"),
        syntax("http://:@example.com/"),
        syntax("http://%40@example.com/"),
        syntax("http://example.com\\@127.0.0.1:{port}/"),
        literal("http://127.0.0.1:{port}#@example.com/"),
        literal("http://127.0.0.1:{port}?@example.com/"),
    ),
    "legacy_ipv4": tuple(map(syntax, (
        "http://127.1:{port}/",
        "http://127.0.1:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f000001:{port}/",
        "http://0X7F000001:{port}/",
        "http://0x7f.0.0.1:{port}/",
        "http://0177.0.0.1:{port}/",
        "http://017700000001:{port}/",
        "http://127.000.000.001:{port}/",
        "http://127.0.0.01:{port}/",
        "http://0:{port}/",
        "http://0x:{port}/",
        "http://3232235521/",
        "http://0300.0250.0.1/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://1.2.3.4.5/",
        "http://256.0.0.1/",
        "http://127.0.0.1./",
    ))),
    "odd_host": tuple(map(syntax, (
        "http://%31%32%37.0.0.1:{port}/",
        "http://127%2e0%2e0%2e1:{port}/",
        "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
        "http://127\u30020\u30020\u30021/",
        "http://\u24dbocalhost/",
        "http://b\u00fccher.example/",
        "http://exa mple.com/",
        "http://example.com\x00.evil.example/",
        "http://exam\nple.com/",
        "http://example.com\t/",
        "http:///a.png",
        "http://:80/",
        "http://example..com/",
        "http://-example.com/",
        "http://example-.com/",
        "http://[]/",
        "http://[::1/",
        "http://[127.0.0.1]/",
        "http://[::1%25lo]/",
        "http://[fe80::1%eth0]/",
        "http://example.com/%zz",
    ))),
    "port": tuple(map(syntax, (
        "http://example.com:22/",
        "http://example.com:6379/",
        "https://example.com:8443/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:99999/",
        "http://example.com:-1/",
        "http://example.com:+80/",
        "http://example.com:0080/",
        "http://example.com:80a/",
        "http://example.com:/",
        "http://example.com: 80/",
        "http://[2001:4860::8888]:25/",
    ))),
    "loopback": (
        literal("http://127.0.0.1:{port}/"),
        literal("http://127.0.0.1/"),
        literal("https://127.255.255.254/"),
        literal("http://[::1]:{port}/"),
        literal("http://[0:0:0:0:0:0:0:1]/"),
        literal("http://localhost:{port}/"),
        literal("http://LOCALHOST/"),
        literal("http://foo.localhost:{port}/"),
        dns("http://loop4.attacker.example:{port}/", "127.0.0.1"),
        dns("http://loop6.attacker.example:{port}/", "::1"),
        dns("http://loopnet.attacker.example/", "127.3.2.1"),
    ),
    "private": (
        literal("http://10.0.0.1:{port}/"),
        literal("http://10.255.255.255/"),
        literal("http://172.16.0.1/"),
        literal("http://172.31.255.254/"),
        literal("http://192.168.0.1/"),
        literal("http://192.168.1.1:{port}/"),
        dns("http://ten.attacker.example:{port}/", "10.0.0.1"),
        dns("http://home.attacker.example/", "192.168.1.10"),
    ),
    "link_local_metadata": (
        literal("http://169.254.169.254/latest/meta-data/"),
        literal("http://169.254.169.254:{port}/computeMetadata/v1/"),
        literal("http://169.254.0.1/"),
        literal("http://[fe80::1]/"),
        literal("http://[fe80::a9fe:a9fe]:{port}/"),
        literal("http://[fd00:ec2::254]/latest/meta-data/"),
        literal("http://metadata.google.internal/computeMetadata/v1/"),
        literal("http://metadata/computeMetadata/v1/"),
        dns("http://meta.attacker.example:{port}/", "169.254.169.254"),
    ),
    "special_names": tuple(map(literal, (
        "http://printer.local/",
        "http://router.home.arpa/",
        "http://db.localdomain/",
        "http://nas.lan/",
        "http://intranet/",
    ))),
    "cgnat": (
        literal("http://100.64.0.1/"),
        literal("http://100.127.255.254:{port}/"),
        literal("http://100.100.100.200/latest/meta-data/"),
        dns("http://cgnat.attacker.example/", "100.64.1.1"),
    ),
    "multicast_broadcast_reserved": tuple(map(literal, (
        "http://224.0.0.1/",
        "http://239.255.255.250:{port}/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://250.1.2.3/",
        "http://0.0.0.0:{port}/",
        "http://0.1.2.3/",
        "http://[ff02::1]/",
        "http://[ff05::1:3]/",
    ))),
    "documentation_benchmark": tuple(map(literal, (
        "http://192.0.2.1/",
        "http://198.51.100.7/",
        "http://203.0.113.9:{port}/",
        "http://198.18.0.1/",
        "http://198.19.255.254/",
        "http://192.0.0.8/",
        "http://192.0.0.170/",
        "http://192.88.99.1/",
        "http://[2001:db8::1]/",
        "http://[3fff::1]/",
        "http://[2001:2::1]/",
    ))),
    "ipv6_special": tuple(map(literal, (
        "http://[::]:{port}/",
        "http://[fc00::1]/",
        "http://[fd12:3456:789a::1]/",
        "http://[fec0::1]/",
        "http://[100::1]/",
        "http://[2001:10::1]/",
        "http://[2001:20::1]/",
        "http://[5f00::1]/",
        "http://[4000::1]/",
        "http://[e000::1]/",
    ))),
    "ipv6_embeds_ipv4": (
        literal("http://[::ffff:127.0.0.1]:{port}/"),
        literal("http://[::ffff:7f00:1]/"),
        literal("http://[::FFFF:169.254.169.254]/"),
        literal("http://[::ffff:10.0.0.1]/"),
        literal("http://[::127.0.0.1]/"),
        literal("http://[::8.8.8.8]/"),
        literal("http://[::ffff:0:127.0.0.1]/"),
        literal("http://[64:ff9b::127.0.0.1]/"),
        literal("http://[64:ff9b::a9fe:a9fe]:{port}/"),
        literal("http://[64:ff9b:1::808:808]/"),
        literal("http://[2002:7f00:1::1]/"),
        literal("http://[2002:a9fe:a9fe::]/"),
        literal("http://[2001::1]/"),
        literal("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"),
        dns("http://mapped.attacker.example:{port}/", "::ffff:127.0.0.1"),
        dns("http://nat64.attacker.example/", "64:ff9b::a9fe:a9fe"),
    ),
    "dns_answers": (
        dns("http://mixed.attacker.example:{port}/", "8.8.8.8", "10.0.0.1"),
        dns("http://mixed6.attacker.example/", "1.1.1.1", "::1"),
        dns("http://mixedlast.attacker.example/", "8.8.8.8", "1.1.1.1", "169.254.169.254"),
        dns("http://scoped.attacker.example/", "fe80::1%eth0"),
        dns("http://junk.attacker.example/", "not-an-address"),
    ),
}


def all_refused() -> list[tuple[str, Refused]]:
    return [(group, entry) for group, entries in CORPUS.items() for entry in entries]
