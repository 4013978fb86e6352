"""Connection reuse by the fetcher (what keeps TLS handshakes, the crawl's largest network CPU
cost, to about one per host): a short body left unread is drained so its connection is kept; a
long one is not read and its connection is closed; a pool keeps a bounded number of idle
connections, quietly; pools past the limit are closed, the least recently used first; the
robots.txt cache is bounded in bytes as well as in origins."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline import robots
from pipeline.fetch import DRAIN_BYTES, FetchConfig, Fetcher

BODY = bytes(range(256)) * 64  # 16 KiB


def fetcher(**overrides) -> Fetcher:
    return Fetcher(FetchConfig(**{"allow_private": True, "robots": False, "timeout": 5, **overrides}))


def test_a_short_error_page_is_read_so_that_its_connection_is_kept(fake_web):
    fake_web.add("/missing.jpg", fault="not_found")
    fake_web.add("/broken.jpg", fault="server_error")
    fake_web.add("/a.jpg", BODY)
    fetch = fetcher(retries=0).fetch
    assert fetch(fake_web.url("/missing.jpg")).reason == "HTTP 404"
    assert fetch(fake_web.url("/broken.jpg")).reason.startswith("HTTP 500")
    assert fetch(fake_web.url("/a.jpg")).data == BODY
    assert [r.path for r in fake_web.requests] == ["/missing.jpg", "/broken.jpg", "/a.jpg"]
    assert len({r.connection for r in fake_web.requests}) == 1


def test_a_long_unread_body_closes_its_connection(fake_web):
    fake_web.add("/small.jpg", b"x" * 100, "image/jpeg", fault="x_robots_tag")
    fake_web.add("/large.jpg", b"x" * (DRAIN_BYTES + 1), "image/jpeg", fault="x_robots_tag")
    fake_web.add("/a.jpg", BODY)
    fetch = fetcher().fetch
    statuses = [fetch(fake_web.url(path)).status for path in ("/small.jpg", "/a.jpg", "/large.jpg", "/a.jpg")]
    assert statuses == ["opted_out", "ok", "opted_out", "ok"]
    first, second, large, last = (r.connection for r in fake_web.requests)
    assert first == second == large != last  # the opted-out body over DRAIN_BYTES was not downloaded


def test_a_pool_keeps_a_bounded_number_of_idle_connections_without_warnings(fake_web, caplog):
    fake_web.add("/slow.jpg", BODY[:512], "image/jpeg", fault="slow_drip", drip_bytes=256, drip_interval=0.2)
    crawler = fetcher(per_host=8)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(8) as pool:
        results = list(pool.map(crawler.fetch, [fake_web.url("/slow.jpg")] * 8))
    assert [r.status for r in results] == ["ok"] * 8
    assert fake_web.max_active_connections == 8  # eight at once: the host's slots, not the pool, bound them
    deadline = time.monotonic() + 3
    while fake_web.active_connections > Fetcher.IDLE_PER_POOL and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_web.active_connections == Fetcher.IDLE_PER_POOL  # the rest were closed on their way back
    # eight at once that never get an answer: each gives its pool slot back empty, past the pool's size
    fake_web.add("/hang.jpg", fault="hang")
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetcher(per_host=8, timeout=1).fetch, [fake_web.url("/hang.jpg")] * 8))
    assert [r.reason for r in results] == ["deadline exceeded"] * 8
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_the_robots_cache_keeps_at_most_its_byte_budget_of_text():
    texts = {f"https://h{i}.example": "User-agent: *\nDisallow: /private/\n" + "# padding\n" * (100 * i)
             for i in range(1, 9)}
    cache = robots.RobotsCache(lambda origin: robots.rules_from_response(200, texts[origin].encode()),
                               max_bytes=20_000)
    for origin in texts:
        assert cache.rules(origin, 5).allows(origin + "/a.jpg", "witbot")
        assert not cache.rules(origin, 5).allows(origin + "/private/a.jpg", "witbot")
    held = {origin for origin in cache.entries}
    assert cache.bytes == sum(len(texts[origin]) for origin in held) <= 20_000
    assert held == {"https://h7.example", "https://h8.example"}  # the least recently used went first
    cache.close()


def test_a_slow_error_body_is_given_up_after_a_second_not_the_deadline(fake_web):
    fake_web.add("/slow-404.jpg", fault="raw", script=[
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nnot", 0.0), (b" found", 4.0)])
    started = time.monotonic()
    fetched = fetcher(timeout=8).fetch(fake_web.url("/slow-404.jpg"))
    assert fetched.reason == "HTTP 404"
    assert 0.9 < time.monotonic() - started < 2.5


def test_pools_past_the_limit_are_closed_least_recently_used_first(fake_web):
    fake_web.add("/a.jpg", BODY)
    names = [f"h{i}.test" for i in range(5)]
    crawler = fetcher(hosts={name: "127.0.0.1" for name in names})
    crawler.MAX_POOLS = 3
    for name in names[:3] + names[:1] + names[3:]:  # h0 used again before h3 and h4 arrive
        assert crawler.fetch(f"http://{name}:{fake_web.port}/a.jpg").data == BODY
        if name == "h2.test":
            held = {key[1]: pool for key, pool in crawler.pools.items()}  # kept alive here: closed, not collected
    assert [key[1] for key in crawler.pools] == ["h0.test", "h3.test", "h4.test"]
    assert held["h1.test"].pool is None and held["h2.test"].pool is None and held["h0.test"].pool is not None
    assert crawler.cache_sizes()["connection_pools"] == 3
    deadline = time.monotonic() + 3
    while fake_web.active_connections > 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_web.active_connections == 3  # the idle connections of h1's and h2's pools were closed
    assert len({r.connection for r in fake_web.requests}) == 5  # h0's second fetch reused its connection
    crawler.close()
