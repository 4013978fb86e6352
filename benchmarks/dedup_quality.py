"""Near-duplicate detection quality on real photos: wit's detector beside the previous one
(``--baseline-ref``, rebuilt from git in a temporary folder) and imagededup's PHash, on the same
queries in the same run.

The evaluation set is ``--eval`` photos of the ImageNet sample in ``../shared/data``; ``--copies``
of them are put through every transformation family of :mod:`dedup.transforms` alone and
``--pairs`` random pairs of families; every other photo (the rest of the ImageNet sample, the COCO
and ImageNet-val photos: 920 with the defaults) is a distractor put through a random
transformation too. All queries are stored as a crawl stores them (256 px, JPEG q90). Prints
recall per transformation and overall precision for each detector, index bytes per evaluation
image, and the CPU time per query (decode included).

    .venv/bin/python benchmarks/dedup_quality.py [--eval 200] [--copies 100] [--pairs 12] [--json out.json]
    .venv/bin/python benchmarks/dedup_quality.py --eval 20 --copies 5 --pairs 2 --no-baseline   # tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dedup_baseline  # noqa: E402

from dedup import quality  # noqa: E402
from dedup.detect import DetectConfig, Detector  # noqa: E402
from wit.testing.shared_data import shared_data_dir  # noqa: E402


def timed_score(detector, cases) -> dict:
    started = time.process_time()  # CPU time: one thread, so a core's cost even on a shared machine
    result = quality.score_detector(detector, cases)
    result["ms_per_query"] = round(1000 * (time.process_time() - started) / len(cases), 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-inliers", type=int, default=DetectConfig.min_inliers)
    parser.add_argument("--baseline-ref", default=_dedup_baseline.BASELINE_REF,
                        help="git ref of the detector to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="skip the previous detector")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    import cv2

    cv2.setNumThreads(1)
    eval_photos, distractors = quality.photo_sets(data, args.eval, args.seed)
    names = quality.transform_names(args.pairs, args.seed)
    started = time.perf_counter()
    cases = quality.build_cases(eval_photos, distractors, args.copies, names, args.seed)
    print(f"{len(cases)} queries ({sum(c.target is not None for c in cases)} copies, "
          f"{sum(c.target is None for c in cases)} distractors) in {time.perf_counter() - started:.0f}s")
    results = {}
    started = time.perf_counter()
    index = quality.index_photos("eval", eval_photos)
    detector = Detector([index], DetectConfig(min_inliers=args.min_inliers))
    print(f"wit: index of {len(eval_photos)} photos in {time.perf_counter() - started:.0f}s, "
          f"{index.nbytes() / len(eval_photos) / 1000:.1f} KB per image")
    results["wit"] = timed_score(detector, cases)
    results["wit"]["index_bytes_per_image"] = round(index.nbytes() / len(eval_photos))
    if not args.no_baseline:
        with tempfile.TemporaryDirectory() as tmp:
            detect, old_quality, _, _ = _dedup_baseline.modules(_dedup_baseline.write(args.baseline_ref, Path(tmp)))
            started = time.perf_counter()
            old_index = old_quality.index_photos("eval", eval_photos)
            old = detect.Detector([old_index], detect.DetectConfig())
            old_bytes = sum(getattr(old_index, name).nbytes for name in ("hashes", "hash_items", "descriptors",
                                                                         "keypoints", "groups"))
            print(f"{args.baseline_ref}: index of {len(eval_photos)} photos and detector in "
                  f"{time.perf_counter() - started:.0f}s, {old_bytes / len(eval_photos) / 1000:.1f} KB per image")
            results[args.baseline_ref] = timed_score(old, cases)
            results[args.baseline_ref]["index_bytes_per_image"] = round(old_bytes / len(eval_photos))
    started = time.perf_counter()
    results["imagededup_phash"] = quality.score_phash_baseline(eval_photos, cases)
    results["imagededup_phash"]["ms_per_query"] = round(1000 * (time.perf_counter() - started) / len(cases), 2)
    columns = list(results)
    print(f"\n{'transformation':22s} " + " ".join(f"{name[:16]:>16s}" for name in columns))
    for name in results["wit"]["recall"]:
        print(f"{name:22s} " + " ".join(f"{results[c]['recall'][name]:16.3f}" for c in columns))
    for key in ("recall_overall", "recall_singles_min", "recall_min", "precision", "false_flags",
                "distractors_flagged", "ms_per_query", "index_bytes_per_image"):
        print(f"{key:22s} " + " ".join(f"{results[c].get(key, '')!s:>16s}" for c in columns))
    wit = results["wit"]
    met = wit["recall_overall"] >= 0.95 and wit["precision"] >= 0.99 and wit["recall_singles_min"] >= 0.85
    print(f"\ngoal (recall >= 0.95 at precision >= 0.99, no single family under 0.85): {'met' if met else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({**results, "args": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
