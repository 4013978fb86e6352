"""Pure pieces of the query list: tokens, prose extraction, page views, WordNet, ordering."""

from __future__ import annotations

import math

from query_list import pageviews
from query_list.assemble import Entry, order_and_cap
from query_list.build import count_ngrams, pmi
from query_list.tokens import is_word, normalize, segments, spaced, tokenize
from query_list.wikitext import Page, is_disambiguation, skip_reason, wikitext_to_prose
from query_list.wordnet import iter_head_lemmas


def test_tokenizer_pads_metaclip_punctuation_and_keeps_case():
    assert tokenize("St. Louis, Missouri!") == ["St", ".", "Louis", ",", "Missouri", "!"]
    assert normalize('The "Golden Gate Bridge" (1937)') == 'The " Golden Gate Bridge " ( 1937 )'
    assert spaced("a`b") == "a ` b"
    assert tokenize("Apple apple") == ["Apple", "apple"]


def test_words_and_segments():
    assert all(is_word(w) for w in ["O'Brien", "Coca-Cola", "AT&T", "1990", "café", "3/4"])
    assert not any(is_word(w) for w in [",", "-", "C++", "'quoted", "_x", "--"])
    text = "New York, the city. It's big\nNew line here"
    assert list(segments(text)) == [["New", "York"], ["the", "city"], ["It's", "big"], ["New", "line", "here"]]


def test_count_ngrams_never_crosses_boundaries():
    from collections import Counter

    unigrams, bigrams = Counter(), Counter()
    tokens = count_ngrams(["red car, blue car", "blue\ncar"], unigrams, bigrams)
    assert tokens == 6
    assert unigrams == Counter({"car": 3, "blue": 2, "red": 1})
    assert bigrams == Counter({("red", "car"): 1, ("blue", "car"): 1})


def test_pmi():
    assert math.isclose(pmi(10, 10, 10, 1000), math.log(100))
    assert pmi(1, 1000, 1000, 1000) < 0


def test_prose_extraction_on_real_wikitext(shared_data):
    raw = (shared_data / "wiki" / "wikitext_pages" / "toronto.txt").read_text()
    prose = wikitext_to_prose(raw)
    assert "Toronto" in prose and len(prose) > 10_000
    for junk in ("{{", "}}", "<ref", "[[", "]]", "File:", "Category:", "thumb|", "{|", "|}"):
        assert junk not in prose, junk


def test_prose_drops_markup_keeps_link_text():
    raw = ("{{Infobox|a=b}}'''Anarchism''' is a [[political philosophy|philosophy]]<ref>cite</ref> "
           "[[File:X.jpg|thumb|A caption]] see [[Paris]]'s [http://x.org Link text] http://bare.org "
           "[[Category:Foo]] [[de:Anarchismus]] <math>x^2</math>\n== History ==\n{|\n| cell\n|}\n* item")
    assert wikitext_to_prose(raw) == "Anarchism is a philosophy see Paris's Link text\nHistory\nitem"


def test_skip_reasons():
    assert skip_reason(Page("Talk:X", 1, 1, "text")) == "namespace"
    assert skip_reason(Page("X", 0, 1, "#REDIRECT [[Y]]")) == "redirect"
    assert skip_reason(Page("X", 0, 1, "x", redirect=True)) == "redirect"
    assert skip_reason(Page("X", 0, 1, "  ")) == "empty"
    assert skip_reason(Page("X (disambiguation)", 0, 1, "a")) == "disambiguation"
    assert is_disambiguation("Mercury", "'''Mercury''' may refer to:\n* x\n{{Disambiguation|geo}}")
    assert is_disambiguation("John", "{{hndis|name}}") and is_disambiguation("A", "{{Place name disambiguation}}")
    assert not is_disambiguation("Dog", "{{Infobox dog}} {{dablink}} text")
    assert skip_reason(Page("X", 0, 1, "prose", plain=True)) is None


def test_pageview_lines():
    assert pageviews.parse_line("en Albert_Einstein 12 0") == ("ok", ("Albert Einstein", 12))
    assert pageviews.parse_line("en Caf%C3%A9 3 0") == ("ok", ("Café", 3))
    assert pageviews.parse_line("en.m Albert_Einstein 12 0") == ("ok", ("Albert Einstein", 12))  # mobile counts
    assert pageviews.parse_line("de.m Berlin 12 0")[0] == "other_domain"
    assert pageviews.canonical_title("animal  Farm") == "Animal Farm" == pageviews.canonical_title("Animal Farm")
    assert pageviews.parse_line("en File:X.jpg 12 0")[0] == "namespaced"
    assert pageviews.parse_line("en User_talk:Someone 12 0")[0] == "namespaced"
    assert pageviews.parse_line("en Main_Page 99 0")[0] == "special"
    assert pageviews.parse_line("en Batman:_Year_One 5 0")[0] == "ok"  # a colon is not a namespace
    for bad in ("en X", "en X y 0", "", "en X 1 2 3"):
        assert pageviews.parse_line(bad)[0] == "malformed"


def test_wordnet_head_lemmas():
    lemmas = list(iter_head_lemmas("/usr/share/wordnet"))
    assert len(lemmas) == 117_659  # every synset of WordNet 3.0
    assert lemmas[:3] == ["entity", "physical entity", "abstraction"]
    assert not any(lemma.endswith(("(a)", "(p)", "(ip)")) or "_" in lemma for lemma in lemmas)


def test_order_and_cap():
    entries = [
        Entry("t", "Some Title", ["title"], title_views=500),
        Entry("a b", "a b", ["bigram"], bigram_count=5, pmi=3.0),
        Entry("c d", "c d", ["bigram"], bigram_count=9, pmi=4.0),
        Entry("dog", "dog", ["wordnet", "unigram"], unigram_count=50),
        Entry("cat", "cat", ["unigram"], unigram_count=80),
        Entry("zebra crossing", "zebra crossing", ["wordnet"]),
    ]
    kept, summary = order_and_cap(entries, 4)
    assert [e.entry for e in kept] == ["cat", "dog", "zebra crossing", "c d"]
    assert summary["filled"] and summary["parts"]["bigram"] == {"available": 2, "kept": 1, "kept_as_first_source": 1}
    kept, summary = order_and_cap(entries, 10)
    assert len(kept) == 6 and summary["shortfall"] == 4 and not summary["filled"]
