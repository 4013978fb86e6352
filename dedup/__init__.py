"""dedup: find near-duplicates of evaluation-set images in the crawl, remove them, and report.

``dedup.index`` builds a searchable index of an evaluation set; ``dedup.audit`` checks crawled
shards against one or more indexes and writes ``overlaps.parquet``, ``report.json`` and a
self-contained ``report.html``.
"""
