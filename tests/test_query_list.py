"""The query-list job on the real sample dumps and WordNet from wordnet-base."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from core.config import parse_config
from core.jobs import by_command
from query_list import build, sources
from query_list.build import QueryListConfig
from query_list.tokens import is_word
from query_list.wikitext import skip_reason, wikitext_to_prose

SAMPLE = "wiki/xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
PAGE_RE = re.compile(rb"  <page>.*?</page>\n", re.S)

QUERIES = by_command("queries")
# the thresholds that suit a 60-page subset of the sample dump, WordNet left out
SMALL = {"min_count": 10, "bigram_min_count": 3, "bigram_budget": 200, "use_wordnet": False}


def queries(wiki: str | Path, out: str | Path, **fields) -> QueryListConfig:
    """A job config built in code: ``SMALL`` unless ``fields`` say otherwise."""
    return QueryListConfig(wiki=[str(wiki)], out=str(out), **{**SMALL, **fields})


def run_job(config: QueryListConfig, *beam_args: str) -> None:
    assert QUERIES.run_config(config, beam_args) is config


def read_outputs(out: str) -> tuple[list[str], object, dict]:
    with fsspec.open(f"{out}/metadata.json", "rt", encoding="utf-8") as handle:
        metadata = json.load(handle)
    with fsspec.open(f"{out}/entries.parquet", "rb") as handle:
        entries = pq.read_table(handle).to_pandas()
    with fsspec.open(f"{out}/query_stats.json", "rt") as handle:
        stats = json.load(handle)
    return metadata, entries, stats


def split_dump(path: Path) -> tuple[bytes, list[bytes], bytes]:
    xml = bz2.decompress(path.read_bytes())
    pages = PAGE_RE.findall(xml)
    head = xml[: xml.index(pages[0])]
    tail = xml[xml.rindex(pages[-1]) + len(pages[-1]):]
    return head, pages, tail


def write_multistream(folder: Path, head: bytes, pages: list[bytes], tail: bytes, per_stream: int = 10) -> Path:
    """A real multistream layout: header stream, streams of pages, footer stream, and the index."""
    dump = folder / "enwiki-test-pages-articles-multistream.xml.bz2"
    index_lines, blob = [], bz2.compress(head)
    for start in range(0, len(pages), per_stream):
        offset = len(blob)
        for page in pages[start:start + per_stream]:
            page_id = re.search(rb"<id>(\d+)</id>", page).group(1).decode()
            title = re.search(rb"<title>(.*?)</title>", page).group(1).decode()
            index_lines.append(f"{offset}:{page_id}:{title}")
        blob += bz2.compress(b"".join(pages[start:start + per_stream]))
    blob += bz2.compress(tail)
    dump.write_bytes(blob)
    (folder / "enwiki-test-pages-articles-multistream-index.txt.bz2").write_bytes(
        bz2.compress(("\n".join(index_lines) + "\n").encode()))
    return dump


PAGEVIEW_HOURS = [
    "en Abraham_Lincoln 50 1000\nen.m Abraham_Lincoln 500 9000\nen Talk:Anarchism 1000 5\nen Main_Page 100000 1\n"
    "en Rare_Title 10 5\nde Berlin 1000 7\nthis line is broken\nen An_American_in_Paris 80 3\n"
    "en Albert_Einstein 90 1\nen.m St._Louis,_Missouri 80 3\nen AccessibleComputing 80 1\nen Alien 100 1\n",
    "en Abraham_Lincoln 40 800\nen animal_Farm 75 2\nen Caf%C3%A9_society 75 2\nen Bad_Count abc 1\nde.m Berlin 5 1\n",
]


def write_pageviews(folder: Path) -> str:
    for hour, text in enumerate(PAGEVIEW_HOURS):
        with gzip.open(folder / f"pageviews-20240101-{hour:02d}0000.gz", "wt") as handle:
            handle.write(text)
    return str(folder / "pageviews-*.gz")


def independent_counts(dump: Path) -> Counter:
    """Unigram counts of the same prose, by a tokenizer written separately from the job's."""
    counts: Counter = Counter()
    with bz2.open(dump, "rb") as handle:
        for page in sources._iter_xml_pages(handle):
            if skip_reason(page) is not None:
                continue
            for line in wikitext_to_prose(page.text).splitlines():
                padded = re.sub(r'([,.;:?!`()\[\]{}"])', r" \1 ", line)
                counts.update(token for token in padded.split() if is_word(token))
    return counts


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from tests.conftest import require_shared_data

    data = require_shared_data()
    folder = tmp_path_factory.mktemp("queries")
    views = write_pageviews(folder)
    out = str(folder / "out")
    run_job(queries(data / SAMPLE, out, pageviews=[views], min_count=20, bigram_min_count=5, bigram_budget=300,
                    use_wordnet=True, title_min_views=70, target_size=500000))
    return data / SAMPLE, out, read_outputs(out)


