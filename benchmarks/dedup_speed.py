"""Dedup speed on one core: the audit from shard bytes to decision, and code search at 1M codes.

1. **Audit**: real photos (the distractor side of :mod:`dedup.quality`'s split plus transformed
   copies of evaluation photos, stored as a crawl stores them: 256 px JPEG) written into
   webdataset shards; :func:`dedup.audit.audit_shard` reads, decodes, hashes, describes, searches
   and verifies every sample against an index of ``--eval`` photos. Anchor in the same run:
   imagededup's ``PHash.encode_image`` over the same images (hashing only, no search).
2. **Search**: 1,000,000 64-bit codes, made from real PHash codes of the photos' views with 8 of
   their bits flipped at random per copy (real codes are skewed; this keeps that skew); queries are
   held-out real codes and indexed codes, 0 to 3 bits flipped. Ours (``IndexBinaryMultiHash``, exact up to 5
   bits, the detector's hash path) against faiss's exhaustive ``IndexBinaryFlat``, both answering
   the same radius query, results compared.

    .venv/bin/python benchmarks/dedup_speed.py [--eval 200] [--pool 2000] [--codes 1000000]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path

import numpy as np


def make_shards(folder: Path, cases, per_shard: int = 500) -> list[str]:
    from pipeline import shards

    paths = []
    for start in range(0, len(cases), per_shard):
        shard = start // per_shard
        samples = [shards.Sample(key=f"{shard:05d}{i:04d}", url=f"https://example.com/{start + i}.jpg",
                                 caption=case.transform, status="success", image=case.data)
                   for i, case in enumerate(cases[start:start + per_shard])]
        shards.write_shard(str(folder), shard, samples, "jpg")
        paths.append(str(folder / f"{shard:05d}.tar"))
    return paths


def bench_audit(args, data) -> None:
    import cv2
    from PIL import Image

    from dedup import audit, quality
    from dedup.detect import DetectConfig, Detector
    from imagededup.methods import PHash

    cv2.setNumThreads(1)
    eval_photos, distractors = quality.photo_sets(data, args.eval)
    names = quality.transform_names(12)
    cases = quality.build_cases(eval_photos, distractors, max(1, args.pool // (2 * len(names))), names)
    cases = (cases * (args.pool // len(cases) + 1))[:args.pool]
    detector = Detector([quality.index_photos("eval", eval_photos)], DetectConfig())
    print(f"index: {len(eval_photos)} photos, {len(detector.keypoints):,} descriptors, "
          f"{len(detector.hash_items):,} hash views")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_shards(Path(tmp), cases)
        started = time.perf_counter()
        counted = flagged = 0
        for path in paths:
            result, _, duplicates = audit.audit_shard(path, detector)
            counted += result["samples"]
            flagged += len(duplicates)
        ours = counted / (time.perf_counter() - started)
        hasher = PHash(verbose=False)
        started = time.perf_counter()
        from dedup import samples

        for path in paths:
            for sample in samples.read_tar(path):
                with Image.open(io.BytesIO(sample.image()[1])) as image:
                    hasher.encode_image(image_array=np.asarray(image.convert("RGB")))
        anchor = counted / (time.perf_counter() - started)
    print(f"audit: {counted} pool images, {flagged} flagged: {ours:.0f} images/s/core (goal 200); "
          f"imagededup PHash encoding alone {anchor:.0f} images/s/core; ratio {ours / anchor:.2f}")


def bench_search(args, data) -> None:
    import faiss

    from dedup import features, quality

    faiss.omp_set_num_threads(1)
    config = features.FeatureConfig()
    _, photos = quality.photo_sets(data, 0)
    real = []
    for photo in photos[:300]:
        grey = features.decode_grey(photo.read_bytes())
        real.append(features.eval_hashes(grey, config))
    real = np.concatenate(real)
    rng = np.random.default_rng(0)
    held_out, base = real[:2000], real[2000:]
    bits = np.unpackbits(base[rng.integers(0, len(base), args.codes)], axis=1)
    flips = rng.random(bits.shape).argsort(axis=1)[:, :8]
    np.put_along_axis(bits, flips, 1 - np.take_along_axis(bits, flips, axis=1), axis=1)
    codes = np.ascontiguousarray(np.packbits(bits, axis=1))
    # half the queries are unseen codes, half are indexed codes: both paths of a real search
    qbits = np.unpackbits(np.concatenate([held_out[:1000], codes[rng.integers(0, len(codes), 1000)]]), axis=1)
    for row, count in enumerate(rng.integers(0, 4, len(qbits))):
        qbits[row, rng.choice(64, count, replace=False)] ^= 1
    queries = np.ascontiguousarray(np.packbits(qbits, axis=1))
    ours = faiss.IndexBinaryMultiHash(64, 2, 32)
    ours.nflip = 2
    ours.add(codes)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(codes)
    radius = 5  # hash_threshold 4 -> distance < 5
    started = time.perf_counter()
    lims_ours, _, ids_ours = ours.range_search(queries, radius)
    ours_qps = len(queries) / (time.perf_counter() - started)
    subset = queries[:200]
    started = time.perf_counter()
    lims_flat, _, ids_flat = flat.range_search(subset, radius)
    flat_qps = len(subset) / (time.perf_counter() - started)
    same = all(set(ids_ours[lims_ours[i]:lims_ours[i + 1]]) == set(ids_flat[lims_flat[i]:lims_flat[i + 1]])
               for i in range(len(subset)))
    print(f"search: {len(codes):,} codes, radius 4 bits: multi-index {ours_qps:,.0f} queries/s/core (goal 10,000); "
          f"exhaustive {flat_qps:,.0f} queries/s/core; ratio {ours_qps / flat_qps:.0f}x; same results: {same}; "
          f"{lims_ours[-1] / len(queries):.1f} hits per query")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--codes", type=int, default=1_000_000)
    args = parser.parse_args()
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    random.seed(0)
    bench_search(args, data)
    bench_audit(args, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
