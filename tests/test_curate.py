"""Curation: real captions and pages, exact matching, seeded balancing, bad input, gs://."""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import parse_config
from core.jobs import by_command
from pipeline import balance, candidates, curate
from pipeline.clean import CleanConfig, clean_caption, clean_url, uid_of
from pipeline.curate import CurateConfig
from pipeline.match import Matcher, QueryListError, reference_match, spaced_form
from query_list.tokens import is_word, normalize, tokenize
from query_list.wordnet import iter_head_lemmas

CURATE = by_command("curate")


def curation(pool: str | Path | list, queries: str, out: str | Path, **fields) -> CurateConfig:
    """A curation config built in code (``pool``: one glob or a list of them)."""
    globs = pool if isinstance(pool, list) else [pool]
    return CurateConfig(pool=[str(g) for g in globs], queries=str(queries), out=str(out), **fields)


def run_curate(config: CurateConfig, *beam_args: str) -> None:
    assert CURATE.run_config(config, beam_args) is config


def real_captions(data: Path) -> list[str]:
    rows = [r for r in candidates.read(str(data / "captions/cc3m/Validation_GCC-1.1.0-Validation.tsv"),
                                       candidates.ReaderConfig())]
    rows += list(candidates.read(str(data / "captions/img2dataset/test_10000.parquet"),
                                 candidates.ReaderConfig(url_col="URL", caption_col="TEXT")))
    return [r.caption for r in rows if isinstance(r, candidates.Raw) and r.caption]


