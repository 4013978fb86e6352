"""Zero-shot evaluation on real CIFAR-10 test images, end to end through `wit eval zeroshot`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_model, save_model
from trainer.config import MODELS
from trainer.models import CLIP
from trainer.tokenizer import Tokenizer
from trainer.zeroshot import accuracy, image_features, load_images, load_labels, load_task_list


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """30 real test images per CIFAR-10 class, with the shared class names and templates."""
    from tests.conftest import require_shared_data

    data = require_shared_data()
    folder = data / "images/eval/cifar10_test_jpg"
    with open(folder / "labels.tsv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t")]
    picked = [r for r in rows if int(r["file"].rsplit("_", 1)[1].split(".")[0]) < 30]
    labels = tmp_path_factory.mktemp("cifar") / "labels.tsv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["file", "label"])
        writer.writerows([(r["file"], r["label"]) for r in picked])
    meta = data / "eval_meta/zeroshot"
    return folder, labels, meta / "labels.json", meta / "templates.json", data


@pytest.fixture(scope="module")
def model_folder(cifar, tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_clip_bpe(cifar[4] / "misc/clip_bpe/bpe_simple_vocab_16e6.txt.gz")
    return save_model(tmp_path_factory.mktemp("model"), CLIP(MODELS["wit-tiny-32"]), tokenizer)


def test_untrained_model_is_at_chance(cifar, model_folder, tmp_path):
    images, labels, classnames, templates, _ = cifar
    out = tmp_path / "result.json"
    result = subprocess.run([str(Path(sys.executable).with_name("wit")), "eval", "zeroshot", "--checkpoint",
                             str(model_folder), "--images", str(images), "--labels", str(labels), "--classnames",
                             str(classnames), "--templates", str(templates), "--task", "CIFAR10", "--out", str(out)],
                            capture_output=True, text=True, env={**os.environ, "WIT_QUIET": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 300 and report["chance"] == 0.1 and report["templates"] == 18
    assert 0.0 <= report["top1"] <= 0.25  # an untrained model guesses
    assert set(report["per_class"]) == set(json.loads(classnames.read_text())["CIFAR10"])
    assert "top-1" in result.stdout and "chance 0.100" in result.stdout


def test_classifier_from_the_images_themselves_is_perfect(cifar, model_folder):
    """The evaluation code, not the model: class c's weight is image c's own embedding."""
    images_dir, labels_path, classnames_path, _, _ = cifar
    model, _ = load_model(model_folder)
    classnames = load_task_list(classnames_path, "CIFAR10", "class names")
    rows = load_labels(labels_path, classnames)[:40]
    images = load_images(images_dir, rows, 32)
    features = image_features(model, images)
    result = accuracy(features, features.T.clone(), torch.arange(len(rows)), [f"image {i}" for i in range(len(rows))])
    assert result["top1"] == 1.0 and result["top5"] == 1.0


def test_bad_inputs_are_clear(cifar, tmp_path):
    _, _, classnames, _, _ = cifar
    with pytest.raises(ValueError, match="pass --task"):
        load_task_list(classnames, None, "class names")
    bad = tmp_path / "labels.tsv"
    bad.write_text("name\tclass\nx.jpg\t1\n")
    with pytest.raises(ValueError, match="'file' and 'label'"):
        load_labels(bad, ["a", "b"])
    bad.write_text("file\tlabel\nx.jpg\tzebra\n")
    with pytest.raises(ValueError, match="neither a class name nor an index"):
        load_labels(bad, ["a", "b"])
    with pytest.raises(FileNotFoundError, match="holds no model"):
        load_model(tmp_path)


def test_linear_probe_logic_on_separable_features():
    import numpy as np

    from trainer.probe import linear_probe, split_indices

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    features = rng.normal(size=(200, 16)) + 4 * np.eye(16)[labels]
    train, test = split_indices(labels, 0.3, seed=0)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 200
    assert all((labels[test] == c).sum() == 15 for c in range(4))  # stratified
    result = linear_probe(features, labels)
    assert result["test_accuracy"] > 0.9 and result["test"] == 60
    noise = linear_probe(rng.normal(size=(200, 16)), labels)
    assert noise["test_accuracy"] < 0.5  # nothing to learn: near chance (0.25)


def test_recall_at_k():
    from trainer.probe import recall_at_k

    images = torch.eye(4)
    texts = torch.eye(4).repeat_interleave(2, dim=0)  # two captions per image
    result = recall_at_k(images, texts, [0, 0, 1, 1, 2, 2, 3, 3], ks=(1,))
    assert result == {"image_to_text_R@1": 1.0, "text_to_image_R@1": 1.0}
    shuffled = recall_at_k(images, texts, [1, 1, 2, 2, 3, 3, 0, 0], ks=(1,))
    assert shuffled["image_to_text_R@1"] == 0.0


def test_probe_and_retrieval_commands_on_real_data(cifar, model_folder, tmp_path):
    images, labels, classnames, _, data = cifar
    wit = str(Path(sys.executable).with_name("wit"))
    env = {**os.environ, "WIT_QUIET": "1"}
    out = tmp_path / "probe.json"
    result = subprocess.run([wit, "eval", "linear-probe", "--checkpoint", str(model_folder), "--images", str(images),
                             "--labels", str(labels), "--classnames", str(classnames), "--task", "CIFAR10",
                             "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    probe = json.loads(out.read_text())
    assert probe["train"] + probe["test"] == 300 and 0.0 <= probe["test_accuracy"] <= 1.0
    coco = data / "images/eval/coco_val2017_mini"
    out = tmp_path / "retrieval.json"
    result = subprocess.run([wit, "eval", "retrieval", "--checkpoint", str(model_folder), "--images", str(coco),
                             "--captions", str(coco / "captions.tsv"), "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    recall = json.loads(out.read_text())
    assert recall["images"] == 79 and recall["captions"] == 395
    assert recall["image_to_text_R@1"] <= recall["image_to_text_R@5"] <= recall["image_to_text_R@10"]
