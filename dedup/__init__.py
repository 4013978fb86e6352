"""dedup: find near-duplicates of evaluation-set images in the crawl, remove them, and report.

``dedup.index`` builds one searchable, memory-mappable index of one or more evaluation sets; ``dedup.audit`` checks crawled
shards against one or more indexes and writes ``overlaps.parquet``, ``report.json`` and a
self-contained ``report.html``.
"""