def entry_list(captions: list[str], size: int) -> list[str]:
    """Frequent caption words and bigrams plus WordNet lemmas seen in the captions."""
    words, pairs = Counter(), Counter()
    for caption in captions:
        tokens = [t for t in tokenize(caption) if is_word(t)]
        words.update(tokens)
        pairs.update(f"{a} {b}" for a, b in zip(tokens, tokens[1:]))
    text = " ".join(captions)
    lemmas = sorted({lemma for lemma in iter_head_lemmas("/usr/share/wordnet") if " " in lemma and lemma in text})
    chosen = [w for w, _ in words.most_common(size // 2)] + [p for p, _ in pairs.most_common(size // 4)]
    chosen += lemmas[: size // 4] + ["St. Louis", "New York City", "U.S.", "t-shirt", "(band)"]
    return list(dict.fromkeys(chosen))


def test_matching_equals_the_reference_on_all_real_captions(shared_data):
    captions = real_captions(shared_data)
    assert len(captions) > 25_000
    entries = entry_list(captions, 1200)
    matcher = Matcher(entries)
    keys = [f" {normalize(e)} " for e in entries]  # the plain definition, entries normalised once

    def reference(caption: str) -> list[int]:
        text = f" {normalize(caption)} "
        return [i for i, key in enumerate(keys) if key.strip() and key in text]

    mismatches = [c for c in captions if matcher.match(c) != reference(c)]
    assert mismatches == []
    assert all(matcher.match(c) == reference_match(entries, c) for c in captions[:200])
    hits = sum(bool(matcher.match(c)) for c in captions)
    assert hits > 0.9 * len(captions)


def test_matching_rules():
    entries = ["St. Louis", "dog", "hot dog", "Dog", "New York", "York"]
    matcher = Matcher(entries)
    assert matcher.match("A hot dog in St. Louis, Missouri.") == [0, 1, 2]
    assert matcher.match("dogs of New York") == [4, 5]  # whole tokens only: no "dog" in "dogs"
    assert matcher.match("Dog!") == [3]  # case kept
    # entries that normalise alike share one key and both match; the batch form finds the same
    aliased = Matcher(["hot dog", "hot  dog", "dog", "St. Louis", "St.Louis"])
    assert aliased.match("A hot dog in St. Louis") == [0, 1, 2, 3, 4]
    texts = ["A hot dog in St. Louis", "dogs", "Hot dog", "hot dog dog"]
    assert [sorted(ids) for ids in aliased.match_many([spaced_form(t) for t in texts])] == \
        [aliased.match(t) for t in texts]
    # the automaton scans UTF-8 bytes: a match is still a whole-character, whole-token one; entries
    # that normalise to nothing hold no key (the ids after them still come out right)
    wide = Matcher(["", "Café", "café", "東京", "東", "Zürich (city)", "  ", "\ud800 x"])
    assert wide.match("Café in 東京 and Zürich (city)") == [1, 3, 5]
    assert wide.match("Cafés 東京タワー") == []
    assert wide.match("a \ud800 x, b") == [7]  # a lone surrogate (a JSON escape) neither fails nor matches wrongly
    assert [sorted(ids) for ids in wide.match_many([spaced_form("café 東"), "  "])] == [[2, 4], []]
    assert Matcher(["", " "]).match("anything") == []


def test_entry_counts_combiner_across_bundles_and_flushes(monkeypatch):
    import pickle

    from pipeline.match import EntryTally

    monkeypatch.setattr(EntryTally, "FLUSH", 40)  # flush often: pending and counted ids mix
    rng = random.Random(0)
    batches = [[{"entry_ids": tuple(rng.sample(range(50), rng.randint(1, 6)))} for _ in range(20)] for _ in range(6)]
    expected = Counter(e for batch in batches for pair in batch for e in pair["entry_ids"])
    fn = curate.CountEntries(50)
    parts = []
    for start in (0, 2, 4):  # three "bundles"; two travel pickled (sparse), as between workers
        accumulator = fn.create_accumulator()
        for batch in batches[start:start + 2]:
            accumulator = fn.add_input(accumulator, batch)
        parts.append(pickle.loads(pickle.dumps(accumulator)) if start else accumulator)
    assert fn.extract_output(fn.merge_accumulators(parts)) == dict(expected)
    assert fn.extract_output(fn.create_accumulator()) == {}
    bad = fn.create_accumulator()
    with pytest.raises(ValueError, match="outside the query list"):
        fn.extract_output(fn.add_input(bad, [{"entry_ids": (50,)}]))


class ImgCollector(HTMLParser):
    """An independent extraction (stdlib parser) of <base href> and <img src alt title>."""

    def __init__(self) -> None:
        super().__init__()
        self.base, self.images = None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "base" and attrs.get("href") and self.base is None:
            self.base = attrs["href"]
        if tag == "img" and (attrs.get("src") or "").strip():
            self.images.append((attrs["src"].strip(), attrs.get("alt") or attrs.get("title")))


def independent_pairs(page: str, target: str) -> list[tuple[str, str | None]]:
    collector = ImgCollector()
    collector.feed(page)
    base = urljoin(target, collector.base) if collector.base else target
    return [(urljoin(base, src), text or "") for src, text in collector.images]  # no text: the empty caption


def test_relative_urls_joined_on_real_pages(shared_data):
    relative = total = 0
    for page_path in sorted((shared_data / "html/readability_pages").glob("*.html")):
        page = page_path.read_text(errors="replace")
        target = f"https://example.org/articles/{page_path.stem}/index.html"
        ours = [(r.url, r.caption) for r in candidates.html_pairs(page, target, page_path.name)]
        assert ours == independent_pairs(page, target), page_path.name
        total += len(ours)
        relative += len(re.findall(r"<img[^>]+src=[\"'](?!https?:|//|data:)", page))
    assert total > 700 and relative > 50  # real relative urls were exercised


def test_warc_pairs_from_real_common_crawl_record(shared_data):
    path = str(shared_data / "captions/commoncrawl_whirlwind/whirlwind.warc.gz")
    pairs = list(candidates.read(path, candidates.ReaderConfig()))
    assert all(isinstance(p, candidates.Raw) for p in pairs) and len(pairs) == 13
    assert all(p.url.startswith("https://") and p.page_url == "https://an.wikipedia.org/wiki/Escopete" for p in pairs)
    assert ("https://an.wikipedia.org/static/images/mobile/copyright/wikipedia-wordmark-an.svg", "Biquipedia") in [
        (p.url, p.caption) for p in pairs]


def wat_json(page: str, target: str) -> dict:
    """A WAT metadata record in Common Crawl's documented layout, from a real page."""
    collector = ImgCollector()
    collector.feed(page)
    links = [{"path": "IMG@/src", "url": src, **({"alt": text} if text else {})} for src, text in collector.images]
    links.insert(0, {"path": "A@/href", "url": "/elsewhere", "text": "a link"})
    head = {"Title": "t", **({"Base": collector.base} if collector.base else {})}
    return {"Envelope": {
        "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": target},
        "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Head": head, "Links": links}}}}}


