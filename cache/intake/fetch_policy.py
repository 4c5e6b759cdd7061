"""The SSRF policy of `cache.fetch`: a strict URL parser and an explicit address table.

Everything here is pure and synchronous, so each rule can be tested without a socket.

Why our own parser: URL parsers disagree (WHATWG, RFC 3986, yarl, libc's inet_aton), and
an SSRF filter that checks one reading of a URL while the client connects to another is
the classic bypass. So a URL is accepted only when every reasonable reader agrees on it:
printable ASCII, `http`/`https`, no userinfo, a lower-case DNS name or a canonical IP
literal, a plain decimal port. The request is then rebuilt from the parsed parts, never
from the caller's string.

IDNA: non-ASCII hosts are refused, not encoded. IDNA 2003, IDNA 2008 and UTS #46 map
characters differently (full-width dots and letters, circled letters), which is itself a
parser differential; a caller with an internationalised name sends its `xn--` form.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import FetchForbidden, InvalidUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Names that never mean a public host (RFC 6761, 6762, 8375 and cloud conventions);
# refused before DNS so no resolver, search list or /etc/hosts gets a say.
SPECIAL_NAME_SUFFIXES = ("localhost", "localdomain", "local", "internal", "home.arpa", "lan")


@dataclass(frozen=True)
class Target:
    """One parsed, canonical hop: what we check is exactly what we connect to."""

    scheme: str
    host: str  # lower-case DNS name, dotted-quad IPv4, or IPv6 without brackets
    port: int
    path_qs: str  # raw path and query, fragment dropped
    ip: IPAddress | None  # set when the host is an IP literal

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.url_host}:{self.port}{self.path_qs}"


def _canonical_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) < 256
        for p in parts
    )


def _parse_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        try:
            if "%" in inner:  # zone ids name a local interface
                raise ValueError(inner)
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidUrl("the IPv6 literal is not valid") from None
        return str(ip6), ip6
    host = raw.lower()
    if _canonical_ipv4(host):
        return host, ipaddress.IPv4Address(host)
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidUrl("the host is not a plain DNS name or IP address")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # WHATWG reads a numeric last label as IPv4 (127.1, 0x7f000001, 0177.0.0.1)
        raise InvalidUrl("the host is a non-canonical IPv4 spelling")
    return host, None


def parse_url(url: str) -> Target:
    """Parse `url` strictly into a Target, or raise InvalidUrl (before any DNS query)."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidUrl("the URL is empty or too long")
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        raise InvalidUrl("the URL must be printable ASCII without spaces or backslashes")
    match = _URL.fullmatch(url)
    if match is None:
        raise InvalidUrl("the URL must be absolute: http:// or https://")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl("only http and https URLs can be fetched")
    authority, rest = match["authority"], match["rest"]
    if "@" in authority:
        raise InvalidUrl("URLs with user information are not allowed")
    if authority.startswith("["):
        close = authority.find("]") + 1
        host_part, tail = (authority[:close], authority[close:]) if close else (authority, "")
    else:
        colon = authority.find(":")
        host_part, tail = (authority[:colon], authority[colon:]) if colon >= 0 else (authority, "")
    if not host_part:
        raise InvalidUrl("the URL has no host")
    host, ip = _parse_host(host_part)
    port = DEFAULT_PORTS[scheme]
    if tail:
        if not tail.startswith(":") or not _PORT.fullmatch(tail[1:]) or int(tail[1:]) > 65535:
            raise InvalidUrl("the port is not a number from 1 to 65535")
        port = int(tail[1:])
    path_qs = rest.partition("#")[0]
    if _BAD_ESCAPE.search(path_qs):
        raise InvalidUrl("the URL has a malformed percent-escape")
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs
    return Target(scheme, host, port, path_qs, ip)


def parse_allow_hosts(entries: tuple[str, ...]) -> frozenset[tuple[str, int]]:
    """`fetch.allow_hosts` as exact (host, port) pairs; IPv6 brackets dropped to match Target."""
    pairs = set()
    for entry in entries:
        host, _, port = entry.rpartition(":")
        host = host.lower()
        if host.startswith("["):
            host = str(ipaddress.IPv6Address(host.strip("[]")))
        pairs.add((host, int(port)))
    return frozenset(pairs)


