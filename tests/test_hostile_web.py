"""The crawl against a hostile web (:mod:`wit.testing.hostile`): every url ends in one status
with its reason, no fetch outlives its deadline, robots.txt is RFC 9309's, only public
addresses are connected to, https is verified, and a whole crawl job over all of it exits 0."""

from __future__ import annotations

import ipaddress
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import crawl
from pipeline.fetch import (FetchConfig, Fetcher, parse_content_length, parse_retry_after, robots_opt_out)
from pipeline.urls import BadUrl, Refused, check_addresses, embedded_ipv4, is_public, parse_target
from wit.testing import loopback
from wit.testing.hostile import IDN_ASCII, HostileWeb

TIMEOUT = 2.0
SLACK = 1.0  # the bound: no fetch outlives its deadline by more than a second


@pytest.fixture(scope="module")
def hostile(photos, tmp_path_factory):
    with HostileWeb(photos[0], tmp_path_factory.mktemp("hostile"), drip_seconds=40) as web:
        yield web


def fetcher_for(web: HostileWeb, **overrides) -> Fetcher:
    options = dict(timeout=TIMEOUT, hosts=web.hosts, allow_networks=tuple(web.allow_networks), ca_pem=web.ca_pem,
                   max_bytes=5_000_000, backoff=0.1)
    return Fetcher(FetchConfig(**{**options, **overrides}))


def image_requests(web, name: str) -> list[str]:
    return [r.path for r in web.webs[name].requests if r.path != "/robots.txt"]


def test_every_hostile_case_ends_in_its_status_within_its_deadline(hostile):
    fetcher = fetcher_for(hostile)
    refused_before = len(loopback.refused)

    def one(case):
        started = time.monotonic()
        return case, fetcher.fetch(case.url), time.monotonic() - started

    with ThreadPoolExecutor(len(hostile.cases)) as pool:
        results = list(pool.map(one, hostile.cases))
    wrong = [(case.name, result.status, result.reason) for case, result, _ in results
             if result.status != case.status or case.reason.lower() not in result.reason.lower()]
    assert not wrong
    late = [(case.name, round(seconds, 2)) for case, _, seconds in results if seconds > TIMEOUT + SLACK]
    assert not late
    assert all(seconds >= TIMEOUT - 0.05 for case, _, seconds in results if case.slow)  # really held by the server
    # refused before any connection: the loopback guard saw no attempt to leave loopback
    assert loopback.refused[refused_before:] == []
    for name in ("robots_503", "robots_longest", "robots_wildcard", "robots_agent", "robots_redirect",
                 "robots_slow"):
        forbidden = {"robots_longest": ["/private/a.jpg"], "robots_wildcard": ["/a.jpg"]}.get(name, ["/a.jpg"])
        assert not set(forbidden) & set(image_requests(hostile, name)), name
    idn = [r for r in hostile.webs["main"].requests if r.path == "/idn.jpg"]
    assert idn and idn[0].headers["Host"] == f"{IDN_ASCII}:{hostile.webs['main'].port}"
    assert not any("X-Injected" in r.headers for r in hostile.webs["main"].requests)


def test_slow_robots_txt_stalls_nobody_else_and_slots_are_released(hostile):
    """While three urls wait out a dripping robots.txt, a url of another host is fetched at
    once; urls that fail on every kind of hostile answer give their host slots back."""
    fetcher = fetcher_for(hostile, per_host=2)
    slow = [c.url for c in hostile.cases if c.name.startswith("robots_slow")]
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(fetcher.fetch, url) for url in slow]
        time.sleep(0.3)
        started = time.monotonic()
        other = fetcher.fetch(hostile.webs["robots_401"].url("/a.jpg"))
        assert other.status == "ok" and time.monotonic() - started < 1.0
        # each ends at its own deadline, waiting for robots.txt or told that its load ran out of time
        assert all(f.result().status == "failed" and "robots.txt" in f.result().reason for f in waiting)
    main = hostile.webs["main"]
    for path in ("/cl-sup.jpg", "/garbage.jpg", "/bad-chunk.jpg", "/many-headers.jpg", "/to-bad-ipv6",
                 "/to-bad-port", "/odd.jpg") * 2:
        assert fetcher.fetch(main.url(path)).status == "failed"
    for url in [f"http://bücher.example:{main.port}/idn.jpg"] * 3:
        assert fetcher.fetch(url).status == "ok"
    assert all(state.gate._value == 2 and state.users == 0 for state in fetcher.origins.values())
    started = time.monotonic()
    assert fetcher.fetch(main.url("/photo.jpg")).status == "ok"
    assert time.monotonic() - started < 1.0


def test_https_trusts_the_given_bundle_or_the_environment(hostile, monkeypatch):
    url = next(c.url for c in hostile.cases if c.name == "tls_ok")
    plain = fetcher_for(hostile, ca_pem="", robots=False)
    assert plain.fetch(url).status == "failed"  # certifi's roots do not know the test CA
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.setenv(variable, str(hostile.ca.ca_file))
        fetched = fetcher_for(hostile, ca_pem="", robots=False).fetch(url)
        assert fetched.status == "ok" and len(fetched.data) > 1000, variable


