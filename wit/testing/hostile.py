"""A hostile web on loopback: every way a url, a server or a robots.txt can misbehave.

``with HostileWeb(photo, folder) as web:`` starts a dozen loopback hosts (plain and TLS, each
its own origin on its own 127.0.0.x address) and lists :attr:`HostileWeb.cases`: a url, the
status a fetch must end in and a piece of the reason, and the issue finding it covers. The
fetcher suite (``tests/test_hostile_web.py``) and the crawl-job test run the same cases.

Fetch them with ``FetchConfig(hosts=web.hosts, allow_networks=web.allow_networks,
ca_pem=web.ca_pem, timeout=...)``: names resolve through ``hosts`` (``wit crawl --resolve``),
loopback is the only non-public network allowed, so the refusals of cloud-metadata, carrier-
grade NAT and 6to4 addresses are tested for real and refused before any connection.

Drips send one byte every ``drip`` seconds for ``drip_seconds`` in all: far longer than any
deadline a test sets, so a fetch that is not cut at its deadline shows.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from wit.testing.fakeweb import FakeWeb
from wit.testing.tls import TestCA

IDN_HOST = "bücher.example"
IDN_ASCII = "xn--bcher-kva.example"


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    status: str  # what Fetcher.fetch ends in: ok, failed, blocked, opted_out
    reason: str  # a piece of the reason (case-insensitive)
    finding: str  # the issue finding it covers
    slow: bool = False  # the server would hold the fetch far past its deadline


def _drip(head: bytes, tail: bytes, interval: float, seconds: float) -> list[tuple[bytes, float]]:
    """``head`` at once, then ``tail`` a byte at a time, repeated for ``seconds``."""
    steps = [(head, 0.0)]
    count = int(seconds / interval)
    body = (tail * (count // max(1, len(tail)) + 1))[:count]
    steps += [(body[i:i + 1], interval) for i in range(count)]
    return steps


class HostileWeb:
    def __init__(self, photo: bytes, folder: str | Path, drip: float = 0.25, drip_seconds: float = 12.0) -> None:
        self.photo, self.folder, self.drip, self.drip_seconds = photo, Path(folder), drip, drip_seconds
        self.ca = TestCA(self.folder / "ca")
        self.hosts: dict[str, str] = {}
        self.allow_networks = ["127.0.0.0/8"]
        self.cases: list[Case] = []
        self.webs: dict[str, FakeWeb] = {}
        self._next_address = 1

    @property
    def ca_pem(self) -> str:
        return self.ca.pem

    def _web(self, name: str, **options) -> FakeWeb:
        web = FakeWeb(host=f"127.0.0.{self._next_address}", **options).start()
        self._next_address += 1
        self.webs[name] = web
        return web

    def case(self, name: str, url: str, status: str, reason: str, finding: str, slow: bool = False) -> None:
        self.cases.append(Case(name, url, status, reason, finding, slow))

    def __enter__(self) -> "HostileWeb":
        try:
            self._serving()
            self._robots()
            self._addresses()
            self._tls()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for web in self.webs.values():
            web.stop()

    # -- one host, every misbehaviour of a response ----------------------------------------------
    def _serving(self) -> None:
        web, photo, d, s = self._web("main"), self.photo, self.drip, self.drip_seconds
        base = web.base_url
        ok = web.add("/photo.jpg", photo, "image/jpeg")
        self.case("ok", ok, "ok", "", "control")
        raw = lambda path, script: web.add(path, fault="raw", script=script)  # noqa: E731
        n = len(photo)
        self.case("drip_connection_close", raw("/drip-close.jpg", _drip(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n,
            photo, d, s)), "failed", "deadline", "1: Connection: close", slow=True)
        self.case("drip_http10", raw("/drip-10.jpg", _drip(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",
                                                           photo, d, s)), "failed", "deadline", "1: HTTP/1.0",
                  slow=True)
        self.case("drip_headers", raw("/drip-headers.jpg", _drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", d, s)),
                  "failed", "deadline", "1: dripped headers", slow=True)
        self.case("drip_status_line", raw("/drip-status.jpg", _drip(b"", b"HTTP/1.1 200 OK", d, s)),
                  "failed", "deadline", "1: dripped status line", slow=True)
        self.case("drip_chunked", raw("/drip-chunked.jpg", _drip(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1\r\nx\r\n", d, s)), "failed", "deadline", "1: chunked", slow=True)
        self.case("drip_keep_alive", web.add("/drip-ka.jpg", photo, "image/jpeg", fault="slow_drip", drip_bytes=1,
                                             drip_interval=d), "failed", "deadline", "1: keep-alive", slow=True)
        self.case("hang", web.add("/hang.jpg", fault="hang"), "failed", "deadline", "1: no answer", slow=True)
        self.case("port_out_of_range", f"http://{web.host}:99999/a.jpg", "failed", "port", "2: port 99999")
        self.case("broken_ipv6_url", "http://[::1/a.jpg", "failed", "invalid url", "2: invalid IPv6 url")
        self.case("location_broken_ipv6", raw("/to-bad-ipv6", [(
            b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "failed", "invalid", "2: Location: http://[::1")
        self.case("redirect_port_out_of_range", raw("/to-bad-port", [(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:99999/x.jpg\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "failed", "port", "2: redirect to port 99999")
        self.case("content_length_superscript", raw("/cl-sup.jpg", [(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: \xb2\r\n\r\n" + photo, 0.0)]),
                  "failed", "content-length", "2: Content-Length: \u00b2")
        self.case("content_length_negative", raw("/cl-neg.jpg", [(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: -1\r\n\r\n" + photo, 0.0)]),
                  "failed", "content-length", "2: lying header")
        self.case("content_length_conflict", raw("/cl-two.jpg", [(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n" + photo[:20], 0.0)]),
                  "failed", "content-length", "2: lying header")
        self.case("retry_after_superscript", raw("/ra-sup.jpg", [(
            b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "failed", "http 503", "2: Retry-After: \u00b2")
        self.case("retry_after_huge", raw("/ra-huge.jpg", [(
            b"HTTP/1.1 429 Slow\r\nRetry-After: 99999999999999999999999\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "failed", "http 429", "2: lying header")
        web.add("/idn.jpg", photo, "image/jpeg")
        self.hosts[IDN_ASCII] = web.host
        self.case("idn_host", f"http://{IDN_HOST}:{web.port}/idn.jpg", "ok", "", "2: IDN host")
        web.add("/with%20space/%C3%BC.jpg", photo, "image/jpeg")
        self.case("space_and_unicode_in_path", f"{base}/with space/ü.jpg", "ok", "", "2: unencoded path")
        self.case("crlf_in_url", f"{base}/photo.jpg\r\nX-Injected: 1", "failed", "http 404", "2: header injection")
        self.case("garbage_status_line", raw("/garbage.jpg", [(b"HELLO THERE\r\n\r\n", 0.0)]),
                  "failed", "", "2: not HTTP")
        self.case("huge_header_line", raw("/big-header.jpg", [(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 0.0)]), "failed", "", "2: header size")
        self.case("too_many_headers", raw("/many-headers.jpg", [(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(500)) + b"\r\n", 0.0)]),
                  "failed", "", "2: header count")
        self.case("bad_chunk_size", raw("/bad-chunk.jpg", [(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 0.0)]),
                  "failed", "", "2: bad chunked framing")
        bomb = gzip.compress(b"\0" * 40_000_000, compresslevel=6)
        self.case("gzip_bomb", raw("/bomb.jpg", [(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            % len(bomb) + bomb, 0.0)]), "failed", "cap", "5: compressed body bomb")
        self.case("status_999", raw("/odd.jpg", [(b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "failed", "http 999", "2: unknown status")
        self.case("redirect_to_file", raw("/to-file", [(
            b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "blocked", "scheme", "3: scheme")
        self.case("redirect_to_metadata", raw("/to-metadata", [(
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n",
            0.0)]), "blocked", "non-public", "3: redirect to metadata address")
        self.case("redirect_to_6to4", raw("/to-6to4", [(
            b"HTTP/1.1 302 Found\r\nLocation: http://[2002:a9fe:a9fe::]/x.jpg\r\nContent-Length: 0\r\n\r\n", 0.0)]),
                  "blocked", "non-public", "3: redirect to 6to4 metadata")

    # -- robots.txt, one origin per case ---------------------------------------------------------
    def _robots(self) -> None:
        photo = self.photo

        def host(name: str, robots: str | None = None, **route) -> FakeWeb:
            web = self._web(name)
            if route:
                web.add("/robots.txt", **route)
            else:
                web.set_robots(robots)
            for path in ("/a.jpg", "/a.png", "/private/a.jpg", "/public/a.jpg", "/no/a.jpg", "/late/a.jpg"):
                web.add(path, photo, "image/jpeg")
            return web

        web = host("robots_503", fault="server_error")
        self.case("robots_503", web.url("/a.jpg"), "failed", "unreachable", "4: 5xx robots.txt")
        web = host("robots_longest", "User-agent: *\nAllow: /\nDisallow: /private/\n")
        self.case("robots_longest_match", web.url("/private/a.jpg"), "opted_out", "robots", "4: longest match")
        self.case("robots_longest_allowed", web.url("/public/a.jpg"), "ok", "", "4: longest match")
        web = host("robots_wildcard", "User-agent: *\nDisallow: /*.jpg$\n")
        self.case("robots_wildcard", web.url("/a.jpg"), "opted_out", "robots", "4: * and $")
        self.case("robots_wildcard_other", web.url("/a.png"), "ok", "", "4: * and $")
        web = host("robots_agent", "User-agent: WITBOT\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
        self.case("robots_our_agent", web.url("/a.jpg"), "opted_out", "robots", "4: agent token")
        web = host("robots_401", fault="raw", script=[(b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n", 0.0)])
        self.case("robots_401", web.url("/a.jpg"), "ok", "", "4: 4xx means no rules")
        big = "User-agent: *\nDisallow: /no/\n" + "# filler\n" * 70_000 + "Disallow: /late/\n"
        web = host("robots_huge", big)
        self.case("robots_over_500k", web.url("/no/a.jpg"), "opted_out", "robots", "4: 500 KiB cap")
        self.case("robots_past_500k", web.url("/late/a.jpg"), "ok", "", "4: 500 KiB cap")
        web = host("robots_redirect", fault="redirect", redirect_to="/real-robots.txt")
        web.add("/real-robots.txt", b"User-agent: *\nDisallow: /\n", "text/plain")
        self.case("robots_redirected", web.url("/a.jpg"), "opted_out", "robots", "4: redirects followed")
        web = host("robots_slow", fault="raw", script=_drip(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n", b"# slow\n",
            self.drip, self.drip_seconds))
        for i in range(3):
            self.case(f"robots_slow_{i}", web.url("/a.jpg"), "failed", "robots.txt", "1: slow robots.txt",
                      slow=True)

    # -- addresses that are not public (never connected to) ----------------------------------------
    def _addresses(self) -> None:
        for name, address in {"cgnat.example": "100.64.1.1", "metadata-alias.example": "100.100.100.200",
                              "ten.example": "10.0.0.1", "mapped.example": "::ffff:169.254.169.254"}.items():
            self.hosts[name] = address
            self.case(f"name_to_{address}", f"http://{name}/x.jpg", "blocked", "non-public", "3: resolved address")
        for literal in ("100.100.100.200", "100.64.0.1", "192.0.0.192", "169.254.169.254", "[2002:7f00:1::]",
                        "[2002:a9fe:a9fe::]", "[::ffff:127.0.0.1]", "[64:ff9b::a9fe:a9fe]", "[::a9fe:a9fe]",
                        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "0.0.0.0", "[fd00::1]", "224.0.0.1"):
            self.case(f"literal_{literal}", f"http://{literal}/x.jpg", "blocked", "non-public", "3: address literal")
        self.case("metadata_name", "http://metadata.google.internal/computeMetadata/v1/", "blocked", "metadata",
                  "3: metadata name")

    # -- TLS ----------------------------------------------------------------------------------------
    def _tls(self) -> None:
        photo = self.photo
        web = self._web("tls_ok", tls=self.ca.server_context(["images.example"]))
        web.add("/photo.jpg", photo, "image/jpeg")
        self.hosts["images.example"] = web.host
        self.case("tls_ok", f"https://images.example:{web.port}/photo.jpg", "ok", "", "13: https")
        self.hosts["wrong-name.example"] = web.host
        self.case("tls_name_mismatch", f"https://wrong-name.example:{web.port}/photo.jpg", "failed", "tls",
                  "13: hostname mismatch")
        stranger = TestCA(self.folder / "other-ca", name="not trusted")
        web = self._web("tls_untrusted", tls=stranger.server_context(["untrusted.example"]))
        web.add("/photo.jpg", photo, "image/jpeg")
        self.hosts["untrusted.example"] = web.host
        self.case("tls_untrusted", f"https://untrusted.example:{web.port}/photo.jpg", "failed", "certificate",
                  "13: untrusted certificate")
