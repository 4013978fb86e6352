"""The crawl against the loopback web with faults: statuses, politeness, safety, resume, readers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import parse_config, to_argv
from core.jobs import by_command
from pipeline import crawl
from pipeline.crawl import CrawlConfig
from pipeline.fetch import FetchConfig, Fetcher, robots_opt_out
from pipeline.images import ImageConfig
from tests.conftest import require_chromium, require_jemalloc
from wit.testing import browser

CRAWL = by_command("crawl")
# the loopback web's settings: short deadline, few retries, no per-host limit to speak of
FAST = {"timeout": 2, "retries": 2, "per_host": 64}


def fetching(**fields) -> FetchConfig:
    """``FAST`` fetch settings with every address allowed, unless ``fields`` say otherwise."""
    return FetchConfig(**{**FAST, "allow_private": True, **fields})


def crawling(urls: str | Path, out: str | Path, fetch: FetchConfig | None = None, **fields) -> CrawlConfig:
    """A crawl config built in code: one url list, 16 threads, :func:`fetching`'s settings."""
    return CrawlConfig(urls=[str(urls)], out=str(out), fetch=fetch or fetching(), **{"threads": 16, **fields})


def run_crawl(config: CrawlConfig, *beam_args: str) -> None:
    assert CRAWL.run_config(config, beam_args) is config


def write_urls(path: Path, urls: list[str]) -> str:
    pq.write_table(pa.table({"url": urls, "caption": [f"caption {i}" for i in range(len(urls))],
                             "uid": [f"u{i}" for i in range(len(urls))],
                             "entry_ids": [[i % 7] for i in range(len(urls))]}), path)
    return str(path)


def statuses(out: Path) -> dict[str, tuple[str, str]]:
    rows = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))]).to_pylist()
    return {row["url"]: (row["status"], row["error_message"]) for row in rows}


