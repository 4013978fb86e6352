"""Dedup at scale on one core: index size, set-up time, audit throughput and memory per worker,
for indexes of 10,000 and 100,000 evaluation images, beside the previous detector.

1. **Indexes**: ``--sizes`` evaluation images made from the real photos of ``../shared/data``
   (the ImageNet sample) with random edits (a crop keeping 35-90% of the area anywhere, a rotation
   up to 15 degrees, a mirror one time in two), so no two index entries are the same picture;
   built once with the index job's own code and kept in ``--cache`` (a rerun reuses them). The
   quality benchmark (``dedup_quality.py``) stays the judge of quality; these indexes measure cost.
2. **Pool**: ``--pool`` images stored as a crawl stores them (256 px JPEG) in webdataset shards:
   half are copies of index entries under a random transformation family of
   :mod:`dedup.transforms`, half are distractors (COCO and ImageNet-val photos, never indexed,
   under a random family too).
3. **Worker**: a fresh process per index (as a Dataflow worker starts) maps the index and builds its
   detector (**set-up**, wall and CPU seconds), then runs :func:`dedup.audit.audit_shard` over the
   shards (tar read, JPEG decode, hashes, ORB, search, verification, thumbnails of matches):
   **images/s/core** end to end, job start excluded, counted in the process's CPU seconds (it
   runs one thread, so that is a core's rate even on a shared machine; wall-clock beside it);
   **peak RSS** of that process; copies found and distractors flagged.
4. **Baseline**: the previous detector (``--baseline-ref``, rebuilt from git in a temporary
   folder) and today's on the same ``--baseline-eval`` photos (the issue's 500) and the same pool.

5. **Same process** (``--against REF``): REF's detector and today's alternately, shard by shard,
   in one process over the same pool: their ratio, which a loaded machine's drift cannot bias.
6. **Index job memory** (``--index-memory``): the peak resident memory of the index job's last
   step (``store.assemble`` and ``store.save`` over every record on one worker) at each size, in
   a fresh process, with the records rebuilt from the cached index and real-size thumbnails.

    .venv/bin/python benchmarks/dedup_speed.py [--sizes 10000,100000] [--pool 2000] [--baseline-eval 500]
    .venv/bin/python benchmarks/dedup_speed.py --sizes 2000 --pool 400 --baseline-eval 50   # tiny
    .venv/bin/python benchmarks/dedup_speed.py --sizes 100000 --pool 0 --baseline-eval 0 --index-memory
    .venv/bin/python benchmarks/dedup_speed.py --sizes 100000 --baseline-eval 0 --against 6882e2f
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dedup_baseline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = 0


# -- evaluation images: real photos with random edits ------------------------------------------------
_BASES: list = []


def _load_bases(paths: list[str]) -> None:
    from PIL import Image

    global _BASES
    _BASES = []
    for path in paths:
        with Image.open(path) as image:
            image.draft("RGB", (320, 320))
            _BASES.append(image.convert("RGB"))


def edited(item: int):
    """Evaluation image ``item``: base photo ``item % len(bases)`` cropped, turned and maybe mirrored."""
    from PIL import Image, ImageOps

    rng = random.Random(f"{SEED}:{item}")
    image = _BASES[item % len(_BASES)]
    area, ratio = rng.uniform(0.35, 0.9), np.exp(rng.uniform(-0.3, 0.3))
    w, h = min(1.0, np.sqrt(area * ratio)), min(1.0, np.sqrt(area / ratio))
    cw, ch = max(16, round(image.width * w)), max(16, round(image.height * h))
    x, y = rng.randint(0, image.width - cw), rng.randint(0, image.height - ch)
    image = image.crop((x, y, x + cw, y + ch)).rotate(rng.uniform(-15, 15), Image.BICUBIC)
    return ImageOps.mirror(image) if rng.random() < 0.5 else image


def _describe(items: list[int]) -> list[dict]:
    import cv2

    from dedup import features

    cv2.setNumThreads(1)
    config = features.FeatureConfig()
    records = []
    for item in items:
        image = edited(item)
        grey = features.scaled(np.asarray(image.convert("L")), config.side)
        records.append({"eval_set": "synthetic", "eval_id": f"{item:07d}", "source": f"edit:{item}", "label": None,
                        "width": image.width, "height": image.height, "status": "ok", "error": None,
                        "thumbnail": None, "hashes": features.eval_hashes(grey, config),
                        "orb": features.eval_orb(grey, config)})
    return records


def build_index(size: int, bases: list[str], folder: Path, processes: int) -> Path:
    from dedup import features, store

    out = folder / f"index-{size}"
    if (out / "index.json").exists() and json.loads((out / "index.json").read_text()).get("format") == store.FORMAT:
        return out
    started = time.perf_counter()
    chunks = [list(range(start, min(size, start + 500))) for start in range(0, size, 500)]
    with get_context("fork").Pool(processes, initializer=_load_bases, initargs=(bases,)) as pool:
        records = [record for part in pool.imap(_describe, chunks) for record in part]
    described = time.perf_counter() - started
    index = store.assemble(f"synthetic-{size}", features.FeatureConfig(), records)
    store.save(index, str(out))
    print(f"index {size:,}: described in {described:.0f}s on {processes} processes, search structures "
          f"built in {time.perf_counter() - started - described:.0f}s", flush=True)
    return out


# -- the pool ---------------------------------------------------------------------------------------
def write_pool(folder: Path, count: int, targets, distractors: list[str], per_shard: int = 500) -> list[str]:
    """Shards of ``count`` images: copies (caption ``copy:EVAL_ID``) of ``targets`` ((eval_id,
    image) pairs) under random families, and distractor photos under random families."""
    from PIL import Image

    from dedup import quality, transforms
    from pipeline import shards

    rng = random.Random(SEED)
    names = quality.transform_names(12, SEED)
    cases = []
    for i in range(count):
        family = rng.choice(names)
        if i % 2 == 0:
            eval_id, image = targets[(i // 2) % len(targets)]
            caption = f"copy:{eval_id}"
        else:
            with Image.open(distractors[(i // 2) % len(distractors)]) as opened:
                image = opened.convert("RGB")
            caption = "distractor"
        cases.append((caption, quality.encode(transforms.apply(family, image, random.Random(f"{SEED}:{i}")))))
    paths = []
    for start in range(0, count, per_shard):
        shard = start // per_shard
        samples = [shards.Sample(key=f"{shard:05d}{i:04d}", url=f"https://example.com/{start + i}.jpg",
                                 caption=caption, status="success", image=data)
                   for i, (caption, data) in enumerate(cases[start:start + per_shard])]
        shards.write_shard(str(folder), shard, samples, "jpg")
        paths.append(str(folder / f"{shard:05d}.tar"))
    return paths


# -- one worker (a fresh process) -------------------------------------------------------------------
def memory() -> dict[str, int]:
    """MB from /proc/self/status: VmHWM (peak resident; getrusage's ru_maxrss would carry the
    parent's peak over exec), and now RssAnon (private) and RssFile (file pages: the mapped
    index, shared by every process of a machine through the page cache)."""
    found = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                found[key] = round(int(value.split()[0]) / 1024)
    return found


def worker(kind: str, index_dir: str, shard_paths: list[str], baseline_dir: str | None) -> dict:
    import cv2

    cv2.setNumThreads(1)
    if kind == "baseline":
        detect, _, store, audit = _dedup_baseline.modules(Path(baseline_dir))
    else:
        from dedup import audit, detect, store
    from core import shards
    import faiss

    faiss.omp_set_num_threads(1)
    rss_before = memory()["VmHWM"]
    started, cpu = time.perf_counter(), time.process_time()
    indexes = store.load_indexes([index_dir])
    detector = detect.Detector(indexes, detect.DetectConfig())
    setup, setup_cpu = time.perf_counter() - started, time.process_time() - cpu
    # the first image imports imagededup (and with it torch): once per process, whatever the index
    started = time.perf_counter()
    first = next(s for s in shards.read_tar(shard_paths[0]) if isinstance(s, shards.TarSample))
    detector.match(first.image()[1])
    first_match = time.perf_counter() - started
    counted = copies = found = elsewhere = distractors = flagged = 0
    started, cpu = time.perf_counter(), time.process_time()
    for path in shard_paths:
        result, read, duplicates = audit.audit_shard(path, detector)
        counted += result["samples"]
        hits = {(row["key"], row["eval_id"]) for row in result["overlaps"] if row["is_duplicate"]}
        for sample in read:
            caption = sample.get("txt").decode()
            if caption.startswith("copy:"):
                copies += 1
                found += (sample.key, caption[5:]) in hits
                elsewhere += sample.key in duplicates and (sample.key, caption[5:]) not in hits
            else:
                distractors += 1
                flagged += sample.key in duplicates
    # CPU seconds of this one-threaded process: what a core of its own gives, on a shared machine too
    seconds, wall = time.process_time() - cpu, time.perf_counter() - started
    items = len(detector.items)
    folder = Path(index_dir)
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".npy")
    return {"kind": kind, "items": items, "setup_s": round(setup, 3), "setup_cpu_s": round(setup_cpu, 3),
            "first_match_s": round(first_match, 2),
            "images": counted, "images_per_s": round(counted / seconds, 1), "wall_images_per_s": round(counted / wall, 1),
            "ms_per_image": round(1000 * seconds / counted, 2),
            **{f"{key}_mb": value for key, value in memory().items()}, "peak_before_index_mb": rss_before, "array_bytes_per_image": round(on_disk / items),
            "copies": copies, "copies_found": found, "copies_flagged_as_another_entry": elsewhere, "distractors": distractors, "distractors_flagged": flagged}


def against(index_dir: str, shard_paths: list[str], ref_dir: str, rounds: int = 2) -> dict:
    """Today's detector and an earlier commit's (written under ``ref_dir``) in one process,
    alternating shard by shard (and which goes first) over the same pool: a ratio that a loaded
    machine's drift cannot bias."""
    import cv2
    import faiss

    from core import shards
    from dedup import audit, detect, store

    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    old_detect, _, old_store, old_audit = _dedup_baseline.modules(Path(ref_dir))
    kinds = {"ref": (old_detect.Detector(old_store.load_indexes([index_dir]), old_detect.DetectConfig()), old_audit),
             "wit": (detect.Detector(store.load_indexes([index_dir]), detect.DetectConfig()), audit)}
    first = next(s for s in shards.read_tar(shard_paths[0]) if isinstance(s, shards.TarSample)).image()[1]
    for detector, _ in kinds.values():
        detector.match(first)  # imports, once per process
    cpu, images = {kind: 0.0 for kind in kinds}, {kind: 0 for kind in kinds}
    for round_ in range(rounds):
        for path in shard_paths:
            for kind in (list(kinds) if round_ % 2 == 0 else list(kinds)[::-1]):
                detector, module = kinds[kind]
                started = time.process_time()
                result = module.audit_shard(path, detector)[0]
                cpu[kind] += time.process_time() - started
                images[kind] += result["samples"]
    rates = {kind: round(images[kind] / cpu[kind], 1) for kind in kinds}
    return {"ref_images_per_s": rates["ref"], "wit_images_per_s": rates["wit"],
            "ratio": round(rates["wit"] / rates["ref"], 3), "images_each": images["wit"]}


