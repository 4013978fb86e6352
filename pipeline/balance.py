"""Balancing matched pairs to at most ``t`` per query entry, exactly and reproducibly.

CLIP searched for pairs whose text contains a query and kept "up to 20,000" results per query;
the dataset is the union of the results. MetaCLIP's rule (``--cap expected``) has every entry
select each of its matching pairs with probability ``p_e = min(1, t / count_e)`` (``count_e``:
pairs matching entry e), a pair being kept when any of its entries selects it, so
``P(keep) = 1 - prod(1 - p_e)``; an entry then selects ``t`` pairs only on average. The strict
cap (``--cap strict``, the default) makes the quota exact: an entry matching more than ``t``
pairs selects exactly the ``t`` whose draw is smallest, found in a second pass (the ``t``-th
smallest draw of each such entry, :func:`selection_key`), so no query selects more than ``t``.

The draws are not ``random()``: each uniform comes from a hash of ``(seed, uid, entry_id)``, the
same one in both modes, so a re-run, a retried bundle or another runner keeps exactly the same
pairs, and each pair is decided (and emitted) once, however many entries it matches. A kept
pair counts for every entry it contains, so an entry that co-occurs with rarer ones holds more
than the ``t`` pairs it selected itself, in CLIP's search as here: :func:`overshoot` reports it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping, Sequence


def uniform(seed: int, uid: str, entry_id: int) -> float:
    """A uniform draw in [0, 1) determined by (seed, uid, entry_id)."""
    digest = hashlib.blake2b(f"{seed}\x1f{uid}\x1f{entry_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


CAPS = ("strict", "expected")


def selection_key(seed: int, uid: str, entry_id: int) -> tuple[float, str]:
    """The order in which the strict cap fills an entry's quota: its draw, then the uid (ties)."""
    return uniform(seed, uid, entry_id), uid


def selections(uid: str, entry_ids: Sequence[int], counts: Mapping[int, int], target: float, seed: int,
               cutoffs: Mapping[int, tuple[float, str]]) -> dict[str, list[int]]:
    """The entries that select this pair, under each cap (one draw per entry serves both).
    ``expected``: MetaCLIP's draw, ``u < p_e``. ``strict``: the exact quota; ``cutoffs`` holds the
    ``t``-th smallest :func:`selection_key` of each entry matching more than ``t`` pairs, and an
    entry selects the pairs at or under it (every pair, when it has no cut-off)."""
    expected, strict = [], []
    for entry_id in entry_ids:
        draw = uniform(seed, uid, entry_id)
        if draw < entry_probability(counts[entry_id], target):
            expected.append(entry_id)
        cutoff = cutoffs.get(entry_id)
        if cutoff is None or (draw, uid) <= cutoff:
            strict.append(entry_id)
    return {"expected": expected, "strict": strict}


def overshoot(counts: Mapping[int, int], target: float) -> dict:
    """How far per-entry counts go past ``t``: the largest count and its ratio to ``t``, the
    entries above ``t`` and the pairs they hold beyond it."""
    over = {e: c for e, c in counts.items() if c > target}
    largest = max(counts.values(), default=0)
    return {"max": largest, "max_over_t": round(largest / target, 4) if target else None,
            "entries_over_t": len(over), "pairs_over_t": round(sum(c - target for c in over.values()))}


def entry_probability(count: int, target: float) -> float:
    return 1.0 if count <= target else target / count


def keep_probability(entry_ids: Sequence[int], counts: Mapping[int, int], target: float) -> float:
    """1 - prod(1 - p_e) over the pair's entries."""
    miss = 1.0
    for entry_id in entry_ids:
        miss *= 1.0 - entry_probability(counts[entry_id], target)
    return 1.0 - miss


def decide(uid: str, entry_ids: Sequence[int], counts: Mapping[int, int], target: float, seed: int) -> tuple[bool, float]:
    """(kept, keep probability) of one pair under MetaCLIP's rule (``--cap expected``)."""
    kept = bool(selections(uid, entry_ids, counts, target, seed, {})["expected"])
    return kept, keep_probability(entry_ids, counts, target)


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """A band around the mean of Binomial(n, p) for tests and reports."""
    mean = n * p
    spread = sigmas * math.sqrt(max(n * p * (1 - p), 1e-12))
    return mean - spread, mean + spread
