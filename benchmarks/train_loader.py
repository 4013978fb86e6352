"""Training-loader throughput: shards streamed from the GCS emulator against local disk, and
wit's loader against OpenCLIP's webdataset pipeline on the same local shards.

Shards: the 1,000 ImageNet-sample photos of ``../shared/data`` stored as a crawl stores them
(256 px JPEG q95, 4 variants each: flips and crops, 4,000 samples in 8 shards of 500), captioned
with real web alt-texts (LAION's, ``captions/img2dataset/test_10000.parquet``: texts of the length
WIT's are, which the text tower's work depends on). Each loader delivers one epoch of batches of ``--batch-size`` images at
``--image-size`` px (decode, CLIP augmentation, normalisation, tokenisation) with ``--workers``
DataLoader workers, in one run, side by side:

- wit, local disk; wit, ``gs://`` on a local GCS emulator (gcsfs);
- OpenCLIP (``open_clip_train.data.get_wds_dataset`` with its own ``image_transform``), local disk
  (it reads ``gs://`` only through ``pipe:gsutil cat``, which has no emulator support).

    .venv/bin/python benchmarks/train_loader.py [--batch-size 64] [--image-size 224] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps


def make_shards(folder: Path, data: Path) -> None:
    from pipeline import shards

    import pandas as pd

    photos = sorted((data / "images/photos/imagenet_sample").glob("*.JPEG"))
    captions = pd.read_parquet(data / "captions/img2dataset/test_10000.parquet")["TEXT"].dropna().tolist()
    samples, shard, sizes = [], 0, {}

    def flush() -> None:
        nonlocal samples, shard
        shards.write_shard(str(folder), shard, samples, "jpg")
        sizes[f"{shard:05d}.tar"] = len(samples)
        samples, shard = [], shard + 1

    for variant in range(4):
        for photo in photos:
            with Image.open(photo) as image:
                image = image.convert("RGB")
                if variant % 2:
                    image = ImageOps.mirror(image)
                if variant >= 2:
                    w, h = image.size
                    image = image.crop((w // 10, h // 10, w - w // 10, h - h // 10))
                image.thumbnail((256, 256))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=95)
            caption = captions[(shard * 500 + len(samples)) % len(captions)]
            samples.append(shards.Sample(key=f"{shard:05d}{len(samples):04d}", url="", status="success",
                                         caption=caption, image=buffer.getvalue()))
            if len(samples) == 500:
                flush()
    from core.sizes import write_sizes

    write_sizes(str(folder), sizes)


def time_ours(pattern: str, args, tokenizer) -> float:
    from trainer import data as data_module

    config = data_module.DataConfig(data_module.resolve_shards([pattern]), args.batch_size, args.image_size,
                                    workers=args.workers, shuffle_buffer=1000)
    stream = data_module.ShardStream(config, tokenizer, 0, 1)
    started, count = time.perf_counter(), 0
    for batch in data_module.loader(stream):
        count += len(batch["images"])
    return count / (time.perf_counter() - started)


def time_openclip(pattern: str, args, total: int) -> float:
    import open_clip
    from open_clip_train.data import get_wds_dataset

    namespace = argparse.Namespace(train_data=pattern, val_data=None, dataset_resampled=False, train_num_samples=total,
                                   train_data_upsampling_factors=None, seed=0, workers=args.workers, world_size=1,
                                   batch_size=args.batch_size)
    preprocess = open_clip.image_transform(args.image_size, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    info = get_wds_dataset(namespace, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    started, count = time.perf_counter(), 0
    for images, _ in info.dataloader:
        count += len(images)
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import fsspec

    from trainer.steps import load_tokenizer
    from wit.testing.gcs import GCSEmulator
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    tokenizer = load_tokenizer(None)
    with tempfile.TemporaryDirectory() as tmp, GCSEmulator() as gcs:
        local = Path(tmp) / "shards"
        make_shards(local, data)
        bucket = gcs.create_bucket("wit-loader-bench")
        fs = fsspec.filesystem("gs")
        for path in sorted(local.iterdir()):
            if path.suffix in (".tar", ".json"):
                fs.pipe_file(f"{bucket}/shards/{path.name}", path.read_bytes())
        local_rate = time_ours(str(local / "{00000..00007}.tar"), args, tokenizer)
        gcs_rate = time_ours(f"{bucket}/shards/{{00000..00007}}.tar", args, tokenizer)
        openclip_rate = time_openclip(str(local / "{00000..00007}.tar"), args, 4000)
    print(f"{args.batch_size} x {args.image_size}px batches, {args.workers} workers, 4,000 samples (256 px JPEG):")
    print(f"  wit, local disk          {local_rate:7.1f} samples/s")
    print(f"  wit, gs:// (emulator)    {gcs_rate:7.1f} samples/s   ratio to local {gcs_rate / local_rate:.2f} (goal 0.9)")
    print(f"  OpenCLIP, local disk     {openclip_rate:7.1f} samples/s   wit/OpenCLIP {local_rate / openclip_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