def write_wat(path: Path, records: list[bytes]) -> None:
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for index, payload in enumerate(records):
            record = writer.create_warc_record(f"https://example.org/{index}", "metadata", payload=io.BytesIO(payload),
                                               warc_content_type="application/json")
            writer.write_record(record)


def test_wat_records_built_from_real_pages(shared_data, tmp_path):
    pages = sorted((shared_data / "html/readability_pages").glob("*.html"))[:10]
    expected, payloads = [], []
    for page_path in pages:
        page = page_path.read_text(errors="replace")
        target = f"https://example.org/{page_path.stem}/"
        payloads.append(json.dumps(wat_json(page, target)).encode())
        expected += independent_pairs(page, target)
    payloads.insert(3, b"{not json")
    wat = tmp_path / "sample.wat.gz"
    write_wat(wat, payloads)
    records = list(candidates.read(str(wat), candidates.ReaderConfig()))
    raws = [(r.url, r.caption) for r in records if isinstance(r, candidates.Raw)]
    bads = [r for r in records if isinstance(r, candidates.Bad)]
    assert raws == expected and len(raws) > 100
    assert len(bads) == 1 and bads[0].reason == "bad_record"


def test_cleaning():
    config = CleanConfig()
    assert clean_caption("IMG_1234.JPG", config) == (None, "filename_caption")
    assert clean_caption("DSC01234", config) == (None, "camera_caption")
    assert clean_caption("1/250 sec f/5.6 ISO 200", config) == (None, "camera_caption")
    assert clean_caption("  Tom &amp;amp; Jerry\n poster ", config) == ("Tom & Jerry poster", None)
    assert clean_caption("", config) == (None, "empty_caption")
    assert clean_caption("x" * 1001, config) == (None, "caption_too_long")
    assert clean_caption("Un chien sur la plage", CleanConfig(english_only=True)) == (None, "not_english")
    assert clean_url("data:image/png;base64,AAAA") == (None, "bad_scheme")
    assert clean_url("javascript:alert(1)") == (None, "bad_scheme")
    assert clean_url(None) == (None, "missing_url")
    assert clean_url("HTTPS://a.org/x.jpg#top") == ("https://a.org/x.jpg", None)
    assert uid_of("https://a.org/x.jpg") == __import__("hashlib").sha224(b"https://a.org/x.jpg").hexdigest()[:24]


def test_balancing_statistics_on_a_pool_with_known_counts():
    target = 1000
    counts = {0: 20_000, 1: 500, 2: 4_000}
    pools = {(0,): 17_000, (1,): 500, (2,): 1_000, (0, 2): 3_000}  # entry 0 in 20k, entry 2 in 4k
    kept_by_entry = Counter()
    for entry_ids, n in pools.items():
        kept = 0
        for index in range(n):
            uid = uid_of(f"https://pool/{entry_ids}/{index}")
            decision, probability = balance.decide(uid, list(entry_ids), counts, target, seed=7)
            kept += decision
            if decision:
                kept_by_entry.update(entry_ids)
        p = 1.0
        for entry_id in entry_ids:
            p *= 1 - min(1.0, target / counts[entry_id])
        low, high = balance.binomial_bounds(n, 1 - p)
        assert low <= kept <= high, (entry_ids, kept, n * (1 - p))
        assert probability == pytest.approx(1 - p)
    assert kept_by_entry[1] == 500  # tail entries keep everything
    low, high = balance.binomial_bounds(17_000, 0.05)
    assert kept_by_entry[0] >= low + 3_000 * 0.05  # head entry near t, never far under it


def test_balance_is_deterministic_and_seeded():
    counts = {0: 100_000}
    draws = [balance.decide(f"u{i}", [0], counts, 1000, seed=1)[0] for i in range(5000)]
    again = [balance.decide(f"u{i}", [0], counts, 1000, seed=1)[0] for i in range(5000)]
    other = [balance.decide(f"u{i}", [0], counts, 1000, seed=2)[0] for i in range(5000)]
    assert draws == again and draws != other


