"""Finding and checking a WordNet 3.0 database folder.

WordNet is read from its plain database files (``data.noun``, ``index.noun``, ...), either the
Debian ``wordnet-base`` install (``/usr/share/wordnet``) or an ``nltk_data`` layout
(``.../corpora/wordnet``). Nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

# The synset files we read (one per part of speech; see wndb(5)). Debian's wordnet-base ships
# them without ``lexnames``, so that file is not required.
REQUIRED_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

DEBIAN_PATH = Path("/usr/share/wordnet")

INSTALL_HINT = (
    "install WordNet 3.0: `apt-get install wordnet-base` (Debian/Ubuntu, puts it in "
    "/usr/share/wordnet), or pass --wordnet DIR / set WIT_WORDNET to a folder holding "
    "data.noun, data.verb, data.adj and data.adv (an nltk_data/corpora/wordnet folder works)"
)


class WordNetNotFound(FileNotFoundError):
    """No usable WordNet database folder; the message says how to install one."""


def candidate_dirs() -> list[Path]:
    """Where WordNet is looked for when no folder is given, in order."""
    dirs: list[Path] = []
    if os.environ.get("WIT_WORDNET"):
        dirs.append(Path(os.environ["WIT_WORDNET"]))
    dirs.append(DEBIAN_PATH)
    nltk_roots = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    nltk_roots += [str(Path.home() / "nltk_data"), "/usr/share/nltk_data", "/usr/local/share/nltk_data",
                   "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    dirs += [Path(root) / "corpora" / "wordnet" for root in nltk_roots]
    return dirs


def missing_files(folder: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def find_wordnet_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Return a usable WordNet folder or raise :class:`WordNetNotFound`.

    An explicit folder is checked alone (a wrong path is an error, never silently replaced by
    another install); otherwise the candidates are tried in order.
    """
    if explicit is not None:
        folder = Path(explicit)
        if not folder.is_dir():
            raise WordNetNotFound(f"WordNet folder {folder} does not exist; {INSTALL_HINT}")
        missing = missing_files(folder)
        if missing:
            raise WordNetNotFound(f"WordNet folder {folder} lacks {', '.join(missing)}; {INSTALL_HINT}")
        return folder
    for folder in candidate_dirs():
        if folder.is_dir() and not missing_files(folder):
            return folder
    looked = ", ".join(str(p) for p in candidate_dirs())
    raise WordNetNotFound(f"no WordNet database found (looked in {looked}); {INSTALL_HINT}")


PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
_SYNTACTIC_MARKER = ("(a)", "(p)", "(ip)")


def iter_head_lemmas(folder: str | os.PathLike) -> Iterator[str]:
    """The head lemma (first word) of every synset, ``_`` turned into a space.

    Reads the ``data.<pos>`` files directly (format in wndb(5)): lines starting with two spaces
    are the licence header; each other line is ``offset lex_filenum ss_type w_cnt word lex_id ...``.
    Adjective syntactic markers such as ``(a)`` are removed.
    """
    root = Path(folder)
    for pos in PARTS_OF_SPEECH:
        with open(root / f"data.{pos}", encoding="utf-8", errors="strict") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue
                fields = line.split(" ", 5)
                if len(fields) < 5:
                    continue
                word = fields[4]
                for marker in _SYNTACTIC_MARKER:
                    if word.endswith(marker):
                        word = word[: -len(marker)]
                yield word.replace("_", " ")
