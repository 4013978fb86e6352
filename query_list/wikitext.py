"""MediaWiki pages: which to read, and their wikitext turned into plain prose.

Only main-namespace articles count. Redirects, disambiguation pages and empty pages are
skipped with a reason. Prose comes from mwparserfromhell's parse tree: templates, references,
tables, galleries, math, comments, files, categories and inter-language links are removed;
links keep their visible text; headings keep their words. Each paragraph, heading and list item
ends up on its own line, so bigrams never cross them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mwparserfromhell
from mwparserfromhell.nodes import Comment, ExternalLink, Tag, Template, Wikilink

# Tags whose content is not prose (other tags, formatting and list items, keep their words).
DROP_TAGS = {
    "ref", "references", "table", "gallery", "math", "chem", "ce", "code", "pre", "syntaxhighlight",
    "source", "timeline", "imagemap", "score", "hiero", "graph", "mapframe", "maplink", "templatedata",
    "templatestyles", "nowiki", "sub", "sup", "noinclude", "includeonly", "onlyinclude", "categorytree",
    "inputbox", "tr", "td", "th", "caption",
}

# Link prefixes that are not article links: namespaces and interwiki prefixes.
DROP_LINK_PREFIXES = {
    "file", "image", "media", "category", "template", "wikipedia", "wp", "help", "portal", "user", "talk",
    "special", "draft", "module", "mediawiki", "book", "timedtext", "wikt", "wiktionary", "commons", "s",
    "q", "n", "b", "v", "d", "m", "meta", "mw", "species", "wikisource", "wikiquote", "wikinews",
    "wikibooks", "wikiversity", "wikivoyage", "wikidata", "foundation", "doi", "arxiv", "rfc",
}
_LANGUAGE_PREFIX = re.compile(r"[a-z]{2,3}(?:-[a-z]{2,8})*")

DISAMBIGUATION_TEMPLATES = {
    "disambiguation", "disambig", "dab", "disamb", "hndis", "geodis", "numberdis", "mathdab", "letter-numbercombdisambig",
    "airport disambiguation", "biology disambiguation", "call sign disambiguation", "caselaw disambiguation",
    "chinese title disambiguation", "genus disambiguation", "hospital disambiguation", "human name disambiguation",
    "letter disambiguation", "mountainindex", "place name disambiguation", "road disambiguation",
    "school disambiguation", "species latin name disambiguation", "wikipedia disambiguation",
}
_REDIRECT_TEXT = re.compile(r"^\s*#redirect\s*\[\[", re.IGNORECASE)
_TEMPLATE_NAME = re.compile(r"\{\{\s*([^|{}<>\n]+?)\s*(?=\||\}\})")


@dataclass
class Page:
    title: str
    ns: int
    page_id: int
    text: str
    redirect: bool = False
    plain: bool = False  # already prose (WikiExtractor output): no wikitext parsing


def is_disambiguation(title: str, wikitext: str) -> bool:
    if title.endswith("(disambiguation)"):
        return True
    # A template-name scan, not a full parse: this runs on every page of the dump.
    for match in _TEMPLATE_NAME.finditer(wikitext):
        name = " ".join(match.group(1).replace("_", " ").lower().split())
        if name in DISAMBIGUATION_TEMPLATES or name.endswith(" disambiguation"):
            return True
    return False


def skip_reason(page: Page) -> str | None:
    """Why a page is not read (None: it is an article and is read)."""
    if page.ns != 0:
        return "namespace"
    if page.plain:
        return None if page.text.strip() else "empty"
    if page.redirect or _REDIRECT_TEXT.match(page.text):
        return "redirect"
    if not page.text.strip():
        return "empty"
    if is_disambiguation(page.title, page.text):
        return "disambiguation"
    return None


def _link_dropped(target: str) -> bool:
    target = target.strip()
    if target.startswith(":"):  # [[:Category:X]] is a visible link
        return False
    prefix, colon, _ = target.partition(":")
    if not colon:
        return False
    prefix = prefix.strip().lower()
    return prefix in DROP_LINK_PREFIXES or _LANGUAGE_PREFIX.fullmatch(prefix) is not None


def _prune(code) -> None:
    """Remove the non-prose nodes from a parsed wikicode tree, in place."""
    doomed = []
    for node in code.nodes:
        if isinstance(node, (Template, Comment)):
            doomed.append(node)
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in DROP_TAGS:
                doomed.append(node)
            elif node.contents is not None:
                _prune(node.contents)
        elif isinstance(node, Wikilink):
            if _link_dropped(str(node.title)):
                doomed.append(node)
            elif node.text is not None:
                _prune(node.text)
        elif isinstance(node, ExternalLink):
            if node.title is None:
                doomed.append(node)  # a bare url is not prose
        elif hasattr(node, "title") and node.__class__.__name__ == "Heading":
            _prune(node.title)
    if doomed:
        # Rebuild the node list in one pass; Wikicode.remove searches the tree for every node.
        gone = {id(node) for node in doomed}
        code.nodes = [node for node in code.nodes if id(node) not in gone]


def wikitext_to_prose(wikitext: str) -> str:
    """Plain prose of a page: one paragraph, heading or list item per line, no markup."""
    code = mwparserfromhell.parse(wikitext)
    _prune(code)
    text = code.strip_code(normalize=True, collapse=True, keep_template_params=False)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
