"""A vocabulary tree over 256-bit ORB descriptors: the candidate stage of the local-feature path.

At index time every evaluation descriptor is quantised to a leaf ("visual word") of a tree of
binary k-majority clusterings (Nistér and Stewénius, CVPR 2006; Gálvez-López and Tardós's
DBoW2 for the binary case), and the index keeps, per word, the rows of the evaluation images
that hold it (the inverted file). At audit time a pool descriptor walks the tree (``branching``
Hamming distances per level) and votes for the images listed under its word. Cost per pool image
grows with the posting length (about ``descriptors / words``), not with the index size, which is
what lets one worker audit against a million evaluation images; verification of the few best-voted
images (:mod:`dedup.detect`) decides.

Arrays (all memory-mappable): ``nodes`` (parents, branching, 32) holds the children of every
inner node, level by level (:func:`level_start`), so a walk is one gather per level; a parent
with fewer training codes than ``branching`` repeats some children (those words stay empty).
"""

from __future__ import annotations

import numpy as np

CODE_BYTES = 32


def _hamming(queries: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(q, k) Hamming distances between (q, 32) uint8 codes and (q, k, 32) or (k, 32) centroids."""
    a = np.ascontiguousarray(queries).view(np.uint64)[:, None, :]  # (q, 1, 4)
    b = np.ascontiguousarray(centroids).view(np.uint64)
    b = b[None] if b.ndim == 2 else b
    # word by word: 3x faster than a sum over a short last axis
    total = np.bitwise_count(a[..., 0] ^ b[..., 0]).astype(np.int32)
    for word in range(1, a.shape[-1]):
        total += np.bitwise_count(a[..., word] ^ b[..., word])
    return total


def level_start(level: int, branching: int) -> int:
    """Row of ``nodes`` where ``level``'s parents begin (level 0 has one parent: the root)."""
    return (branching ** level - 1) // (branching - 1)


def levels_for(count: int, branching: int, per_word: int, least: int = 4, most: int = 5) -> int:
    """Tree depth: about ``per_word`` descriptors per word, and never fewer than ``least`` levels.

    Votes for a random image grow with the posting length (pool descriptors x words per
    descriptor x descriptors per word / images), so a small index still wants many words: with
    16 x 16 (4 levels of 16 would give 65,536), a copy's own image was among the four best-voted
    for 60% of 70% crops in an index of 200 images, with 65,536 words for 97%. ``most`` bounds
    the tree's own size (about 32 bytes a word: 5 levels of 16 are 36 MB)."""
    words = max(1.0, count / per_word)
    return int(np.clip(np.floor(np.log(words) / np.log(branching)), least, most))


def train(codes: np.ndarray, branching: int, levels: int, seed: int = 0, sample: int = 200_000,
          iterations: int = 6) -> np.ndarray:
    """The tree's ``nodes`` array ``(parents of every level, branching, 32)``, trained level by
    level with binary k-majority (k-means with the Hamming distance and the bitwise majority as
    the mean), every parent's clustering at once; on at most ``sample`` of ``codes`` (seeded)."""
    rng = np.random.default_rng(seed)
    if len(codes) > sample:
        codes = codes[np.sort(rng.choice(len(codes), sample, replace=False))]
    codes = np.ascontiguousarray(codes)
    bits = np.unpackbits(codes, axis=1)
    nodes = np.zeros((level_start(levels, branching), branching, CODE_BYTES), np.uint8)
    owner = np.zeros(len(codes), np.int64)  # parent (within its level) each training code sits under
    for level in range(levels):
        parents, base = branching ** level, level_start(level, branching)
        counts = np.bincount(owner, minlength=parents)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        order = np.argsort(owner, kind="stable")
        # seeds: random members of each parent (with repetition when it has fewer than branching)
        picks = first[:, None] + (rng.random((parents, branching)) * np.maximum(counts, 1)[:, None]).astype(np.int64)
        centroids = codes[order[np.minimum(picks, len(codes) - 1)]] if len(codes) else nodes[base:base + parents]
        for _ in range(iterations):
            child = _hamming(codes, centroids[owner]).argmin(axis=1)
            group = owner * branching + child
            sums = np.zeros((parents * branching, bits.shape[1]), np.int32)
            sizes = np.bincount(group, minlength=parents * branching)
            _add_sorted(sums, group, bits)
            used = sizes > 0
            majority = np.packbits(sums[used] * 2 > sizes[used, None], axis=1)
            flat = centroids.reshape(parents * branching, CODE_BYTES)
            flat[used] = majority
            centroids = flat.reshape(parents, branching, CODE_BYTES)
        nodes[base:base + parents] = centroids
        if level + 1 < levels:
            owner = owner * branching + _hamming(codes, centroids[owner]).argmin(axis=1)
    return nodes


def _add_sorted(sums: np.ndarray, group: np.ndarray, bits: np.ndarray) -> None:
    order = np.argsort(group, kind="stable")
    present, first = np.unique(group[order], return_index=True)
    sums[present] = np.add.reduceat(bits[order], first, axis=0, dtype=np.int32)


def assign(nodes: np.ndarray, codes: np.ndarray, spread: int = 1) -> np.ndarray:
    """Word of each code, (n, spread): the tree walked greedily, and at the last level the
    ``spread`` nearest leaves (a pool descriptor near a cell border reaches both sides)."""
    branching = nodes.shape[1]
    levels = int(round(np.log(word_count(nodes)) / np.log(branching)))
    codes = np.ascontiguousarray(codes)
    node = np.zeros(len(codes), np.int64)
    for level in range(levels - 1):
        node = node * branching + _hamming(codes, nodes[level_start(level, branching) + node]).argmin(axis=1)
    distances = _hamming(codes, nodes[level_start(levels - 1, branching) + node])
    # the ``spread`` nearest leaves, ties to the lower index (as a stable argsort orders them):
    # repeated argmins cost a fraction of sorting every row
    nearest = np.empty((len(codes), spread), np.int64)
    rows = np.arange(len(codes))
    for rank in range(spread):
        nearest[:, rank] = distances.argmin(axis=1)
        if rank + 1 < spread:
            distances[rows, nearest[:, rank]] = np.iinfo(distances.dtype).max
    return node[:, None] * branching + nearest


def word_count(nodes: np.ndarray) -> int:
    """Leaves of the tree: ``branching ** levels``."""
    return nodes.shape[0] * (nodes.shape[1] - 1) + 1


def postings(words: np.ndarray, rows: np.ndarray, word_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverted file: (rows sorted by word as int32, start offset of every word, length
    ``word_count + 1``, int32 below 2**31 entries)."""
    order = np.argsort(words, kind="stable")
    starts = np.searchsorted(words[order], np.arange(word_count + 1))
    return rows[order].astype(np.int32), starts.astype(np.int32 if len(words) < 2**31 else np.int64)


def gather(starts: np.ndarray, lists: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Every entry of the posting lists of ``words`` (a flat array of words), concatenated."""
    begin, end = starts[words], starts[words + 1]
    lengths = end - begin
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, lists.dtype)
    # one vectorised range expansion instead of a Python loop over words
    offsets = np.repeat(begin - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    return lists[offsets]
