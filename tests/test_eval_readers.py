"""Evaluation-set readers on small sets the tests build (CLIP_benchmark's wds layout, image
folders, labels.tsv, COCO captions), local and on the GCS emulator; task files."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest

from trainer.evaluation.export_wds import write_split
from trainer.evaluation.readers import open_split
from trainer.evaluation.tasks import PAPER_27, PREDEFINED, ROBUSTNESS, Task, load_tasks, subset_indices


def _classification(root, photos, n=7, per_shard=3):
    samples = [(f"s{i:03d}", photos[i], i % 3) for i in range(n)]
    write_split(root, "test", samples, classnames=["cat", "dog", "fish"], templates=["a photo of a {c}."],
                per_shard=per_shard)
    return samples


def test_wds_classification_across_shards(tmp_path, photos):
    samples = _classification(tmp_path / "wds", photos)
    split = open_split("wds", str(tmp_path / "wds"), "test")
    assert (split.kind, split.classnames, split.templates) == ("classification", ["cat", "dog", "fish"],
                                                             ["a photo of a {c}."])
    read = list(split.samples())
    assert [(s.key, s.image, s.target) for s in read] == samples  # 3 shards, in order, bytes intact
    assert (tmp_path / "wds" / "test" / "nshards.txt").read_text().strip() == "3"
    assert split.fingerprint.count(".tar") == 3


def test_wds_from_the_gcs_emulator(tmp_path, photos, gcs_bucket):
    samples = _classification(tmp_path / "wds", photos, n=4, per_shard=2)
    fs = fsspec.filesystem("gs")
    fs.put(str(tmp_path / "wds"), f"{gcs_bucket}/sets/wds", recursive=True)
    split = open_split("wds", f"{gcs_bucket}/sets/wds", "test")
    assert split.classnames == ["cat", "dog", "fish"]
    assert [(s.key, s.image, s.target) for s in split.samples()] == samples


def test_wds_multilabel_and_retrieval(tmp_path, photos):
    labels = [np.array([1, 0, 1]), np.array([0, 1, 0])]
    write_split(tmp_path / "voc", "test", [(f"m{i}", photos[i], labels[i]) for i in range(2)], kind="multilabel",
                classnames=["a", "b", "c"])
    split = open_split("wds", str(tmp_path / "voc"), "test")
    assert split.kind == "multilabel"
    assert [s.target.tolist() for s in split.samples()] == [[1, 0, 1], [0, 1, 0]]
    captions = [["a dog on grass", "a brown dog"], ["a fish"]]
    write_split(tmp_path / "coco", "test", [(f"r{i}", photos[i], captions[i]) for i in range(2)], kind="retrieval")
    split = open_split("wds", str(tmp_path / "coco"), "test")
    assert split.kind == "retrieval" and [s.target for s in split.samples()] == captions


def test_missing_templates_file_is_a_clear_error_unless_the_task_names_them(tmp_path, photos):
    write_split(tmp_path / "wds", "test", [("a", photos[0], 0)], classnames=["cat"])  # no templates file
    split = open_split("wds", str(tmp_path / "wds"), "test")
    assert split.templates is None
    with pytest.raises(ValueError, match="zeroshot_classification_templates.txt is missing"):
        Task("mine", path=str(tmp_path / "wds")).resolved_templates(split.templates, split.source)
    assert len(Task("mine", templates="imagenet1k").resolved_templates(None)) == 80
    assert len(PREDEFINED["cifar10"].resolved_templates(None)) == 18  # the paper's CIFAR set


def test_damaged_and_missing_shards_name_the_file(tmp_path, photos):
    _classification(tmp_path / "wds", photos, n=4, per_shard=2)
    shard = tmp_path / "wds" / "test" / "1.tar"
    shard.write_bytes(shard.read_bytes()[:700])  # cut inside the first member's data
    split = open_split("wds", str(tmp_path / "wds"), "test")
    with pytest.raises(ValueError, match=r"1\.tar: damaged tar"):
        list(split.samples())
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r"1\.tar: missing"):
        open_split("wds", str(tmp_path / "wds"), "test")
    with pytest.raises(FileNotFoundError, match="train/nshards.txt: missing"):
        open_split("wds", str(tmp_path / "wds"), "train")
    (tmp_path / "wds" / "dataset_type.txt").write_text("segmentation\n")
    with pytest.raises(ValueError, match="dataset_type.txt: unknown type 'segmentation'"):
        open_split("wds", str(tmp_path / "wds"), "test")


def test_a_sample_without_its_target_is_named(tmp_path, photos):
    write_split(tmp_path / "wds", "test", [("a", photos[0], ["caption"])], kind="retrieval")
    (tmp_path / "wds" / "dataset_type.txt").unlink()  # now read as classification: no .cls
    with pytest.raises(ValueError, match=r"0\.tar: sample 'a' has no \.cls target"):
        list(open_split("wds", str(tmp_path / "wds"), "test").samples())


def test_image_folder_labels_tsv_and_coco_captions(tmp_path, photos):
    for i, name in enumerate(["b_class", "a_class", "b_class"]):
        (tmp_path / "folder" / "test" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / "test" / name / f"{i}.jpg").write_bytes(photos[i])
    split = open_split("folder", str(tmp_path / "folder"), "test")
    assert split.classnames == ["a class", "b class"]
    assert sorted((s.key, s.target) for s in split.samples()) == [("a_class/1.jpg", 0), ("b_class/0.jpg", 1),
                                                                  ("b_class/2.jpg", 1)]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(photos[i])
    (images / "labels.tsv").write_text("file\tlabel\n0.jpg\tdog\n1.jpg\tcat\n2.jpg\t1\n")
    split = open_split("labels_tsv", str(images), classnames=["cat", "dog"])
    assert [s.target for s in split.samples()] == [1, 0, 1]
    (images / "labels.tsv").write_text("file\tlabel\n0.jpg\tzebra\n")
    with pytest.raises(ValueError, match="'zebra' of 0.jpg is neither"):
        open_split("labels_tsv", str(images), classnames=["cat", "dog"])
    coco = {"images": [{"id": 7, "file_name": "0.jpg"}, {"id": 9, "file_name": "1.jpg"}],
            "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": 9, "caption": "two"},
                            {"image_id": 7, "caption": "three"}]}
    (images / "captions.json").write_text(json.dumps(coco))
    split = open_split("captions", str(images), captions="captions.json")
    assert [(s.key, s.target) for s in split.samples()] == [("0.jpg", ["one", "three"]), ("1.jpg", ["two"])]


def test_task_files_and_predefined_tasks(tmp_path):
    assert len(PAPER_27) == 27 and set(ROBUSTNESS) >= {"imagenetv2", "imagenet_sketch", "imagenet-a", "imagenet-r",
                                                      "objectnet"}
    assert PREDEFINED["fgvc_aircraft"].metric == "mean_per_class" and PREDEFINED["voc2007"].metric == "map_11point"
    assert PREDEFINED["hateful_memes"].metric == "roc_auc"
    assert len(subset_indices("imagenet-r")) == 200 and len(subset_indices("imagenet-a")) == 200
    tasks = load_tasks("cifar10,robustness", data_root="/data")
    assert tasks.tasks[0].path == "/data/wds_cifar10" and len(tasks.tasks) == 1 + len(ROBUSTNESS)
    spec = tmp_path / "tasks.yaml"
    spec.write_text("data_root: /d\nrobustness_fit: {slope: 1.0, intercept: -0.5}\ntasks:\n"
                    "  - cifar10\n  - {name: mine, reader: labels_tsv, path: /x, metric: mean_per_class}\n")
    loaded = load_tasks(str(spec))
    assert [t.path for t in loaded.tasks] == ["/d/wds_cifar10", "/x"] and loaded.robustness_fit["slope"] == 1.0
    spec.write_text("data_root: /d\nrobustness_fit: imagenet-z\ntasks:\n  - cifar10\n")
    with pytest.raises(ValueError, match="tasks.yaml: robustness_fit: 'imagenet-z' is not a shipped line"):
        load_tasks(str(spec))
    spec.write_text("tasks:\n  - {name: mine, path: /x, colour: red}\n")
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        load_tasks(str(spec))
    spec.write_text("tasks:\n  - {name: mine}\n")
    with pytest.raises(ValueError, match="'mine' is not predefined"):
        load_tasks(str(spec))
    with pytest.raises(ValueError, match="needs --data-root"):
        load_tasks("cifar10")