def test_unigram_counts_equal_an_independent_count(full_run):
    dump, _, (metadata, entries, stats) = full_run
    expected = independent_counts(dump)
    unigrams = entries[entries.sources.apply(lambda s: "unigram" in s)]
    got = dict(zip(unigrams.entry, unigrams.unigram_count))
    want = {word: count for word, count in expected.items() if count >= 20}
    assert got == want
    for word in ("anarchism", "Albania", "autism", "Aristotle", "Lincoln", "the"):
        assert got[word] == expected[word] and got[word] >= 20
    assert "Autism" not in got and expected["Autism"] == 18  # case kept; under the threshold
    assert stats["tokens_read"] == sum(expected.values())


def test_titles_and_pageview_accounting(full_run):
    _, _, (metadata, entries, stats) = full_run
    titles = entries[entries.sources.apply(lambda s: "title" in s)]
    views = dict(zip(titles.entry, titles.title_views))
    # mobile views count with desktop ones (Abraham Lincoln: 50 + 500 + 40); a title spelled with a
    # lower-case first letter is the article MediaWiki shows
    assert views == {"Abraham Lincoln": 590, "Albert Einstein": 90, "An American in Paris": 80, "Animal Farm": 75}
    assert "Talk:Anarchism" not in metadata and "Main Page" not in metadata and "Rare Title" not in metadata
    # popular, but not an article of the dump: missing (St. Louis, Missouri and Café society), a
    # redirect (AccessibleComputing), a disambiguation page (Alien)
    assert not {"St. Louis, Missouri", "Café society", "AccessibleComputing", "Alien"} & set(views)
    assert stats["titles_dropped_not_in_dump"] == 4 and stats["titles_over_threshold"] == 4
    assert stats["pageview_lines"] == {"ok": 11, "malformed": 2, "other_domain": 2, "namespaced": 1, "special": 1}


def test_wordnet_bigrams_and_structure(full_run):
    _, _, (metadata, entries, stats) = full_run
    assert len(metadata) == len(set(metadata)) == len(entries) == stats["size"]
    assert list(entries.entry) == metadata and list(entries.entry_id) == list(range(len(metadata)))
    lemmas = set(entries[entries.sources.apply(lambda s: "wordnet" in s)].entry)
    assert {"physical entity", "hotdog", "ice cream", "New York", "abstraction", "entity"} <= lemmas
    assert stats["parts"]["wordnet"]["available"] == len(lemmas) > 80_000
    bigrams = entries[entries.sources.apply(lambda s: "bigram" in s)]
    assert len(bigrams) == 300 and (bigrams.bigram_count >= 5).all()
    assert {"Supreme Court", "Los Angeles", "periodic table"} <= set(bigrams.entry)
    # PMI ranking: tier order, bigrams by descending PMI
    only = bigrams[bigrams.sources.apply(lambda s: list(s) == ["bigram"])]
    assert list(only.pmi) == sorted(only.pmi, reverse=True)
    assert stats["thresholds"] == {"min_count": 20, "bigram_min_count": 5, "bigram_budget": 300,
                                   "title_min_views": 70, "target_size": 500000}
    assert stats["filled"] is False and stats["shortfall"] == 500000 - len(metadata)


def test_redirect_and_namespace_pages_are_not_read(full_run):
    _, _, (metadata, entries, stats) = full_run
    assert stats["pages_seen"] == 206
    assert stats["pages_skipped"] == {"redirect": 99, "namespace": 1, "disambiguation": 8}
    assert stats["documents_read"] == 206 - 108
    counted = set(entries[entries.unigram_count.notna()].entry)
    assert "REDIRECT" not in counted and "Nupedia" not in counted


@pytest.fixture(scope="module")
def subset(shared_data_module):
    head, pages, tail = split_dump(shared_data_module / SAMPLE)
    return head, pages[:60], tail


@pytest.fixture(scope="module")
def shared_data_module():
    from tests.conftest import require_shared_data

    return require_shared_data()