def test_every_fault_ends_in_its_status(fake_web, photos, tmp_path):
    web = fake_web
    good = [web.add(f"/ok/{i}.jpg", photos[i], "image/jpeg") for i in range(20)]
    good[:4] = [url.replace("127.0.0.1", "localhost") for url in good[:4]]  # a second host name
    web.add("/final.jpg", photos[20], "image/jpeg")
    faults = {
        "not_found": web.add("/f/404.jpg", fault="not_found"),
        "server_error": web.add("/f/500.jpg", photos[21], fault="server_error"),
        "flaky": web.add("/f/flaky.jpg", photos[22], "image/jpeg", fault="server_error", fail_times=1),
        "busy": web.add("/f/429.jpg", photos[23], "image/jpeg", fault="too_many_requests", retry_after=1, fail_times=1),
        "chain": web.redirect_chain("/f/chain", "/final.jpg", hops=3),
        "loop": web.redirect_loop("/f/loop-a", "/f/loop-b"),
        "drip": web.add("/f/drip.jpg", photos[24], "image/jpeg", fault="slow_drip", drip_bytes=64, drip_interval=0.05),
        "hang": web.add("/f/hang.jpg", photos[25], fault="hang"),
        "reset": web.add("/f/reset.jpg", photos[26], "image/jpeg", fault="reset"),
        "truncated": web.add("/f/trunc.jpg", photos[27], "image/jpeg", fault="truncated"),
        "wrong_type": web.add("/f/wrong.jpg", photos[28], fault="wrong_content_type"),
        "html": web.add("/f/page.jpg", fault="html"),
        "huge": web.add("/f/huge.jpg", photos[29], fault="huge_content_length"),
        "noai": web.add("/f/noai.jpg", photos[30], "image/jpeg", fault="x_robots_tag"),
        "other_bot": web.add("/f/otherbot.jpg", photos[31], "image/jpeg", fault="x_robots_tag", robots_tag="otherbot: noai"),
        "scoped": web.add("/f/scoped.jpg", photos[32], "image/jpeg", fault="x_robots_tag", robots_tag="witbot: noimageai"),
        "bomb": web.add("/f/bomb.png", fault="decompression_bomb"),
    }
    urls = write_urls(tmp_path / "urls.parquet", good + list(faults.values()))
    started = time.monotonic()
    run_crawl(crawling(urls, tmp_path / "out"))
    elapsed = time.monotonic() - started
    seen = statuses(tmp_path / "out")
    assert all(seen[url][0] == "success" for url in good)
    expected = {
        "not_found": ("failed_to_download", "HTTP 404"), "server_error": ("failed_to_download", "HTTP 500"),
        "flaky": ("success", ""), "busy": ("success", ""), "chain": ("success", ""),
        "loop": ("failed_to_download", "more than 5 redirects"), "drip": ("failed_to_download", "deadline exceeded"),
        "hang": ("failed_to_download", "deadline exceeded"), "reset": ("failed_to_download", ""),
        "truncated": ("failed_to_download", ""), "wrong_type": ("success", ""),
        "html": ("failed_to_resize", "undecodable"), "huge": ("failed_to_download", "Content-Length"),
        "noai": ("opted_out", "X-Robots-Tag: noai"), "other_bot": ("success", ""),
        "scoped": ("opted_out", "X-Robots-Tag: noimageai"), "bomb": ("filtered", "decompression bomb"),
    }
    # (the 429 pauses the whole host for its Retry-After: the 500's retries may run out of deadline)
    for name, (status, reason) in expected.items():
        got = seen[faults[name]]
        assert got[0] == status and reason in got[1], (name, got)
    assert elapsed < 30  # drip and hang ended at the 2 s deadline, not after the body
    busy = web.requests_for("/f/429.jpg")
    assert len(busy) == 2 and busy[1].time - busy[0].time >= 0.95  # Retry-After: 1 honoured
    assert all(r.headers["User-Agent"].startswith("witbot/") for r in web.requests)
    report = json.loads((tmp_path / "out" / "crawl_report.json").read_text())
    assert report["urls"] == len(good) + len(faults) and (tmp_path / "out" / "_SUCCESS").exists()
    loopback = [u for u in good + list(faults.values()) if "127.0.0.1" in u]
    assert report["top_hosts"] == [
        {"host": "127.0.0.1", "urls": len(loopback), "successes": sum(seen[u][0] == "success" for u in loopback),
         "success_ratio": sum(seen[u][0] == "success" for u in loopback) / len(loopback)},
        {"host": "localhost", "urls": 4, "successes": 4, "success_ratio": 1.0}]
    assert report["urls_crawled_now"] == report["urls"] and report["urls_per_second"] > 0
    require_chromium()
    dom = browser.dump_dom(tmp_path / "out" / "crawl_report.html")
    assert "<td>localhost</td><td>4</td><td>4</td><td>1.000</td>" in dom
    assert "<td>failed_to_download</td><td>8</td>" in dom and "<td>opted_out</td><td>2</td>" in dom
    assert f"{report['urls']} urls crawled in this run" in dom
    # opted-out images are not stored anywhere
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        texts = [tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith(".json")]
    stored = {json.loads(t)["url"] for t in texts}
    assert faults["noai"] not in stored and faults["scoped"] not in stored and faults["other_bot"] in stored


def test_robots_txt_is_fetched_once_and_honoured(fake_web, photos, tmp_path):
    fake_web.set_robots("User-agent: witbot\nDisallow: /private/\n\nUser-agent: *\nDisallow: /\n")
    allowed = [fake_web.add(f"/public/{i}.jpg", photos[i], "image/jpeg") for i in range(5)]
    private = [fake_web.add(f"/private/{i}.jpg", photos[i], "image/jpeg") for i in range(5)]
    urls = write_urls(tmp_path / "urls.parquet", allowed + private)
    run_crawl(crawling(urls, tmp_path / "out"))
    seen = statuses(tmp_path / "out")
    assert [seen[u][0] for u in allowed] == ["success"] * 5
    assert [seen[u] for u in private] == [("opted_out", "disallowed by robots.txt")] * 5
    assert not any(r.path.startswith("/private/") for r in fake_web.requests)  # no image request sent
    robots = fake_web.requests_for("/robots.txt")
    assert len(robots) == 1 and robots[0].time <= min(r.time for r in fake_web.requests if r.path != "/robots.txt")