def check_target(target: Target, ports: tuple[int, ...]) -> None:
    """Port, special-name and IP-literal rules: everything decidable before DNS."""
    if target.port not in ports:
        raise InvalidUrl(f"port {target.port} is not allowed")
    if target.ip is not None:
        reason = forbidden_reason(target.ip)
        if reason:
            raise FetchForbidden(f"destination {target.url_host} is not allowed: {reason}")
        return
    if "." not in target.host:
        # A dot-less name is completed by the resolver's search list: its meaning is local.
        raise FetchForbidden(f"destination {target.host} is not allowed: single-label name")
    if any(target.host == s or target.host.endswith("." + s) for s in SPECIAL_NAME_SUFFIXES):
        raise FetchForbidden(f"destination {target.host} is not allowed: special-use name")


def _net(cidr: str, reason: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]:
    return ipaddress.ip_network(cidr), reason


# First match wins. Sources: the IANA IPv4 and IPv6 special-purpose address registries.
IPV4_POLICY = (
    _net("0.0.0.0/8", "unspecified / this network"),
    _net("10.0.0.0/8", "private"),
    _net("100.64.0.0/10", "carrier-grade NAT"),
    _net("127.0.0.0/8", "loopback"),
    _net("169.254.0.0/16", "link-local (cloud metadata)"),
    _net("172.16.0.0/12", "private"),
    _net("192.0.0.0/24", "IETF protocol assignments"),
    _net("192.0.2.0/24", "documentation"),
    _net("192.88.99.0/24", "6to4 relay anycast"),
    _net("192.168.0.0/16", "private"),
    _net("198.18.0.0/15", "benchmarking"),
    _net("198.51.100.0/24", "documentation"),
    _net("203.0.113.0/24", "documentation"),
    _net("224.0.0.0/4", "multicast"),
    _net("255.255.255.255/32", "broadcast"),
    _net("240.0.0.0/4", "reserved (class E)"),
)
# Rows whose reason is None embed an IPv4 address that decides instead (see below).
IPV6_POLICY: tuple[tuple[ipaddress.IPv6Network, str | None], ...] = tuple(
    (ipaddress.IPv6Network(cidr), reason)
    for cidr, reason in (
        ("::ffff:0:0/96", None),  # IPv4-mapped
        ("64:ff9b::/96", None),  # NAT64 well-known prefix
        ("2002::/16", None),  # 6to4
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:2::/48", "benchmarking"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignments"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing SIDs"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
) + tuple(  # the rest of the space outside global unicast 2000::/3 (IANA: reserved)
    (ipaddress.IPv6Network(cidr), "reserved (outside 2000::/3)")
    for cidr in (
        "::/8",
        "100::/8",
        "200::/7",
        "400::/6",
        "800::/5",
        "1000::/4",
        "4000::/3",
        "6000::/3",
        "8000::/3",
        "a000::/3",
        "c000::/3",
        "e000::/4",
        "f000::/5",
        "f800::/6",
        "fe00::/9",
    )
)


def _embedded_ipv4(ip: ipaddress.IPv6Address, net: ipaddress.IPv6Network) -> ipaddress.IPv4Address:
    value = int(ip)
    if net.prefixlen == 16:  # 6to4: 2002:AABB:CCDD::/48
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return ipaddress.IPv4Address(value & 0xFFFFFFFF)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why `ip` may not be fetched from, or None for a public unicast address.

    The table decides; `ipaddress.is_global` is a second opinion that can only refuse more.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, reason4 in IPV4_POLICY:
            if ip in net4:
                return reason4
        return None if ip.is_global else "not globally routable"
    for net6, reason6 in IPV6_POLICY:
        if ip in net6:
            if reason6 is not None:
                return reason6
            inner = forbidden_reason(_embedded_ipv4(ip, net6))
            return f"embeds a forbidden IPv4 address ({inner})" if inner else None
    return None if ip.is_global else "not globally routable"