def index_memory(index_dir: str) -> dict:
    """The index job's last step at this index's size: its records (as ``Collect`` holds them,
    thumbnails of a real photo's size) assembled and saved again; MB resident."""
    from dedup import features, store
    from dedup.index import thumbnail
    from wit.testing.shared_data import shared_data_dir

    source = store.load(index_dir)
    arrays = {name: np.asarray(array) for name, array in source.arrays.items()}
    keys, items = source.keys.to_pylist(), len(source)
    photo = sorted((shared_data_dir() / "images/photos/imagenet_sample").glob("*.JPEG"))[0]
    thumb = thumbnail(photo.read_bytes())
    before = memory()["VmHWM"]
    records = []
    for i in range(items):
        d0, d1 = arrays["item_descriptors"][i:i + 2]
        h0, h1 = arrays["item_hashes"][i:i + 2]
        records.append({**keys[i], "source": f"gs://bucket/eval/{keys[i]['eval_id']}.JPEG", "label": "n01440764",
                        "width": 500, "height": 375, "status": "ok", "error": None, "thumbnail": bytes(bytearray(thumb)),
                        "hashes": arrays["hashes"][h0:h1].copy(),
                        "orb": (arrays["keypoints"][d0:d1].astype(np.float32) + 0.5, arrays["descriptors"][d0:d1].copy())})
    del arrays, source
    held = memory()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        store.save(store.assemble("memory", features.FeatureConfig(), records), out)
    return {"items": items, "before_mb": before, "records_mb": held["RssAnon"], "seconds": round(time.perf_counter() - started),
            "peak_mb": memory()["VmHWM"], "thumbnail_bytes": len(thumb)}