def test_private_and_metadata_addresses_are_refused(fake_web, photos, tmp_path):
    local = fake_web.add("/a.jpg", photos[0], "image/jpeg")
    fake_web.add("/meta.jpg", fault="redirect", redirect_to="http://169.254.169.254/computeMetadata/v1/")
    urls = write_urls(tmp_path / "urls.parquet", [local, "http://metadata.google.internal/x", "ftp://example.org/a.jpg"])
    run_crawl(crawling(urls, tmp_path / "out", fetching(allow_private=False)))
    seen = statuses(tmp_path / "out")
    assert seen[local][0] == "blocked" and "non-public address 127.0.0.1" in seen[local][1]
    assert seen["http://metadata.google.internal/x"][0] == "blocked"
    assert seen["ftp://example.org/a.jpg"][0] == "blocked"
    assert fake_web.requests == []  # the server saw nothing
    # a public-looking start that redirects to the metadata server is refused at the hop
    fetcher = Fetcher(FetchConfig(allow_private=True, robots=False, timeout=3))
    result = fetcher.fetch(fake_web.url("/meta.jpg"))
    assert result.status == "blocked" and "metadata" in result.reason


def test_connections_go_to_the_address_that_was_checked(fake_web, photos):
    """One resolution per hop, and the connection is made to its answer: a name that answers a
    public address to the check and loopback afterwards (DNS rebinding) reaches nothing."""
    url = fake_web.add("/pin.jpg", photos[0], "image/jpeg")
    port = urlsplit(url).port
    answers = []

    def local_name(host, _port):
        answers.append(host)
        return ["127.0.0.1"]
    fetched = Fetcher(FetchConfig(allow_private=True, robots=False, timeout=3), resolve=local_name).fetch(
        f"http://images.example:{port}/pin.jpg")
    assert fetched.status == "ok" and fetched.data == photos[0] and answers == ["images.example"]
    assert fake_web.requests_for("/pin.jpg")[0].headers["Host"] == f"images.example:{port}"  # the url's name

    def rebinding(host, _port):
        answers.append(host)
        return ["93.184.215.14"] if len(answers) == 2 else ["127.0.0.1"]  # public to the check, loopback after
    fetched = Fetcher(FetchConfig(robots=False, timeout=1.5), resolve=rebinding).fetch(
        f"http://images.example:{port}/pin.jpg")
    assert fetched.status == "failed" and answers == ["images.example"] * 2
    assert len(fake_web.requests_for("/pin.jpg")) == 1  # the second fetch never reached loopback


def test_image_work_is_gated_to_the_workers_share_of_the_cores(fake_web, photos, tmp_path, monkeypatch):
    """Many downloads in flight, few decodes at once: at most --image-threads threads are inside
    the image work at any moment, and every url still gets its status."""
    config = crawl.CrawlConfig(urls=[], out=str(tmp_path), threads=16)
    assert crawl.image_threads(config, cores=8) == 8  # one worker process on the machine
    assert crawl.image_threads(crawl.CrawlConfig(urls=[], out="", worker_processes=2), cores=2) == 1
    assert crawl.image_threads(crawl.CrawlConfig(urls=[], out="", worker_processes=0), cores=8) == 1  # one per core
    assert crawl.image_threads(crawl.CrawlConfig(urls=[], out="", worker_processes=0, image_threads=3), cores=8) == 3
    with pytest.raises(ValueError, match="image-threads"):
        crawl.CrawlConfig(urls=[], out="", image_threads=-1)

    urls = [fake_web.add(f"/gate/{i}.jpg", photos[i], "image/jpeg") for i in range(40)]
    inside, most = [0], [0]
    lock = threading.Lock()
    real = crawl.images.process

    def counting(data, image_config):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.005)  # long enough for the other threads to pile up at the gate
            return real(data, image_config)
        finally:
            with lock:
                inside[0] -= 1
    monkeypatch.setattr(crawl.images, "process", counting)
    for slots in (1, 3):
        path = write_urls(tmp_path / f"gate{slots}.parquet", urls)
        out = tmp_path / f"out{slots}"
        config = crawl.CrawlConfig(urls=[path], out=str(out), threads=16, image_threads=slots,
                                   fetch=FetchConfig(allow_private=True, robots=False, timeout=5, per_host=64))
        fn = crawl.CrawlShardFn(config)
        fn.setup()
        try:
            most[0] = 0
            fn.start_bundle()
            outputs = list(fn.process(crawl.plan_shards([path], 1000)[0])) + list(fn.finish_bundle())
            stats = next(o.value for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput))
        finally:
            fn.teardown()
        assert most[0] == slots and stats["successes"] == 40