def test_the_crawl_job_over_a_hostile_list_exits_0_with_one_row_per_url(hostile, photos, tmp_path):
    main = hostile.webs["main"]
    normal = [main.add(f"/normal/{i}.jpg", photos[i + 1], "image/jpeg") for i in range(12)]
    hostile_urls = [case.url for case in hostile.cases]
    odd_rows = ["", "   ", "not a url", "javascript:alert(1)", "http://", "http://\u00e9\u0301.\u0000/x",
                "https://[fe80::1%25eth0]/x.jpg", "http://a" * 400]
    urls = hostile_urls + normal + odd_rows
    pq.write_table(pa.table({"url": urls, "caption": [f"caption {i}" for i in range(len(urls))]}),
                   tmp_path / "urls.parquet")
    (tmp_path / "ca.pem").write_text(hostile.ca_pem)
    resolve = [arg for host, address in hostile.hosts.items() for arg in ("--resolve", f"{host}={address}")]
    started = time.monotonic()
    assert crawl.run(["--urls", str(tmp_path / "urls.parquet"), "--out", str(tmp_path / "out"),
                      "--timeout", str(TIMEOUT), "--allow-network", "127.0.0.0/8", "--ca-bundle",
                      str(tmp_path / "ca.pem"), "--threads-per-worker", "64", "--shard-size", "40",
                      "--max-bytes", "5000000", *resolve]) == 0
    elapsed = time.monotonic() - started
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "out").glob("*.parquet"))]).to_pylist()
    assert sorted(row["key"] for row in rows) == sorted({row["key"] for row in rows})
    assert len(rows) == len(urls)
    by_url = {}
    for row in rows:
        by_url.setdefault(row["url"], []).append(row["status"])
    for case in hostile.cases:  # the ok cases serve one photo: all but one are exact duplicates
        expected = {"ok": {"success", "duplicate"}, "failed": {"failed_to_download"}}.get(case.status, {case.status})
        assert set(by_url[case.url]) <= expected, (case.name, by_url[case.url])
    assert all(by_url[url] == ["success"] for url in normal)
    sizes = json.loads((tmp_path / "out" / "sizes.json").read_text())
    assert sizes["__total__"] == sum(row["status"] == "success" for row in rows)
    assert (tmp_path / "out" / "_SUCCESS").exists()
    assert elapsed < hostile.drip_seconds / 2, elapsed  # the deadline's time, not the servers' drip time


# -- properties: arbitrary input never raises, only public addresses pass ------------------------
@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"https?://[^/]{0,40}(:[0-9]{0,8})?/.{0,40}", fullmatch=True))
def test_parse_target_never_raises_anything_but_its_own_errors(text):
    try:
        target = parse_target(text)
    except (BadUrl, Refused):
        return
    assert target.url.isascii() and " " not in target.url and "\r" not in target.url and "\n" not in target.url
    assert 1 <= target.port <= 65535 and target.target.startswith("/")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=4), st.text(max_size=60))
def test_header_parsers_never_raise(lengths, retry_after):
    try:
        length = parse_content_length(lengths)
        assert length is None or length >= 0
    except ValueError:
        pass
    wait = parse_retry_after(retry_after)
    assert wait is None or wait >= 0
    robots_opt_out([retry_after, *lengths])


@settings(max_examples=500, deadline=None)
@given(st.ip_addresses())
def test_only_global_addresses_pass(address):
    try:
        check_addresses("host.example", [str(address)], allow_private=False)
        passed = True
    except Refused:
        passed = False
    if passed:
        assert address.is_global and not address.is_multicast
        assert all(inner.is_global for inner in (embedded_ipv4(address) if address.version == 6 else []))
    assert passed == is_public(address)


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4).filter(lambda a: not is_public(a)))
def test_a_non_public_ipv4_address_inside_ipv6_never_passes(inner):
    value = int(inner)
    forms = [ipaddress.IPv6Address((0x2002 << 112) | (value << 80)),  # 6to4
             ipaddress.IPv6Address(0xFFFF << 32 | value),  # mapped
             ipaddress.IPv6Address((0x64FF9B << 96) | value),  # NAT64
             ipaddress.IPv6Address(value),  # compatible
             ipaddress.IPv6Address((0x20010000 << 96) | (value ^ 0xFFFFFFFF))]  # Teredo client (inverted)
    for form in forms:
        assert not is_public(form), form


def test_check_addresses_refuses_mixed_answers_and_allows_named_networks():
    with pytest.raises(Refused):
        check_addresses("h.example", ["93.184.215.14", "127.0.0.1"], allow_private=False)
    loop = (ipaddress.ip_network("127.0.0.0/8"),)
    assert check_addresses("h.example", ["127.0.0.5"], allow_private=False, allow=loop) == "127.0.0.5"
    with pytest.raises(Refused):
        check_addresses("h.example", ["100.100.100.200"], allow_private=False, allow=loop)
    assert check_addresses("h.example", ["93.184.215.14"], allow_private=False) == "93.184.215.14"
