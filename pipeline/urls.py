"""What the crawl will connect to: a url made safe to request, and the address policy.

Urls come from strangers' HTML, so anything can be in them: ports out of range, broken IPv6
literals, internationalised host names, spaces and control characters, credentials. Everything
here is pure and never raises anything but :class:`BadUrl` (for :func:`parse_target`) or
:class:`Refused` (for :func:`check_addresses`), which the fetcher turns into a status row.

The address policy: only globally routable addresses (``ipaddress``'s ``is_global``), and for
IPv6 forms that carry an IPv4 address inside them (IPv4-mapped and -compatible, 6to4, Teredo,
NAT64, ISATAP) the embedded address must be global too: ``[2002:7f00:1::]`` is a way to say
127.0.0.1, ``[2002:a9fe:a9fe::]`` the cloud metadata address 169.254.169.254.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

import idna

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
# Cloud metadata services: refused even where non-public addresses are allowed (a local run).
METADATA_ADDRESSES = frozenset({"169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254",
                                "fd00:ec2::23"})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 8192  # longer request lines are refused by most servers anyway
_HOST_CHARS = re.compile(r"[a-z0-9._-]+")
_STRIP = "".join(chr(c) for c in range(0x21)) + "\x7f"  # C0 controls, space and DEL at either end
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
# Characters left as they are in a request target; everything else (non-ASCII, controls,
# spaces, quotes, angle brackets) is percent-encoded as browsers do.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# IANA's special-purpose registries, the entries not globally reachable (and the multicast and
# reserved blocks), written out rather than taken from ``ipaddress`` alone: its lists change
# between Python releases (3.11 takes 192.0.0.192 for global).
_NOT_GLOBAL = tuple(ipaddress.ip_network(text) for text in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))


class BadUrl(ValueError):
    """A url we cannot request (status ``failed_to_download``, reason ``invalid url: ...``)."""


class Refused(Exception):
    """The scheme, the host or its address is not one we fetch from (status ``blocked``)."""


@dataclass(frozen=True)
class Target:
    """A url reduced to what goes on the wire: every field ASCII, the port checked."""

    scheme: str  # http or https
    host: str  # lower-case ASCII (IDNA) name or IP literal, IPv6 without brackets
    port: int
    target: str  # path and query, percent-encoded

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """scheme://host[:port]: the unit of robots.txt, connection slots and pools."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def url(self) -> str:
        return self.origin + self.target


def ascii_host(host: str) -> str:
    """The host name as it goes into DNS and the Host header: IDNA for non-ASCII names."""
    host = host.lower().rstrip(".")
    if not host:
        raise BadUrl("no host")
    if ":" in host:  # an IPv6 literal (urlsplit removed the brackets)
        try:
            return str(ipaddress.IPv6Address(host.split("%", 1)[0]))
        except ValueError as exc:
            raise BadUrl(f"bad IPv6 literal {host!r}") from exc
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise BadUrl(f"host {host!r} is not a valid internationalised name: {exc}") from exc
    if not _HOST_CHARS.fullmatch(host) or len(host) > 253 or any(len(label) > 63 for label in host.split(".")):
        raise BadUrl(f"bad host name {host[:80]!r}")
    return host


def parse_target(url: object) -> Target:
    """``url`` as a :class:`Target`, or :class:`BadUrl` saying why not. Whitespace and control
    characters at either end are dropped and tabs and newlines inside removed (as browsers
    do); credentials and the fragment are never sent; the path and query are percent-encoded
    where they hold characters a request line cannot carry."""
    if not isinstance(url, str):
        raise BadUrl(f"not a string: {type(url).__name__}")
    url = _TAB_NEWLINE.sub("", url.strip(_STRIP))
    if not url:
        raise BadUrl("empty url")
    if len(url) > MAX_URL_CHARS:
        raise BadUrl(f"url longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        hostname = parts.hostname
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", a non-numeric port
        raise BadUrl(str(exc)) from exc
    if scheme not in DEFAULT_PORTS:
        raise Refused(f"scheme {scheme!r} is not http(s)")
    if port == 0:
        raise BadUrl("port 0")
    host = ascii_host(hostname or "")
    path = quote(parts.path or "/", safe=_PATH_SAFE, errors="surrogatepass")
    if not path.startswith("/"):
        path = "/" + path
    query = quote(parts.query, safe=_QUERY_SAFE, errors="surrogatepass")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], path + (f"?{query}" if query else ""))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by every well-known embedding."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    value = int(address)
    if address in _NAT64 or value >> 32 == 0 and value > 1:  # NAT64 well-known prefix; IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if (value >> 32) & 0xFFFFFFFF & 0xFDFFFFFF == 0x00005EFE:  # ISATAP interface identifier ...:0:5efe:a.b.c.d / 200:5efe
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return found


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable by IANA's registries and by ``ipaddress``, and so is every IPv4
    address embedded in it. IPv6 only from global unicast (2000::/3) or NAT64's well-known
    prefix (how an IPv6-only network reaches the IPv4 web) with a public address inside."""
    if (not address.is_global or address.is_multicast or address.is_loopback or address.is_link_local
            or address.is_reserved or address.is_unspecified or address.is_private):
        return False
    if any(address in network for network in _NOT_GLOBAL if network.version == address.version):
        return False
    if address.version == 6:
        if address not in _GLOBAL_UNICAST_V6 and address not in _NAT64:
            return False
        return all(is_public(inner) for inner in embedded_ipv4(address))
    return True


def check_host_name(host: str) -> None:
    """Refuse cloud metadata names before any lookup (their addresses are refused too, but a
    lookup of them already tells a resolver inside the cloud what we are doing)."""
    if host in METADATA_HOSTS or host.endswith(".internal"):
        raise Refused(f"cloud metadata or internal host {host}")


def allowed_networks(texts) -> tuple:
    """``--allow-network`` values as networks (ValueError names a bad one)."""
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


@lru_cache(maxsize=65_536)
def _parsed(text: str) -> tuple:
    """(address, is_public, metadata) of an address text ((None, False, False) when it is not
    one). Cached: a crawl meets the same addresses again and again, and parsing plus the
    registry walk cost about 0.3 ms."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None, False, False
    inner = [address] + (embedded_ipv4(address) if address.version == 6 else [])
    return address, is_public(address), any(str(one) in METADATA_ADDRESSES for one in inner)


def check_addresses(host: str, addresses: list[str], allow_private: bool, allow: tuple = ()) -> str:
    """The address to connect to, the first of ``addresses``; :class:`Refused` if any of them is
    neither public nor in one of the ``allow`` networks (a name with one private answer among
    public ones is a rebinding set-up). ``allow_private`` lifts the check."""
    if not addresses:
        raise Refused(f"{host} has no address")
    parsed = [_parsed(text) for text in addresses]
    for text, (address, public, metadata) in zip(addresses, parsed):
        if address is None:
            raise Refused(f"{host} resolves to an unusable address {text!r}")
        if metadata:
            raise Refused(f"{host} resolves to a non-public address {address} (cloud metadata)")
        if not allow_private and not public and not any(address in network for network in allow
                                                        if network.version == address.version):
            raise Refused(f"{host} resolves to a non-public address {address}")
    return str(parsed[0][0])
