"""pipeline: the Beam jobs from candidate (url, alt-text) pairs to webdataset shards.

``pipeline.curate`` extracts candidates from Common Crawl WAT/WARC files and url lists, matches
them against the query list and balances them to at most 20,000 pairs per query;
``pipeline.crawl`` downloads the images politely into sharded webdataset tar files.
"""