def test_x_robots_tag_parsing():
    assert robots_opt_out(["noai"]) == "noai"
    assert robots_opt_out(["noindex, nofollow"]) == "noindex"
    assert robots_opt_out(["googlebot: noindex"]) is None
    assert robots_opt_out(["witbot: noimageai"]) == "noimageai"
    assert robots_opt_out(["all"]) is None and robots_opt_out([]) is None


def read_back(out: str) -> list[tuple[str, bytes, str]]:
    fs, root = fsspec.core.url_to_fs(out)
    samples = []
    for path in sorted(fs.glob(f"{root}/*.tar")):
        with fs.open(path, "rb") as handle, tarfile.open(fileobj=io.BytesIO(handle.read())) as tar:
            samples += [(m.name, tar.extractfile(m).read(), path) for m in tar.getmembers()]
    return samples


def test_kill_and_resume_equals_an_uninterrupted_run(fake_web, photos, tmp_path):
    urls = [fake_web.add(f"/img/{i}.jpg", photos[i % len(photos)], "image/jpeg") for i in range(60)]
    # later shards hold a slow url each, so the kill lands mid-job
    urls[25] = fake_web.add("/slow1.jpg", photos[0], fault="hang")
    urls[45] = fake_web.add("/slow2.jpg", photos[0], fault="hang")
    path = write_urls(tmp_path / "urls.parquet", urls)
    full, killed = (crawling(path, tmp_path / name, shard_size=20) for name in ("full", "killed"))
    run_crawl(full)
    env = {**os.environ, "WIT_QUIET": "1"}
    # the process to kill runs the command line of the same config
    process = subprocess.Popen([sys.executable, "-m", "pipeline.crawl", *to_argv(killed)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "00000_stats.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed" / "_SUCCESS").exists()
    run_crawl(killed)
    for name in ("00000.tar", "00001.tar", "00002.tar", "00000.parquet", "00001.parquet", "00002.parquet", "sizes.json"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes(), name
    report = json.loads((tmp_path / "killed" / "crawl_report.json").read_text())
    assert report["shards_resumed"] >= 1
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # no partial file left behind


def test_exact_duplicates_across_the_run_keep_the_smallest_key(fake_web, photos, tmp_path):
    """The same bytes under different urls, within a shard and across shards: the smallest key
    keeps the image, every other ends `duplicate` naming it, out of the tars and the counts; a
    re-run changes nothing, and a shard caught between its rewrite steps is crawled again."""
    urls = [fake_web.add(f"/img/{i}.jpg", photos[i + 2], "image/jpeg") for i in range(15)]
    for row in (0, 3, 7, 12):  # shard 0 twice, shards 1 and 2
        urls[row] = fake_web.add(f"/copy/{row}.jpg", photos[0], "image/jpeg")
    for row in (5, 14):  # shards 1 and 2
        urls[row] = fake_web.add(f"/copy/{row}.jpg", photos[1], "image/jpeg")
    path = write_urls(tmp_path / "urls.parquet", urls)
    out = tmp_path / "out"
    config = crawling(path, out, shard_size=5)
    run_crawl(config)
    seen = statuses(out)
    repeats = {3: "000000000", 7: "000000000", 12: "000000000", 14: "000010000"}
    for row, url in enumerate(urls):
        expected = ("duplicate", f"same sha256: kept at key {repeats[row]}") if row in repeats else ("success", "")
        assert seen[url] == expected, (row, seen[url])
    stored = {}
    for shard in range(3):
        with tarfile.open(out / f"{shard:05d}.tar") as tar:
            names = tar.getnames()
            stored.update({json.loads(tar.extractfile(n).read())["url"]: n[:9] for n in names if n.endswith(".json")})
            assert len(names) == 3 * len([n for n in names if n.endswith(".jpg")])
        stats = json.loads((out / f"{shard:05d}_stats.json").read_text())
        assert stats["successes"] == len([n for n in names if n.endswith(".jpg")])
    assert set(stored) == {url for row, url in enumerate(urls) if row not in repeats}
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"00000.tar": 4, "00001.tar": 4, "00002.tar": 3, "__total__": 11}
    report = json.loads((out / "crawl_report.json").read_text())
    assert report["status"]["duplicate"] == 4 and report["status"]["success"] == 11
    assert report["top_reasons"]["duplicate: same sha256"] == 4

    files = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("crawl_report")}
    run_crawl(config)  # a finished crawl: nothing left to drop
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("crawl_report")} == files
    (out / "00002_stats.json").unlink()  # a kill after the rewrite began: the shard is crawled again
    run_crawl(config)
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("crawl_report")} == files


