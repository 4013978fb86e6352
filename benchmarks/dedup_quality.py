"""Near-duplicate detection quality on real photos: wit's detector beside imagededup's PHash.

The evaluation set is ``--eval`` photos of the ImageNet sample in ``../shared/data``; ``--copies``
of them are put through every transformation family of :mod:`dedup.transforms` alone and
``--pairs`` random pairs of families; every other photo (the rest of the ImageNet sample, the COCO
and ImageNet-val photos: 920 with the defaults) is a distractor put through a random
transformation too. All queries are stored as a crawl stores them (256 px, JPEG q90). Prints
recall per transformation and overall precision for both detectors, and the time per query.

    .venv/bin/python benchmarks/dedup_quality.py [--eval 200] [--copies 100] [--pairs 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

from dedup import quality
from dedup.detect import DetectConfig, Detector
from wit.testing.shared_data import shared_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-inliers", type=int, default=DetectConfig.min_inliers)
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
    started = time.perf_counter()
    detector = Detector([quality.index_photos("eval", eval_photos)], DetectConfig(min_inliers=args.min_inliers))
    print(f"index of {len(eval_photos)} photos in {time.perf_counter() - started:.0f}s")
    started = time.perf_counter()
    ours = quality.score_detector(detector, cases)
    ours["ms_per_query"] = round(1000 * (time.perf_counter() - started) / len(cases), 2)
    started = time.perf_counter()
    baseline = quality.score_phash_baseline(eval_photos, cases)
    baseline["ms_per_query"] = round(1000 * (time.perf_counter() - started) / len(cases), 2)
    print(f"\n{'transformation':22s} {'wit':>7s} {'PHash@10':>9s}")
    for name in ours["recall"]:
        print(f"{name:22s} {ours['recall'][name]:7.3f} {baseline['recall'][name]:9.3f}")
    for key in ("recall_overall", "recall_min", "precision", "false_flags", "distractors_flagged", "ms_per_query"):
        print(f"{key:22s} {ours[key]!s:>7s} {baseline[key]!s:>9s}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"wit": ours, "imagededup_phash": baseline, "args": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
