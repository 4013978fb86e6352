"""query_list: the Beam job that builds CLIP's 500,000-query list.

Inputs are an English Wikipedia dump, Wikimedia page-view files and WordNet 3.0; the output
is ``metadata.json`` (a JSON array of strings whose index is the entry id) with
``entries.parquet`` and ``query_stats.json`` beside it.
"""