def test_repeats_across_shards_beyond_shard_99999():
    from pipeline.exact_duplicates import repeats_of

    keys = ["1000000003", "999990001", "000120005", "1234560000"]  # shards 100000, 99999, 12, 123456
    assert sorted(repeats_of(("digest", keys))) == [
        (99999, ("999990001", "000120005")), (100000, ("1000000003", "000120005")),
        (123456, ("1234560000", "000120005"))]


def test_shards_read_by_webdataset_and_openclip(fake_web, photos, tmp_path):
    urls = [fake_web.add(f"/img/{i}.jpg", photos[i], "image/jpeg") for i in range(30)]
    path = write_urls(tmp_path / "urls.parquet", urls)
    out = tmp_path / "out"
    run_crawl(crawling(path, out, shard_size=10, image=ImageConfig(image_size=64)))
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"00000.tar": 10, "00001.tar": 10, "00002.tar": 10, "__total__": 30}
    import webdataset as wds

    dataset = wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False).decode("pil").to_tuple(
        "jpg", "txt", "json")
    samples = list(dataset)
    assert len(samples) == 30 and all(min(img.size) == 64 for img, _, _ in samples)  # short side at --image-size
    assert {meta["url"] for _, _, meta in samples} == set(urls) and samples[0][1] == "caption 0"
    assert set(samples[0][2]) >= {"uid", "url", "caption", "width", "height", "original_width", "original_height",
                                  "sha256", "phash", "entry_ids"}
    from argparse import Namespace

    from open_clip_train.data import get_wds_dataset

    args = Namespace(train_data=f"{out}/{{00000..00002}}.tar", train_num_samples=30, train_data_upsampling_factors=None,
                     dataset_resampled=False, seed=0, batch_size=10, workers=0, world_size=1, rank=0,
                     distributed=False, val_data=None)
    import torchvision.transforms as T

    transform = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])  # as OpenCLIP's own transforms
    info = get_wds_dataset(args, transform, is_train=True, epoch=0, tokenizer=lambda texts: [len(t) for t in texts])
    batches = list(info.dataloader)
    assert sum(len(images) for images, _ in batches) == 30


def test_gcs_output(fake_web, photos, tmp_path, gcs_bucket):
    urls = [fake_web.add(f"/img/{i}.jpg", photos[i], "image/jpeg") for i in range(12)]
    urls.append(fake_web.add("/copy.jpg", photos[0], "image/jpeg"))  # in shard 2: a repeat of shard 0's
    path = write_urls(tmp_path / "urls.parquet", urls)
    out = f"{gcs_bucket}/shards"
    run_crawl(crawling(path, out, shard_size=6))
    fs, _ = fsspec.core.url_to_fs(out)
    assert fs.exists(f"{out}/_SUCCESS") and len(read_back(out)) == 12 * 3  # shard 2 rewritten without it
    with fs.open(f"{out}/sizes.json", "rt") as handle:
        assert json.load(handle) == {"00000.tar": 6, "00001.tar": 6, "00002.tar": 0, "__total__": 12}
    with fs.open(f"{out}/00002.parquet", "rb") as handle:
        assert pq.read_table(handle).to_pylist()[0]["error_message"] == "same sha256: kept at key 000000000"
    assert fs.exists(f"{out}/00002_stats.json")


def test_success_ratio_alarm_fails_the_job(fake_web, tmp_path):
    urls = [fake_web.add(f"/page{i}.jpg", fault="html") for i in range(5)]
    path = write_urls(tmp_path / "urls.parquet", urls)
    with pytest.raises(Exception, match=r"success ratio 0.000 < --min-success-ratio 0.5.*failed_to_resize': 5"):
        run_crawl(crawling(path, tmp_path / "out", min_success_ratio=0.5))
    assert (tmp_path / "out" / "crawl_report.json").exists() and not (tmp_path / "out" / "_SUCCESS").exists()