def test_byte_identical_reruns_and_multistream_split(subset, tmp_path):
    head, pages, tail = subset
    plain = tmp_path / "subset.xml.bz2"
    plain.write_bytes(bz2.compress(head + b"".join(pages) + tail))
    multi = write_multistream(tmp_path, head, pages, tail)
    items = sources.plan(str(multi))
    assert [i.kind for i in items] == ["multistream"] * len(items)
    run_job(queries(plain, tmp_path / "a"))
    run_job(queries(plain, tmp_path / "b"), "--direct_num_workers", "2", "--direct_running_mode", "multi_threading")
    # The argv smoke test of this job: the flags a user types, ours and Beam's mixed, parse to the
    # same config and give the same bytes.
    argv = ["--wiki", str(plain), "--out", str(tmp_path / "c"), "--min-count", "10", "--bigram-min-count", "3",
            "--bigram-budget", "200", "--no-wordnet"]
    assert parse_config(QueryListConfig, argv) == queries(plain, tmp_path / "c")
    assert build.run(argv + ["--direct_num_workers", "1"]) == 0
    names = ("metadata.json", "entries.parquet", "query_stats.json")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    sources.STREAMS_PER_ITEM, saved = 2, sources.STREAMS_PER_ITEM  # several ranges from one file
    try:
        assert len(sources.plan(str(multi))) == 3
        run_job(queries(multi, tmp_path / "m"))
    finally:
        sources.STREAMS_PER_ITEM = saved
    for name in ("metadata.json", "entries.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "m" / name).read_bytes(), name


def test_target_size_caps_exactly(subset, tmp_path):
    head, pages, tail = subset
    dump = tmp_path / "subset.xml"
    dump.write_bytes(head + b"".join(pages) + tail)
    run_job(queries(dump, tmp_path / "o", use_wordnet=True, target_size=2000))
    metadata, entries, stats = read_outputs(str(tmp_path / "o"))
    assert len(metadata) == 2000 and stats["filled"] is True and stats["shortfall"] == 0
    assert stats["available"] > 2000
    # WordNet and unigrams come first, by corpus frequency: the most frequent words lead.
    assert metadata[:3] == ["the", "of", "and"]


def test_corrupt_and_truncated_inputs_fail_with_file_and_offset(subset, tmp_path):
    head, pages, tail = subset
    good = bz2.compress(head + b"".join(pages) + tail)
    corrupt = tmp_path / "corrupt.xml.bz2"
    corrupt.write_bytes(good[:5000] + bytes(b ^ 0x5A for b in good[5000:5200]) + good[5200:])
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(good[: len(good) // 2])
    cut_xml = tmp_path / "cut.xml"
    cut_xml.write_bytes((head + b"".join(pages))[:-200])
    for path in (corrupt, truncated, cut_xml):
        with pytest.raises(Exception, match=rf"{path.name}.*offset \d+"):
            run_job(queries(path, tmp_path / "x"))
    run_job(queries(tmp_path / "*.xml*", tmp_path / "skip", skip_bad_input=True))
    _, _, stats = read_outputs(str(tmp_path / "skip"))
    assert sorted(Path(b["path"]).name for b in stats["bad_inputs"]) == ["corrupt.xml.bz2", "cut.xml", "truncated.xml.bz2"]
    assert all(b["offset"] >= 0 and b["reason"] for b in stats["bad_inputs"])
    assert stats["documents_read"] > 0  # the pages read before each break still count


def test_missing_wordnet_folder_fails_with_install_hint(tmp_path):
    (tmp_path / "a.xml").write_text("<mediawiki></mediawiki>")
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        run_job(QueryListConfig(wiki=[str(tmp_path / "a.xml")], out=str(tmp_path / "o"),
                                wordnet=str(tmp_path / "none")))


def test_no_input_match_and_bad_flags(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no input matches"):
        run_job(QueryListConfig(wiki=[str(tmp_path / "nothing*.xml")], out=str(tmp_path), use_wordnet=False))
    # The command line itself (argv on purpose): a misspelt flag and a bad value exit with usage.
    with pytest.raises(SystemExit):
        build.run(["--wiki", "x", "--out", "y", "--min-cuont", "3"])
    with pytest.raises(SystemExit):
        build.run(["--wiki", "x", "--out", "y", "--min-count", "0"])
    assert "--min-count must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--min-count must be at least 1"):  # the same check, in code
        QueryListConfig(wiki=["x"], out="y", min_count=0)


def test_gcs_input_and_output(subset, gcs_bucket):
    head, pages, tail = subset
    with fsspec.open(f"{gcs_bucket}/dumps/subset.xml.bz2", "wb") as handle:
        handle.write(bz2.compress(head + b"".join(pages[:20]) + tail))
    run_job(queries(f"{gcs_bucket}/dumps/*.bz2", f"{gcs_bucket}/queries", min_count=5,
                    bigram_budget=QueryListConfig.bigram_budget))  # the job's own budget
    metadata, entries, stats = read_outputs(f"{gcs_bucket}/queries")
    assert len(metadata) > 50 and stats["inputs"]["wiki"] == [f"{gcs_bucket}/dumps/*.bz2"]
    assert stats["inputs"]["wordnet"] is None and stats["parts"]["wordnet"]["available"] == 0


def test_wikiextractor_json_and_text_inputs(tmp_path):
    lines = [{"id": "12", "url": "u", "title": "Anarchism", "text": "Anarchism is a philosophy.\nIt rejects rulers."},
             {"id": "13", "url": "u", "title": "Autism", "text": "Autism is a condition."}]
    jsonl = tmp_path / "wiki_00.json"
    jsonl.write_text("\n".join(json.dumps(record) for record in lines) + "\n")
    text = tmp_path / "wiki_01"
    text.write_text('<doc id="1" url="u" title="Albedo">\nAlbedo\n\nAlbedo is reflection.\n</doc>\n')
    pages = [p for path in (jsonl, text) for item in sources.plan(str(path)) for p in sources.read(item)]
    assert [(p.title, p.plain) for p in pages] == [("Anarchism", True), ("Autism", True), ("Albedo", True)]
    assert pages[2].text.strip() == "Albedo is reflection."
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "text": "ok"}\n{not json\n')
    with pytest.raises(sources.BadInputError, match=r"broken.jsonl: line 2 .* offset 24"):
        list(sources.read(sources.plan(str(broken))[0]))
