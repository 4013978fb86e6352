"""Politeness at scale: per-host request pacing (--per-host-qps), robots.txt Crawl-delay, and a
host-wide pause after 429/503 with Retry-After, read off the loopback web's request log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import crawl
from pipeline.fetch import FetchConfig, Fetcher

SLACK = 0.03  # the server stamps a request when it has read it, a little after the client sent it


def image_times(web, prefix: str = "/p/") -> list[float]:
    return sorted(r.time for r in web.requests if r.path.startswith(prefix))


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def fetch_all(fetcher: Fetcher, urls: list[str]) -> list[str]:
    with ThreadPoolExecutor(len(urls)) as pool:
        return [f.status for f in pool.map(fetcher.fetch, urls)]


def test_per_host_qps_spaces_the_requests_of_one_host(fake_web, photos):
    urls = [fake_web.add(f"/p/{i}.jpg", photos[i], "image/jpeg") for i in range(8)]
    fetcher = Fetcher(FetchConfig(allow_networks=("127.0.0.0/8",), per_host_qps=5, timeout=5))
    assert fetch_all(fetcher, urls) == ["ok"] * 8
    assert min(gaps(image_times(fake_web))) >= 0.2 - SLACK
    unpaced = Fetcher(FetchConfig(allow_networks=("127.0.0.0/8",), timeout=5))  # the control: no pacing
    fake_web.clear_log()
    assert fetch_all(unpaced, urls) == ["ok"] * 8
    assert max(image_times(fake_web)) - min(image_times(fake_web)) < 0.5


def test_crawl_delay_is_honoured_and_a_url_past_it_fails_on_time(fake_web, photos):
    fake_web.set_robots("User-agent: *\nCrawl-delay: 0.4\n")
    urls = [fake_web.add(f"/p/{i}.jpg", photos[i], "image/jpeg") for i in range(6)]
    fetcher = Fetcher(FetchConfig(allow_networks=("127.0.0.0/8",), timeout=1.5))
    statuses = fetch_all(fetcher, urls)
    times = image_times(fake_web)
    assert min(gaps(times)) >= 0.4 - SLACK
    # 1.5 s of deadline holds about four requests 0.4 s apart: the rest fail, waiting no longer
    assert statuses.count("ok") == len(times) and 3 <= len(times) <= 5
    assert statuses.count("failed") == 6 - len(times)


def test_retry_after_pauses_the_whole_host(fake_web, photos):
    busy = fake_web.add("/p/busy.jpg", photos[0], "image/jpeg", fault="too_many_requests", retry_after=1,
                        fail_times=1)
    others = [fake_web.add(f"/p/{i}.jpg", photos[i], "image/jpeg") for i in range(1, 4)]
    fetcher = Fetcher(FetchConfig(allow_networks=("127.0.0.0/8",), timeout=5))
    assert fetcher.fetch(busy).status == "ok"  # 429, a pause of 1 s, then the photo
    first = min(r.time for r in fake_web.requests_for("/p/busy.jpg"))
    assert fetch_all(fetcher, others) == ["ok"] * 3
    assert all(t - first >= 1.0 - SLACK for t in image_times(fake_web) if t > first)


def test_the_crawl_job_paces_each_host(fake_web, photos, tmp_path):
    urls = [fake_web.add(f"/p/{i}.jpg", photos[i], "image/jpeg") for i in range(6)]
    pq.write_table(pa.table({"url": urls, "caption": ["c"] * 6}), tmp_path / "urls.parquet")
    assert crawl.run(["--urls", str(tmp_path / "urls.parquet"), "--out", str(tmp_path / "out"),
                      "--allow-network", "127.0.0.0/8", "--per-host-qps", "4", "--direct_num_workers", "1"]) == 0
    assert min(gaps(image_times(fake_web))) >= 0.25 - SLACK