def test_multi_process_workers_run_the_module_entry_point(fake_web, photos, tmp_path):
    """`python -m pipeline.crawl` with 2 worker processes: DoFns and records unpickle by module path;
    the workers allocate with jemalloc."""
    urls = [fake_web.add(f"/img/{i}.jpg", photos[i], "image/jpeg") for i in range(8)]
    path = write_urls(tmp_path / "urls.parquet", urls)
    # The argv smoke test of this job: the flags a user types parse to the config built in code, and
    # run, Beam's flags mixed in, through the module's entry point.
    argv = ["--urls", path, "--out", str(tmp_path / "out"), "--allow-private-addresses", "--shard-size", "4",
            "--timeout", "2", "--retries", "2", "--per-host-connections", "64", "--threads-per-worker", "16"]
    assert parse_config(CrawlConfig, argv) == crawling(path, tmp_path / "out", shard_size=4)
    result = subprocess.run([sys.executable, "-m", "pipeline.crawl", *argv, "--direct_num_workers", "2",
                             "--direct_running_mode", "multi_processing"],
                            env={**os.environ, "WIT_QUIET": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "sizes.json").read_text())["__total__"] == 8
    # The command started again on jemalloc, and its worker processes run on it too, Arrow's
    # buffers included (core.malloc).
    require_jemalloc()
    workers = json.loads((tmp_path / "out" / "crawl_report.json").read_text())["workers"]
    assert workers["allocator"] == "jemalloc" and workers["arrow_pool"] == "system" and workers["processes"] == 2


def test_eval_index_drops_near_duplicates_during_the_crawl(fake_web, photos, tmp_path):
    """Edited copies of indexed evaluation photos end as `eval_duplicate`, not in the tar; the rest
    crawl as usual."""
    import random

    from PIL import Image

    from dedup import quality, store, transforms

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    for i in range(4):
        (eval_dir / f"eval{i}.jpg").write_bytes(photos[i])
    from dedup.index import IndexConfig

    index = IndexConfig(out=str(tmp_path / "index"), name="evalset", images=[str(eval_dir)])
    assert by_command("dedup", "index").run_config(index) is index
    urls = []
    for i, family in enumerate(["crop", "flip", "rotate", "border"]):
        with Image.open(io.BytesIO(photos[i])) as image:
            edited = transforms.apply(family, image.convert("RGB"), random.Random(i))
        urls.append(fake_web.add(f"/copy/{i}.jpg", quality.encode(edited, 400), "image/jpeg"))
    urls += [fake_web.add(f"/other/{i}.jpg", photos[20 + i], "image/jpeg") for i in range(6)]
    path = write_urls(tmp_path / "urls.parquet", urls)
    out = tmp_path / "out"
    run_crawl(crawling(path, out, shard_size=5, eval_indexes=[str(tmp_path / "index")]))
    found = statuses(out)
    for i, url in enumerate(urls):
        status, message = found[url]
        if i < 4:
            assert status == "eval_duplicate" and f"evalset/eval{i}.jpg" in message, (url, status, message)
        else:
            assert status == "success", (url, status, message)
    report = json.loads((out / "crawl_report.json").read_text())
    assert report["status"]["eval_duplicate"] == 4 and report["status"]["success"] == 6
    assert json.loads((out / "sizes.json").read_text())["__total__"] == 6
    (tmp_path / "bad").mkdir()
    with pytest.raises(store.IndexError_, match="no index.json"):
        run_crawl(crawling(path, tmp_path / "out2", eval_indexes=[str(tmp_path / "bad")]))


def test_dns_answers_and_failures_are_cached_per_host():
    """One lookup per host for many urls; a failed lookup is not repeated at once either; an
    expired answer is looked up again."""
    import socket

    from pipeline.fetch import DnsCache

    calls = []

    def resolve(host, port):
        calls.append(host)
        if host == "gone.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ["93.184.215.14"]
    cache = DnsCache(resolve, ttl=300, negative_ttl=30)
    assert [cache("images.example", 80) for _ in range(50)] == [["93.184.215.14"]] * 50
    for _ in range(3):
        with pytest.raises(socket.gaierror, match="not known"):
            cache("gone.example", 80)
    assert calls == ["images.example", "gone.example"]
    cache("images.example", 443)  # another port, another entry
    expired = DnsCache(resolve, ttl=0)
    expired("images.example", 80), expired("images.example", 80)
    assert calls == ["images.example", "gone.example", "images.example", "images.example", "images.example"]
    small = DnsCache(resolve, max_entries=2)
    for host in ("a.example", "b.example", "c.example"):
        small(host, 80)
    assert list(small.entries) == [("b.example", 80), ("c.example", 80)]
