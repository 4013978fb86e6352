"""Sample counts of shards from any tool (core.sizes): sizes.json, img2dataset's _stats.json, local
tar headers (cached), and a clear error for remote tars nobody counted; `wit train` trains on each
without --train-num-samples."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import sizes
from trainer import data as data_module
from trainer.train import main as train_main

REAL_SHARD = "webdataset/cc12m_torchtitan/cc12m-train-0000.tar"


def img2dataset_shards(urls: list[str], out: Path, per_shard: int) -> None:
    """Shards made by ``img2dataset.download()`` itself (in a child process: it installs a SIGINT
    handler and starts a logger process)."""
    table = out.parent / "urls.parquet"
    pq.write_table(pa.table({"url": urls, "caption": [f"a photo number {i}" for i in range(len(urls))]}), table)
    code = f"""
import img2dataset
img2dataset.download(url_list={str(table)!r}, input_format="parquet", url_col="url", caption_col="caption",
    output_format="webdataset", output_folder={str(out)!r}, processes_count=1, thread_count=4, image_size=32,
    resize_mode="center_crop", number_sample_per_shard={per_shard}, timeout=10, retries=0,
    disallowed_header_directives=[], enable_wandb=False)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def tar_samples(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len({name.split(".", 1)[0] for name in tar.getnames()})


def train(pattern: str, out: Path, steps: int = 2) -> list[dict]:
    assert train_main(["--train-data", pattern, "--steps", str(steps), "--batch-size", "4", "--workers", "0",
                       "--out", str(out), "--log-every", "1", "--shuffle-buffer", "8"]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def img2dataset_folder(tmp_path_factory, photos):
    """Four shards of ten from a loopback web, one url broken (so one shard holds nine)."""
    from wit.testing.fakeweb import FakeWeb

    root = tmp_path_factory.mktemp("i2d")
    with FakeWeb() as web:
        urls = [web.add(f"/p/{i}.jpg", photos[i], "image/jpeg") for i in range(39)] + [web.url("/missing.jpg")]
        img2dataset_shards(urls, root / "shards", per_shard=10)
    return root / "shards"


def test_img2dataset_output_counts_from_its_stats_files_and_trains(img2dataset_folder, tmp_path):
    tars = sorted(img2dataset_folder.glob("*.tar"))
    assert [t.name for t in tars] == [f"{i:05d}.tar" for i in range(4)]
    pattern = str(img2dataset_folder / "{00000..00003}.tar")
    counts, where = sizes.shard_counts([str(t) for t in tars])
    assert [counts[str(t)] for t in tars] == [tar_samples(t) for t in tars]
    assert sum(counts.values()) == 39 and set(where.values()) == {"_stats.json"}
    assert not (img2dataset_folder / sizes.CACHE).exists()  # nothing counted, nothing cached
    records = train(pattern, tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2] and records[-1]["total_steps"] == 2


def test_plain_local_tars_are_counted_from_headers_and_cached(img2dataset_folder, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for tar in sorted(img2dataset_folder.glob("*.tar")):  # the tars alone, no stats files
        (plain / tar.name).write_bytes(tar.read_bytes())
    pattern = str(plain / "{00000..00003}.tar")
    shards = data_module.resolve_shards([pattern])
    assert [s.samples for s in shards] == [tar_samples(plain / f"{i:05d}.tar") for i in range(4)]
    cache = json.loads((plain / sizes.CACHE).read_text())
    assert cache["00001.tar"]["samples"] == shards[1].samples and "__note__" in cache
    # a rewritten tar is counted again, not taken from the cache
    with tarfile.open(plain / "00000.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(plain / "00000.tar", "w") as tar:
        for member, data in members[:6]:  # the first two samples (jpg, json, txt each)
            tar.addfile(member, io.BytesIO(data))
    assert data_module.resolve_shards([pattern])[0].samples == 2
    config = data_module.DataConfig(data_module.resolve_shards([pattern]), 4, 32)
    assert config.total_samples == 2 + sum(s.samples for s in shards[1:])
    assert [r["step"] for r in train(str(plain / "*.tar"), tmp_path / "run")] == [1, 2]


def test_the_real_img2dataset_shard_counts_and_trains(shared_data, tmp_path):
    real = shared_data / REAL_SHARD
    folder = tmp_path / "shards"  # a writable folder holding a link: the shared folder stays untouched
    folder.mkdir()
    (folder / real.name).symlink_to(real)
    shards = data_module.resolve_shards([str(folder / real.name)])
    assert shards[0].samples == tar_samples(real) == 32
    assert json.loads((folder / sizes.CACHE).read_text())[real.name]["samples"] == 32
    records = train(str(folder / real.name), tmp_path / "run", steps=3)
    assert records[-1]["step"] == 3 and records[-1]["skipped"] == 0


def test_header_walk_counts_as_tarfile_does(img2dataset_folder, shared_data, tmp_path):
    tars = [*sorted(img2dataset_folder.glob("*.tar")), shared_data / REAL_SHARD]
    assert [sizes.count_tar(str(t)) for t in tars] == [sizes._count_with_tarfile(str(t)) for t in tars]
    # long names (pax and GNU headers), a directory and a link: the tarfile path takes over
    for form in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"long-{form}.tar"
        with tarfile.open(path, "w", format=form) as tar:
            for name in ("a" * 120 + "/000001.jpg", "a" * 120 + "/000001.txt", "b/000002.jpg"):
                info = tarfile.TarInfo(name)
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
            tar.addfile(_directory("c"))
        assert sizes.count_tar(str(path)) == 2
    gz = tmp_path / "zipped.tar"
    gz.write_bytes(gzip.compress((tmp_path / f"long-{tarfile.GNU_FORMAT}.tar").read_bytes()))
    assert sizes.count_tar(str(gz)) == 2  # not a plain tar: tarfile opens it


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_sample_key_follows_webdataset():
    assert sizes.sample_key("000123.jpg") == "000123"
    assert sizes.sample_key("a/b.c/000123.seg.png") == "a/b.c/000123"
    assert sizes.sample_key("README") is None


def test_sizes_json_and_success_marker_round_trip(tmp_path):
    path = sizes.write_sizes(str(tmp_path), {"00001.tar": 5, "00000.tar": 7})
    assert json.loads(Path(path).read_text()) == {"00000.tar": 7, "00001.tar": 5, "__total__": 12}
    assert sizes.read_sizes(str(tmp_path)) == {"00000.tar": 7, "00001.tar": 5}
    assert not sizes.is_complete(str(tmp_path))
    sizes.write_success(str(tmp_path))
    assert sizes.is_complete(str(tmp_path))
    (tmp_path / "sizes.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="sizes.json is not a sizes manifest"):
        sizes.read_sizes(str(tmp_path))


def test_remote_tars_need_a_manifest_or_stats_or_a_flag(img2dataset_folder, gcs_bucket):
    fs = fsspec.filesystem("gs")
    for tar in sorted(img2dataset_folder.glob("*.tar")):
        fs.pipe(f"{gcs_bucket}/plain/{tar.name}", tar.read_bytes())
    pattern = f"{gcs_bucket}/plain/{{00000..00003}}.tar"
    with pytest.raises(ValueError) as error:
        data_module.resolve_shards([pattern])
    message = str(error.value)
    assert "sizes.json" in message and "_stats.json" in message and "--train-num-samples" in message
    assert f"{gcs_bucket}/plain/00000.tar" in message
    assert [s.samples for s in data_module.resolve_shards([pattern], count=False)] == [None] * 4
    # img2dataset's stats files beside them
    for stats in sorted(img2dataset_folder.glob("*_stats.json")):
        fs.pipe(f"{gcs_bucket}/plain/{stats.name}", stats.read_bytes())
    expected = [tar_samples(t) for t in sorted(img2dataset_folder.glob("*.tar"))]
    assert [s.samples for s in data_module.resolve_shards([pattern])] == expected
    # a manifest wins over the stats files
    sizes.write_sizes(f"{gcs_bucket}/plain", {f"{i:05d}.tar": 3 for i in range(4)})
    assert [s.samples for s in data_module.resolve_shards([pattern])] == [3] * 4


def test_shard_sets_are_named_as_the_tools_around_write_them(img2dataset_folder, tmp_path):
    tars = sorted(str(p) for p in img2dataset_folder.glob("*.tar"))
    assert len(tars) >= 2
    assert sizes.list_shards([str(img2dataset_folder)]) == tars  # img2dataset's output folder
    assert sizes.list_shards([str(img2dataset_folder / "*.tar")]) == tars
    braces = str(img2dataset_folder / f"{{00000..{len(tars) - 1:05d}}}.tar")
    assert sizes.list_shards([braces]) == tars
    sizes.write_sizes(str(tmp_path), {"00001.tar": 3, "00000.tar": 2})
    assert sizes.list_shards([str(tmp_path / "sizes.json")]) == [f"{tmp_path}/00000.tar", f"{tmp_path}/00001.tar"]
    assert sizes.list_shards([tars[0], tars[0], tars[1]]) == tars[:2]  # named twice, read once
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        sizes.list_shards([str(tmp_path / "nothing-*.tar")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="a folder without .tar shards"):
        sizes.list_shards([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match="no such manifest"):
        sizes.list_shards([str(tmp_path / "empty" / "sizes.json")])


def test_the_dedup_audit_reads_an_img2dataset_folder_as_it_is(shared_data, tmp_path):
    """`wit dedup audit --shards FOLDER` on img2dataset's output: every sample audited."""
    from dedup import audit
    from dedup import index as index_job

    images = tmp_path / "eval"
    images.mkdir()
    for photo in sorted((shared_data / "images/photos/imagenet_sample").glob("*.JPEG"))[:3]:
        (images / photo.name).write_bytes(photo.read_bytes())
    index_job.run(["--name", "three", "--images", str(images), "--out", str(tmp_path / "ix")])
    audit.run(["--shards", str(shared_data / "webdataset/cc12m_torchtitan"), "--index", str(tmp_path / "ix"),
               "--out", str(tmp_path / "audit")])
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["pool"]["shards"] == 1 and report["pool"]["samples"] == 32
    assert report["pool"]["duplicates"] == 0 and report["pool"]["damaged_shards"] == 0