def run_worker(kind: str, index_dir: Path, shard_paths: list[str], baseline_dir: Path | None) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--index", str(index_dir),
               "--baseline-dir", str(baseline_dir or ""), *shard_paths]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(row: dict, label: str) -> None:
    print(f"{label:28s} items {row['items']:>7,}  {row['array_bytes_per_image'] / 1000:6.1f} KB/image  set-up "
          f"{row['setup_s']:7.3f} s wall, {row['setup_cpu_s']:.3f} s CPU ({10_000 * row['setup_s'] / row['items']:.3f} s "
          f"per 10k; first image {row['first_match_s']} s)  audit {row['images_per_s']:6.1f} images/s/core (CPU time; "
          f"{row['wall_images_per_s']} wall)  peak RSS {row['VmHWM_mb']} MB (before the index {row['peak_before_index_mb']} MB; "
          f"at the end {row['RssAnon_mb']} MB private + {row['RssFile_mb']} MB file pages)  copies found "
          f"{row['copies_found']}/{row['copies']} (flagged as another entry instead: "
          f"{row.get('copies_flagged_as_another_entry', '-')})  distractors flagged "
          f"{row['distractors_flagged']}/{row['distractors']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--sizes", default="10000,100000", help="index sizes, comma-separated")
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--baseline-eval", type=int, default=500, help="photos in the old/new comparison; 0: skip")
    parser.add_argument("--baseline-ref", default=_dedup_baseline.BASELINE_REF)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "wit-dedup-bench"),
                        help="where built indexes are kept between runs")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="processes that build the indexes")
    parser.add_argument("--against", default=None, metavar="REF",
                        help="also time REF's detector (a git ref) and today's alternately in one process at each size")
    parser.add_argument("--index-memory", action="store_true",
                        help="also measure the index job's last step (one worker) at each size")
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--index", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("shards", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "against":
        print(json.dumps(against(args.index, args.shards, args.baseline_dir)))
        return 0
    if args.worker == "index-memory":
        print(json.dumps(index_memory(args.index)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.index, args.shards, args.baseline_dir or None)))
        return 0
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    from dedup import quality

    bases, distractors = quality.photo_sets(data, 1000, SEED)  # all of the ImageNet sample; COCO + val beside
    distractors = [str(p) for p in distractors]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.baseline_eval:
            from PIL import Image

            photos = bases[:args.baseline_eval]
            (tmp / "pool-small").mkdir()
            targets = [(p.name, Image.open(p).convert("RGB")) for p in photos]
            paths = write_pool(tmp / "pool-small", args.pool, targets, distractors)
            baseline_dir = _dedup_baseline.write(args.baseline_ref, tmp / "baseline")
            _, old_quality, old_store, _ = _dedup_baseline.modules(baseline_dir)
            from dedup import store

            started = time.perf_counter()
            old_store.save(old_quality.index_photos("eval", photos), str(tmp / "old-index"))
            old_build = time.perf_counter() - started
            started = time.perf_counter()
            store.save(quality.index_photos("eval", photos), str(tmp / "new-index"))
            new_build = time.perf_counter() - started
            print(f"{len(photos)} photos indexed: {args.baseline_ref} in {old_build:.0f}s, wit in {new_build:.0f}s")
            old = run_worker("baseline", tmp / "old-index", paths, baseline_dir)
            report(old, f"{args.baseline_ref} ({len(photos)})")
            new = run_worker("wit", tmp / "new-index", paths, None)
            report(new, f"wit ({len(photos)})")
            print(f"ratios wit / {args.baseline_ref}: bytes per image {new['array_bytes_per_image'] / old['array_bytes_per_image']:.3f}, "
                  f"set-up {new['setup_s'] / old['setup_s']:.4f}, audit rate {new['images_per_s'] / old['images_per_s']:.2f}, "
                  f"peak RSS {new['VmHWM_mb'] / old['VmHWM_mb']:.2f}", flush=True)
            results["baseline"] = {"old": old, "new": new, "old_build_s": old_build, "new_build_s": new_build}
        for size in [int(s) for s in args.sizes.split(",") if s]:
            index_dir = build_index(size, [str(p) for p in bases], cache, args.processes)
            _load_bases([str(p) for p in bases])
            chosen = random.Random(size).sample(range(size), min(size, args.pool // 2))
            (tmp / f"pool-{size}").mkdir()
            paths = write_pool(tmp / f"pool-{size}", args.pool, [(f"{i:07d}", edited(i)) for i in chosen], distractors)
            if args.pool:
                row = run_worker("wit", index_dir, paths, None)
                report(row, f"wit ({size:,})")
                results[str(size)] = row
            if args.against and args.pool:
                ref_dir = _dedup_baseline.write(args.against, tmp / f"ref-{size}")
                done = subprocess.run([sys.executable, __file__, "--worker", "against", "--index", str(index_dir),
                                       "--baseline-dir", str(ref_dir), *paths], check=True, capture_output=True,
                                      text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
                found = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"alternating in one process ({size:,}): {args.against} {found['ref_images_per_s']}, wit "
                      f"{found['wit_images_per_s']} images/s/core (CPU time, {found['images_each']:,} images each): "
                      f"ratio {found['ratio']}", flush=True)
                results[f"against_{size}"] = found
            if args.index_memory:
                done = subprocess.run([sys.executable, __file__, "--worker", "index-memory", "--index", str(index_dir)],
                                      check=True, capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
                found = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"index job, last step ({size:,} records): peak RSS {found['peak_mb']:,} MB (records "
                      f"{found['records_mb']:,} MB private, {found['thumbnail_bytes']} B thumbnails; process before them "
                      f"{found['before_mb']} MB), {found['seconds']} s", flush=True)
                results[f"index_memory_{size}"] = found
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
