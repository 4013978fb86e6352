"""Radius search over 64-bit PHash codes with arrays that memory-map (multi-index hashing).

The 64 bits are cut into four 16-bit keys. Two codes within 7 bits of each other differ in at
most one bit of some key (pigeonhole), so probing, in each of the four tables, the query's key
and its 16 one-bit neighbours finds every code within 7 bits: exact for the detector's radius
(at most 5). Each table is a permutation of the code rows sorted by that key (``order``, int32)
and the start of every key value in it (``starts``, 65,537 int32): 16 bytes per code and 1 MB in
all beside the codes, built once at index time and never rebuilt (faiss's
``IndexBinaryMultiHash`` keeps hash maps that must be rebuilt in every worker).
"""

from __future__ import annotations

import numpy as np

TABLES = 4
KEY_VALUES = 1 << 16
_FLIPS = np.array([0] + [1 << bit for bit in range(16)], np.int64)  # the key and its one-bit neighbours


def keys(codes: np.ndarray) -> np.ndarray:
    """(n, 4) int64 16-bit keys of (n, 8) uint8 codes."""
    return np.ascontiguousarray(codes).view(">u2").astype(np.int64)


def build(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order (4, n) int32, starts (4, 65537) int32, or int64 from 2**31 codes) for (n, 8) uint8 codes."""
    found = keys(codes)
    order = np.argsort(found, axis=0, kind="stable").T.astype(np.int32)
    starts = np.stack([np.searchsorted(found[order[t], t], np.arange(KEY_VALUES + 1)) for t in range(TABLES)])
    return np.ascontiguousarray(order), starts.astype(np.int32 if len(codes) < 2**31 else np.int64)


def search(codes: np.ndarray, order: np.ndarray, starts: np.ndarray, queries: np.ndarray,
           radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, code row, distance) of every indexed code within ``radius`` (<= 7) bits of a
    query, each pair once."""
    if radius > 7:
        raise ValueError("the four-table search is exact up to 7 bits")
    if not len(queries) or not len(codes):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    probes = keys(queries)[:, :, None] ^ _FLIPS[None, None, :]  # (q, 4, 17)
    tables = np.broadcast_to(np.arange(TABLES)[None, :, None], probes.shape)
    begin, end = starts[tables, probes].ravel().astype(np.int64), starts[tables, probes + 1].ravel().astype(np.int64)
    lengths = end - begin
    total = int(lengths.sum())
    if total == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    # flat positions in ``order`` (one row per table), expanded without a Python loop
    base = tables.ravel() * order.shape[1] + begin
    positions = np.repeat(base - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    rows = order.reshape(-1)[positions].astype(np.int64)
    query = np.repeat(np.repeat(np.arange(len(queries)), TABLES * len(_FLIPS)), lengths)
    # distances first, de-duplication after: a probe's bucket grows with the index (thousands of
    # candidates an image at 100,000 images), the pairs within the radius stay a handful
    a = np.ascontiguousarray(queries).view(np.uint64).ravel()[query]
    distance = np.bitwise_count(a ^ np.ascontiguousarray(codes).view(np.uint64).ravel()[rows])
    keep = np.flatnonzero(distance <= radius)
    pairs, first = np.unique(query[keep] * len(codes) + rows[keep], return_index=True)
    return pairs // len(codes), pairs % len(codes), distance[keep[first]].astype(np.int64)
