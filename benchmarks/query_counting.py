"""Query-list throughput: text extraction, bz2, and the Beam counting stage vs a plain Counter.

Measures, on the real sample dump in ``../shared/data/wiki/xml`` (or ``$WIT_SHARED_DATA``):

1. bz2 decompression (MB of XML per second, one core);
2. wikitext -> prose with our extractor (mwparserfromhell; pages/s and MB of wikitext/s);
3. counting unigrams + bigrams over the same extracted prose, side by side in one run:
   the anchor, a single-process plain-Python ``collections.Counter`` loop, and ours, the job's
   counting stage (``CountStage``: bundle counters, sharded merge, expansion to keys) on Beam's local FnApiRunner with one
   worker (so one core): tokens/s/core for both and the ratio (goal: ours >= 0.5x).

Then it projects the critical path for the full English dump (22 GB bz2, about 4.5 billion
words, about 90 GB of wikitext) from these per-core rates.

    .venv/bin/python benchmarks/query_counting.py [--repeat 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import bz2
import json
import tempfile
import time
from collections import Counter

import apache_beam as beam

from query_list import sources
from query_list.build import CountStage
from query_list.tokens import tokenize
from query_list.wikitext import skip_reason, wikitext_to_prose
from core.beam import local_options, make_pipeline
from wit.testing.shared_data import shared_data_dir

SAMPLE = "wiki/xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
FULL_DUMP = {"bz2_gb": 22.0, "wikitext_gb": 90.0, "words": 4.5e9, "articles": 6.9e6}


def anchor_count(path: str) -> tuple[int, Counter, Counter]:
    """The plain loop: read the prose file, tokens per line, unigrams and adjacent pairs."""
    unigrams, bigrams, tokens = Counter(), Counter(), 0
    with open(path, encoding="utf-8") as handle:
        texts = [json.loads(line) for line in handle]
    for text in texts:
        for line in text.splitlines():
            words = tokenize(line)
            tokens += len(words)
            unigrams.update(words)
            bigrams.update(zip(words, words[1:]))
    return tokens, unigrams, bigrams


def beam_count(path: str) -> None:
    """The job's counting stage fed from the same file (in the job, the prose comes from the
    fused page-reading step; beam.Create of 30 MB would measure pipeline-proto encoding)."""
    pipeline = make_pipeline(local_options(num_workers=1))
    (pipeline
     | beam.io.ReadFromText(path)
     | beam.Map(json.loads)
     | CountStage(shards=256, bigram_min_count=1)
     | beam.combiners.Count.Globally()
     | beam.Map(print_keys))
    pipeline.run().wait_until_finish()


def print_keys(n: int) -> None:
    print(f"  (beam: {n:,} distinct keys)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--repeat", type=int, default=8, help="repeat the extracted prose to lengthen the run")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    raw = (data / SAMPLE).read_bytes()

    started = time.perf_counter()
    xml = bz2.decompress(raw)
    bz2_seconds = time.perf_counter() - started
    with bz2.open(data / SAMPLE, "rb") as handle:
        pages = [p for p in sources._iter_xml_pages(handle) if skip_reason(p) is None]
    wikitext_mb = sum(len(p.text.encode()) for p in pages) / 1e6
    started = time.perf_counter()
    texts = [wikitext_to_prose(p.text) for p in pages]
    extract_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        corpus = f"{folder}/prose.jsonl"
        with open(corpus, "w", encoding="utf-8") as handle:
            for text in texts * args.repeat:
                handle.write(json.dumps(text, ensure_ascii=False) + "\n")
        started = time.perf_counter()
        tokens, _, _ = anchor_count(corpus)
        anchor_seconds = time.perf_counter() - started
        started = time.perf_counter()
        beam_count(corpus)
        beam_seconds = time.perf_counter() - started

    anchor_rate = tokens / anchor_seconds
    beam_rate = tokens / beam_seconds
    figures = {
        "bz2_mb_per_s": len(xml) / 1e6 / bz2_seconds,
        "extract_pages_per_s": len(pages) / extract_seconds,
        "extract_mb_per_s": wikitext_mb / extract_seconds,
        "tokens": tokens,
        "anchor_counter_tokens_per_s_per_core": anchor_rate,
        "beam_tokens_per_s_per_core": beam_rate,
        "ratio_beam_over_anchor": beam_rate / anchor_rate,
    }
    core_hours = {
        "bz2": FULL_DUMP["wikitext_gb"] * 1e3 / figures["bz2_mb_per_s"] / 3600,
        "extract": FULL_DUMP["wikitext_gb"] * 1e3 / figures["extract_mb_per_s"] / 3600,
        "count": FULL_DUMP["words"] / beam_rate / 3600,
    }
    figures["full_dump_core_hours"] = core_hours
    figures["full_dump_core_hours_total"] = sum(core_hours.values())

    print(f"bz2 decompression      {figures['bz2_mb_per_s']:8.1f} MB/s per core")
    print(f"prose extraction       {figures['extract_pages_per_s']:8.1f} pages/s, "
          f"{figures['extract_mb_per_s']:.2f} MB wikitext/s per core ({len(pages)} articles)")
    print(f"counting ({tokens:,} tokens, unigrams + bigrams)")
    print(f"  anchor: plain Counter {anchor_rate / 1e6:8.3f} M tokens/s/core ({anchor_seconds:.1f} s)")
    print(f"  ours:   Beam stage    {beam_rate / 1e6:8.3f} M tokens/s/core ({beam_seconds:.1f} s, start-up included)")
    print(f"  ratio ours/anchor     {figures['ratio_beam_over_anchor']:8.2f}  (goal >= 0.5)")
    print("full English dump, core-hours: " + ", ".join(f"{k} {v:,.0f}" for k, v in core_hours.items())
          + f"; total {figures['full_dump_core_hours_total']:,.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