# -- the job -------------------------------------------------------------------------------------
def make_pool(folder: Path, data: Path) -> list[str]:
    """A small mixed pool: CC3M lines, LAION parquet rows, a WARC, and a jsonl with junk."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (data / "captions/cc3m/Validation_GCC-1.1.0-Validation.tsv").read_text().splitlines()[:1500]
    (folder / "cc3m.tsv").write_text("\n".join(lines + lines[:50]) + "\n")  # 50 exact duplicates
    table = pq.read_table(data / "captions/img2dataset/test_1000.parquet", columns=["URL", "TEXT"]).rename_columns(
        ["url", "caption"])
    pq.write_table(table, folder / "laion.parquet")
    (folder / "whirlwind.warc.gz").write_bytes((data / "captions/commoncrawl_whirlwind/whirlwind.warc.gz").read_bytes())
    junk = [{"url": "data:image/png;base64,AAA", "caption": "a red car"}, {"caption": "no url at all"},
            {"url": "https://x.org/IMG_1.jpg", "caption": "IMG_1234.JPG"}, {"url": "https://x.org/c.jpg", "caption": "a red car"}]
    (folder / "junk.jsonl").write_bytes(
        b"\n".join(json.dumps(j).encode() for j in junk) + b"\n{broken\n\xff\xfe not utf8\n")
    return [str(folder / "*")]


def queries_for(data: Path, path: Path) -> str:
    captions = real_captions(data)[:3000]
    path.write_text(json.dumps(entry_list(captions, 800) + ["red car"]))
    return str(path)


def read_urls(out: str) -> pa.Table:
    fs, root = fsspec.core.url_to_fs(out)
    files = sorted(fs.glob(f"{root}/urls/*.parquet"))
    return pa.concat_tables([pq.read_table(fs.open(f, "rb")) for f in files])


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    from tests.conftest import require_shared_data

    data = require_shared_data()
    folder = tmp_path_factory.mktemp("curate")
    pool = make_pool(folder / "pool", data)
    return data, folder, pool, queries_for(data, folder / "metadata.json")


def test_job_outputs_accounting_and_determinism(job_inputs, tmp_path):
    _, _, pool, queries = job_inputs
    common = {"max_per_query": 30, "url_shards": 4, "seed": 3}
    run_curate(curation(pool[:1], queries, tmp_path / "a", **common))
    run_curate(curation(pool[:1], queries, tmp_path / "b", **common),
               "--direct_num_workers", "2", "--direct_running_mode", "multi_threading")
    # The argv smoke test of this job: the flags a user types, ours and Beam's mixed, parse to the
    # same config and give the same bytes.
    argv = ["--pool", pool[0], "--queries", queries, "--max-per-query", "30", "--url-shards", "4", "--seed", "3",
            "--out", str(tmp_path / "c")]
    assert parse_config(CurateConfig, argv) == curation(pool[:1], queries, tmp_path / "c", **common)
    assert curate.run(argv + ["--direct_num_workers", "1"]) == 0
    for name in ["entry_counts.parquet"] + [f"urls/part-{i:05d}-of-00004.parquet" for i in range(4)]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    report = json.loads((tmp_path / "a" / "curation_report.json").read_text())
    urls = read_urls(str(tmp_path / "a"))
    assert urls.num_rows == report["kept_pairs"] > 0
    pairs = list(zip(urls.column("uid").to_pylist(), urls.column("caption").to_pylist()))
    assert len(pairs) == len(set(pairs))  # each pair emitted once
    assert report["duplicates_merged"] == 50
    rejects = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "a" / "rejects").glob("*.parquet"))])
    reasons = Counter(rejects.column("reason").to_pylist())
    assert reasons["bad_scheme"] >= 1 and reasons["missing_url"] == 1 and reasons["filename_caption"] >= 1
    assert reasons["bad_record"] == 1 and reasons["bad_encoding"] == 1
    assert sum(report["dropped"].values()) + report["bad_input_records"] == rejects.num_rows
    accounted = report["unique_pairs"] + report["duplicates_merged"] + sum(report["dropped"].values())
    assert accounted == report["pool_size"]  # every candidate read ends somewhere
    counts = pq.read_table(tmp_path / "a" / "entry_counts.parquet").to_pandas()
    assert int((counts.matched > 0).sum()) == report["entries_matched"] and len(counts) == report["entries"]
    kept_from_urls = Counter(e for ids in urls.column("entry_ids").to_pylist() for e in ids)
    assert dict(kept_from_urls) == {int(i): int(k) for i, k in zip(counts.entry_id, counts.kept) if k}
    assert (counts.kept <= counts.matched).all()
    assert (tmp_path / "a" / "balance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"url", "caption"} <= set(urls.column_names)  # img2dataset's default url_col / caption_col


def test_rebalance_over_crawl_status_rows(job_inputs, tmp_path):
    _, _, pool, queries = job_inputs
    run_curate(curation(pool[0], queries, tmp_path / "a", max_per_query=1000, url_shards=2))
    urls = read_urls(str(tmp_path / "a")).to_pylist()
    crawl = pa.Table.from_pylist([{**row, "status": "success" if i % 3 else "failed_to_download"}
                                  for i, row in enumerate(urls)])
    pq.write_table(crawl, tmp_path / "00000.parquet")
    run_curate(curation(tmp_path / "00000.parquet", queries, tmp_path / "r", rebalance=True, max_per_query=1000))
    report = json.loads((tmp_path / "r" / "curation_report.json").read_text())
    successes = sum(1 for i in range(len(urls)) if i % 3)
    assert report["matched_pairs"] == successes and report["dropped"]["not_success"] == len(urls) - successes
    assert report["kept_pairs"] == successes  # t = 1000 is above every count here: all kept
    counts = pq.read_table(tmp_path / "r" / "entry_counts.parquet").to_pandas()
    expected = Counter(e for i, row in enumerate(urls) if i % 3 for e in row["entry_ids"])
    assert {int(i): int(m) for i, m in zip(counts.entry_id, counts.matched) if m} == dict(expected)

    # rows made with another (longer) query list fail with the reason, not an index error
    pq.write_table(pa.Table.from_pylist([{**urls[0], "entry_ids": [10**7]}]), tmp_path / "other.parquet")
    with pytest.raises(Exception, match="outside the query list"):
        run_curate(curation(tmp_path / "other.parquet", queries, tmp_path / "o", rebalance=True))


def test_query_list_must_be_an_array_of_strings(job_inputs, tmp_path):
    _, _, pool, _ = job_inputs
    for content in ('{"a": 1}', "[1, 2]", "not json", "[]"):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(QueryListError, match="array of strings|empty"):
            run_curate(curation(pool[0], bad, tmp_path / "o"))


def test_bad_gzip_member_is_recorded_and_the_job_goes_on(job_inputs, tmp_path):
    data, _, _, queries = job_inputs
    warc = (data / "captions/commoncrawl_whirlwind/whirlwind.warc.gz").read_bytes()
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "cut.warc.gz").write_bytes(warc[:9000])  # cut inside the HTML response
    corrupt = warc[:5000] + bytes(b ^ 0x55 for b in warc[5000:5100]) + warc[5100:]
    (tmp_path / "pool" / "corrupt.warc.gz").write_bytes(corrupt)
    (tmp_path / "pool" / "good.tsv").write_text("a red car on the road\thttps://x.org/1.jpg\n")
    run_curate(curation(tmp_path / "pool" / "*", queries, tmp_path / "o"))
    report = json.loads((tmp_path / "o" / "curation_report.json").read_text())
    assert report["bad_input_records"] == 2 and report["kept_pairs"] == 1  # no half page slipped through
    rejects = pq.read_table(tmp_path / "o" / "rejects").to_pylist()
    assert sorted((Path(r["source"].split("@")[0]).name, r["reason"]) for r in rejects) == [
        ("corrupt.warc.gz", "bad_gzip"), ("cut.warc.gz", "bad_gzip")]


def test_gcs_in_and_out(job_inputs, gcs_bucket):
    data, folder, _, queries = job_inputs
    with fsspec.open(f"{gcs_bucket}/pool/cc3m.tsv", "wb") as handle:
        handle.write((folder / "pool" / "cc3m.tsv").read_bytes())
    with fsspec.open(f"{gcs_bucket}/queries/metadata.json", "wb") as handle:
        handle.write(Path(queries).read_bytes())
    run_curate(curation(f"{gcs_bucket}/pool/*.tsv", f"{gcs_bucket}/queries/metadata.json", f"{gcs_bucket}/curated",
                        max_per_query=50, url_shards=2))
    with fsspec.open(f"{gcs_bucket}/curated/curation_report.json", "rt") as handle:
        report = json.load(handle)
    assert read_urls(f"{gcs_bucket}/curated").num_rows == report["kept_pairs"] > 100


# -- hostile pools, wrong columns, empty results (no shared data needed) -----------------------------
def small_queries(folder: Path) -> str:
    path = folder / "metadata.json"
    path.write_text(json.dumps(["dog", "red car", "lighthouse", "café"]))
    return str(path)


def rejects_of(out: Path) -> list[dict]:
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / "rejects").glob("*.parquet"))]).to_pylist()


def test_bad_records_cost_themselves_only_in_the_job(tmp_path):
    from tests.test_readers import link, wat_payload, warc_member

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "crawl.wat.gz").write_bytes(b"".join([
        warc_member("metadata", "https://e.org/0", wat_payload("https://a.org/", [link("1.jpg", "a dog on a beach")])),
        warc_member("metadata", "https://e.org/1", wat_payload("https://b.org/", [
            link("http://[broken/x.jpg", "a dog"), link("2.jpg", "a red car parked")])),
        warc_member("metadata", "https://e.org/2", wat_payload("https://c.org/", [link("3.jpg", "a lighthouse")]))]))
    (pool / "list.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"url": "https://j.org/1.jpg", "caption": 42}, {"url": "https://j.org/2.jpg", "caption": None},
        {"url": "https://j.org/\ud800.jpg", "caption": "a dog"},
        {"url": "https://j.org/3.jpg", "caption": "a dog \udce9 in snow"}]) + "\n")
    (pool / "list.csv").write_text(f"url,caption\nhttps://c.org/1.jpg,{'a dog ' * 40_000}\n"
                                   "https://c.org/2.jpg,a red car at night\n")
    out = tmp_path / "out"
    run_curate(curation(pool / "*", small_queries(tmp_path), out))
    kept = {row["url"]: row["caption"] for row in read_urls(str(out)).to_pylist()}
    assert kept == {"https://a.org/1.jpg": "a dog on a beach", "https://b.org/2.jpg": "a red car parked",
                    "https://c.org/3.jpg": "a lighthouse", "https://j.org/3.jpg": "a dog \ufffd in snow",
                    "https://c.org/2.jpg": "a red car at night"}
    reasons = Counter((r["reason"], r["url"]) for r in rejects_of(out))
    assert reasons == Counter({("bad_record", None): 1, ("camera_caption", "https://j.org/1.jpg"): 1,
                               ("empty_caption", "https://j.org/2.jpg"): 1, ("bad_url", None): 1,
                               ("caption_too_long", "https://c.org/1.jpg"): 1})
    assert "does not parse" in next(r["detail"] for r in rejects_of(out) if r["reason"] == "bad_record")
    report = json.loads((out / "curation_report.json").read_text())
    assert report["captions_made_text"] == {"caption_not_text": 1, "caption_not_utf8": 1}
    assert report["bad_input_records"] == 1 and report["kept_pairs"] == 5


def test_a_caption_column_the_pool_lacks_fails_the_job_naming_its_columns(tmp_path):
    (tmp_path / "list.csv").write_text("url,caption\nhttps://x.org/1.jpg,a dog\n")
    with pytest.raises(Exception, match=r"no column 'strict' \(columns: \['url', 'caption'\]\)"):
        run_curate(curation(tmp_path / "list.csv", small_queries(tmp_path), tmp_path / "out",
                            reader=candidates.ReaderConfig(caption_col="strict")))


def test_a_run_that_keeps_nothing_fails_with_the_counts(tmp_path):
    rows = "\n".join(f"https://x.org/{i}.jpg,IMG_{1000 + i}.JPG" for i in range(40))
    (tmp_path / "list.csv").write_text(f"url,caption\n{rows}\n")
    queries = small_queries(tmp_path)
    with pytest.raises(Exception, match=r"kept 0 of 40 candidate pairs read .*'filename_caption': 40"):
        run_curate(curation(tmp_path / "list.csv", queries, tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())  # written first, to look at
    assert report["dropped"] == {"filename_caption": 40} and report["kept_pairs"] == 0
    run_curate(curation(tmp_path / "list.csv", queries, tmp_path / "off", min_kept_ratio=0.0))  # the check off
    assert json.loads((tmp_path / "off" / "curation_report.json").read_text())["kept_pairs"] == 0


def test_an_empty_query_list_fails_with_the_counts(tmp_path):
    from query_list.build import QueryListConfig

    (tmp_path / "wiki_00").write_text('<doc id="1" url="u" title="Albedo">\nAlbedo is reflection.\n</doc>\n')
    config = QueryListConfig(wiki=[str(tmp_path / "wiki_00")], out=str(tmp_path / "q"), use_wordnet=False, min_count=50)
    with pytest.raises(Exception, match=r"the query list is empty: 1 documents and 3 tokens read"):
        by_command("queries").run_config(config)
    assert json.loads((tmp_path / "q" / "query_stats.json").read_text())["size"] == 0
    assert not (tmp_path / "q" / "metadata.json").exists()  # no empty list for curation to pick up


def test_strict_cap_selects_at_most_t_per_entry_on_cc3m_and_expected_is_metaclips_draw(job_inputs, tmp_path):
    """t = 20 on the 15,833 real CC3M captions. MetaCLIP's draw (``--cap expected``) has frequent
    entries select more than t pairs; the strict cap (the default) has every entry select exactly
    min(t, matched), the smallest of the same seeded draws, identically on a rerun with another
    runner set-up; both caps' figures are in either run's report."""
    data, _, _, queries = job_inputs
    cc3m = str(data / "captions/cc3m/Validation_GCC-1.1.0-Validation.tsv")
    common = {"max_per_query": 20, "url_shards": 2, "seed": 5}
    run_curate(curation(cc3m, queries, tmp_path / "strict", **common))
    run_curate(curation(cc3m, queries, tmp_path / "again", **common),
               "--direct_num_workers", "2", "--direct_running_mode", "multi_threading")
    run_curate(curation(cc3m, queries, tmp_path / "expected", cap="expected", **common))
    for name in ["entry_counts.parquet"] + [f"urls/part-{i:05d}-of-00002.parquet" for i in range(2)]:
        assert (tmp_path / "strict" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name

    strict = pq.read_table(tmp_path / "strict" / "entry_counts.parquet").to_pandas()
    expected = pq.read_table(tmp_path / "expected" / "entry_counts.parquet").to_pandas()
    assert (strict.selected == strict.matched.clip(upper=20)).all()  # the quota, exactly
    assert (expected.selected > 20).sum() >= 5  # the draw: t on average only
    # expected mode is MetaCLIP's rule: entry e selects exactly the pairs with u(seed, uid, e) < t / count_e
    urls = read_urls(str(tmp_path / "strict")).to_pylist()
    drawn = read_urls(str(tmp_path / "expected")).to_pylist()
    for entry_id, count, chosen in zip(expected.entry_id, expected.matched, expected.selected):
        if count > 20:
            assert chosen == sum(1 for row in drawn if entry_id in row["entry_ids"]
                                 and balance.uniform(5, row["uid"], int(entry_id)) < 20 / count)
    kept_by_entry = Counter(e for row in urls for e in row["entry_ids"])
    assert dict(kept_by_entry) == {int(e): int(k) for e, k in zip(strict.entry_id, strict.kept) if k}
    assert (strict.kept >= strict.selected).all() and (strict.kept > 20).any()  # co-occurrence, as in CLIP

    report = json.loads((tmp_path / "strict" / "curation_report.json").read_text())
    other = json.loads((tmp_path / "expected" / "curation_report.json").read_text())
    assert report["cap"] == "strict" and other["cap"] == "expected"
    assert report["overshoot"] == other["overshoot"]  # both caps decided in each run, the same way
    assert report["overshoot"]["strict"]["selected"]["entries_over_t"] == 0
    assert report["overshoot"]["strict"]["selected"]["max_over_t"] == 1.0
    over = expected[expected.selected > 20]
    assert report["overshoot"]["expected"]["selected"] == {
        "max": int(expected.selected.max()), "max_over_t": round(expected.selected.max() / 20, 4),
        "entries_over_t": len(over), "pairs_over_t": int((over.selected - 20).sum())}
    assert report["kept_pairs"] == len(urls) == report["overshoot"]["strict"]["kept_pairs"]
    assert other["kept_pairs"] == report["overshoot"]["expected"]["kept_pairs"]
    assert report["top_overshoot"][0]["selected_expected"] == expected.selected.max()
