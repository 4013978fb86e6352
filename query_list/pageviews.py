"""Wikimedia page-view files: per-title view totals for English Wikipedia articles.

Hourly files (``pageviews-YYYYMMDD-HH0000.gz``) hold lines
``domain_code page_title count_views total_response_size``. English Wikipedia's desktop site
(``en``) and mobile site (``en.m``) count together: they serve the same articles, and most
readers now come through the mobile one. ``_`` in titles becomes a space, percent-escapes are
decoded, and titles in a namespace (``Special:``, ``File:``, ``Talk:``, ...) are dropped.
Malformed lines are counted, never fatal. Which titles are real articles is the dump's to say
(:func:`canonical_title` is the key both sides are joined on).
"""

from __future__ import annotations

from urllib.parse import unquote

DOMAINS = frozenset({"en", "en.m"})  # desktop and mobile English Wikipedia

NAMESPACES = {
    "media", "special", "talk", "user", "user talk", "wikipedia", "wikipedia talk", "wp", "project", "file",
    "file talk", "image", "image talk", "mediawiki", "mediawiki talk", "template", "template talk", "help",
    "help talk", "category", "category talk", "portal", "portal talk", "book", "book talk", "draft",
    "draft talk", "education program", "education program talk", "timedtext", "timedtext talk", "module",
    "module talk", "gadget", "gadget talk", "gadget definition", "gadget definition talk", "topic",
    "event", "event talk",
}
SPECIAL_TITLES = {"Main Page", "-", "Main_Page"}


def is_namespaced(title: str) -> bool:
    prefix, colon, rest = title.partition(":")
    return bool(colon) and prefix.strip().lower() in NAMESPACES


def parse_line(line: str) -> tuple[str, tuple[str, int] | None]:
    """Classify one line: ``("ok", (title, views))``, or a reason and None.

    Reasons: ``malformed`` (not four fields, or views not a number), ``other_domain``,
    ``namespaced``, ``special``.
    """
    fields = line.split(" ")
    if len(fields) != 4:
        return "malformed", None
    domain, raw_title, views, _size = fields
    if not views.isdigit():
        return "malformed", None
    if domain not in DOMAINS:
        return "other_domain", None
    title = unquote(raw_title).replace("_", " ").strip()
    if not title or title in SPECIAL_TITLES:
        return "special", None
    if is_namespaced(title):
        return "namespaced", None
    return "ok", (title, int(views))


def canonical_title(title: str) -> str:
    """MediaWiki's form of an English Wikipedia title: the first letter upper case (the site
    does that to every title, so ``animal Farm`` is the article ``Animal Farm``), one space
    between words."""
    title = " ".join(title.split())
    return title[:1].upper() + title[1:]
