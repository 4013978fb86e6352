"""robots.txt as RFC 9309 says, cached per origin and shared by a worker's download threads.

The rules are parsed by ``protego`` (longest match wins, ``Allow`` wins a tie, ``*`` and ``$``
wildcards, our product token matched case-insensitively, ``*`` group otherwise). What a fetch
of robots.txt means, by the RFC's section 2.3:

=========================== ================================================================
2xx                         the rules in the first ``MAX_ROBOTS_BYTES`` (500 KiB)
3xx                         followed, up to five hops, each checked like an image url
4xx (429 aside)             "unavailable": no rules, everything allowed
429, 5xx, network error,    "unreachable": everything disallowed, and asked again after
timeout, refused redirect   ``error_ttl`` seconds
=========================== ================================================================

Answers are kept ``ttl`` seconds (the RFC's 24 hours at most), for at most ``max_entries``
origins and ``max_bytes`` of robots.txt text in all (the least recently used go first: a
parsed file holds about its text again, and files run up to 500 KiB). One load per origin at a
time, in the loader's own thread under its own deadline: urls of that host wait for it at
most until their own deadlines, so a slow robots.txt costs each waiting url its own time and
holds nothing else.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable

from protego import Protego

MAX_ROBOTS_BYTES = 500 * 1024
MAX_CACHED_BYTES = 32 * 1024 * 1024  # robots.txt text kept per worker, summed over origins


@dataclass(frozen=True)
class Rules:
    """What one origin's robots.txt allows us."""

    verdict: str  # "rules", "allow_all" or "disallow_all"
    reason: str = ""
    parser: Protego | None = None
    transient: bool = False  # unreachable: asked again after the cache's error_ttl
    size: int = 0  # characters of robots.txt text the rules came from (the cache's byte budget)

    def crawl_delay(self, agent: str) -> float | None:
        """Seconds between requests that the rules ask of ``agent`` (non-standard, widely used)."""
        if self.verdict != "rules":
            return None
        try:
            delay = self.parser.crawl_delay(agent)
        except (TypeError, ValueError):
            return None
        return float(delay) if delay and delay > 0 else None

    def allows(self, url: str, agent: str) -> bool:
        if self.verdict == "rules":
            return self.parser.can_fetch(url, agent)
        return self.verdict == "allow_all"


def rules_from_response(code: int, body: bytes) -> Rules:
    """The rules an origin gives by answering ``code`` with ``body`` (no redirect)."""
    if 200 <= code < 300:
        text = body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")
        return Rules("rules", f"robots.txt HTTP {code}", Protego.parse(text), size=len(text))
    if 400 <= code < 500 and code != 429:
        return Rules("allow_all", f"robots.txt HTTP {code}: unavailable, no rules")
    return Rules("disallow_all", f"robots.txt HTTP {code}: unreachable, everything disallowed", transient=True)


def unreachable(reason: str) -> Rules:
    return Rules("disallow_all", f"robots.txt unreachable ({reason}): everything disallowed", transient=True)


class RobotsCache:
    """origin -> :class:`Rules`, loaded by ``load(origin)`` in a small thread pool."""

    def __init__(self, load: Callable[[str], Rules], ttl: float = 86_400.0, error_ttl: float = 60.0,
                 max_entries: int = 50_000, loaders: int = 64, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self.load, self.ttl, self.error_ttl, self.max_entries = load, ttl, error_ttl, max_entries
        self.max_bytes, self.bytes = max_bytes, 0  # robots.txt text held by the entries, summed
        self.entries: OrderedDict[str, tuple[float, Future, int]] = OrderedDict()  # expiry, load, text size
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(loaders, thread_name_prefix="wit-robots")

    def rules(self, origin: str, timeout: float) -> Rules | None:
        """The origin's rules, or None when they did not come within ``timeout`` seconds."""
        try:
            return self._future(origin).result(timeout=max(0.0, timeout))
        except FutureTimeout:
            return None

    def _future(self, origin: str) -> Future:
        now = time.monotonic()
        with self.lock:
            entry = self.entries.get(origin)
            if entry is not None and (entry[0] > now or not entry[1].done()):
                self.entries.move_to_end(origin)
                return entry[1]
            if entry is not None:  # expired: its text leaves the budget
                self.bytes -= entry[2]
            future = self.pool.submit(self._load, origin)
            self.entries[origin] = (float("inf"), future, 0)
            self._trim()
            return future

    def _trim(self) -> None:
        """Drop the least recently used entries past ``max_entries`` or ``max_bytes`` (lock held)."""
        while len(self.entries) > self.max_entries or (self.bytes > self.max_bytes and len(self.entries) > 1):
            _, (_, _, size) = self.entries.popitem(last=False)
            self.bytes -= size

    def _load(self, origin: str) -> Rules:
        try:
            rules = self.load(origin)
        except Exception as exc:  # noqa: BLE001 - a loader fault is an unreachable robots.txt, never a crash
            rules = unreachable(f"{type(exc).__name__}: {exc}"[:200])
        ttl = self.error_ttl if rules.transient else self.ttl
        with self.lock:
            entry = self.entries.get(origin)
            if entry is not None and entry[1].done() is False:
                self.entries[origin] = (time.monotonic() + ttl, entry[1], rules.size)
                self.bytes += rules.size - entry[2]
                self.entries.move_to_end(origin)
                self._trim()
        return rules

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
