"""Balancing matched pairs to at most ``t`` per query entry, exactly and reproducibly.

CLIP kept at most 20,000 pairs per query; MetaCLIP's rule does it with a per-entry sampling
probability ``p_e = min(1, t / count_e)`` (``count_e``: pairs matching entry e), a pair being
kept when any of its entries passes its own draw, so ``P(keep) = 1 - prod(1 - p_e)``. Our draws
are not ``random()``: each uniform comes from a hash of ``(seed, uid, entry_id)``, so a re-run,
a retried bundle or another runner keeps exactly the same pairs, and each pair is decided (and
emitted) once, however many entries it matches.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping, Sequence


def uniform(seed: int, uid: str, entry_id: int) -> float:
    """A uniform draw in [0, 1) determined by (seed, uid, entry_id)."""
    digest = hashlib.blake2b(f"{seed}\x1f{uid}\x1f{entry_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def entry_probability(count: int, target: float) -> float:
    return 1.0 if count <= target else target / count


def keep_probability(entry_ids: Sequence[int], counts: Mapping[int, int], target: float) -> float:
    """1 - prod(1 - p_e) over the pair's entries."""
    miss = 1.0
    for entry_id in entry_ids:
        miss *= 1.0 - entry_probability(counts[entry_id], target)
    return 1.0 - miss


def decide(uid: str, entry_ids: Sequence[int], counts: Mapping[int, int], target: float, seed: int) -> tuple[bool, float]:
    """(kept, keep probability) of one pair."""
    kept = any(uniform(seed, uid, e) < entry_probability(counts[e], target) for e in entry_ids)
    return kept, keep_probability(entry_ids, counts, target)


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """A band around the mean of Binomial(n, p) for tests and reports."""
    mean = n * p
    spread = sigmas * math.sqrt(max(n * p * (1 - p), 1e-12))
    return mean - spread, mean + spread
