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
    images, _ = load_images(images_dir, rows, 32)
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
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_model(tmp_path)
