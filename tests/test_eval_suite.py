"""`wit eval suite` end to end: a tiny CLIP trained here on the tests' own images scores above
chance; the suite resumes after a kill without recomputing finished tasks; the robustness path;
the report opens in headless Chromium; the audit's checkpoint evaluation runs through the suite's
code path."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from trainer.evaluation.export_wds import write_split

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40),
           "purple": (140, 40, 170), "white": (240, 240, 240)}
NAMES = list(COLOURS)
WIT = str(Path(sys.executable).with_name("wit"))


def colour_image(name: str, rng: np.random.Generator, noise: float = 40.0, dim: float = 1.0) -> Image.Image:
    """A 32 px patch of a colour with pixel noise (``dim`` < 1 darkens it: the shifted variant)."""
    pixels = np.array(COLOURS[name], dtype=float) * dim + rng.normal(0, noise, size=(32, 32, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def train_tiny(folder: Path, steps: int = 40) -> Path:
    """A wit-tiny-32 CLIP taught 'a photo of a {colour}.' for a few seconds on CPU."""
    from trainer.checkpoint import save_model
    from trainer.config import MODELS
    from trainer.loss import ClipLoss
    from trainer.models import CLIP
    from trainer.steps import load_tokenizer
    from trainer.zeroshot import eval_transform

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tokenizer = load_tokenizer(None)  # CLIP's merges, as shipped in the package
    model = CLIP(MODELS["wit-tiny-32"])
    transform = eval_transform(32)
    model.text.token_embedding.weight.requires_grad_(False)  # 6 of its 8M weights: Adam's time, not needed
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.1)
    loss_fn = ClipLoss()
    tokens = tokenizer([f"a photo of a {name}." for name in NAMES])
    for _ in range(steps):  # a batch holds each colour once: no duplicate captions
        images = torch.stack([transform(colour_image(name, rng)) for name in NAMES])
        image, text, scale = model(images, tokens)
        loss = loss_fn(image, text, scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_model(folder, model.eval(), tokenizer)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tiny") / "model")


def build_sets(root: Path, per_class: int = 20) -> None:
    rng = np.random.default_rng(1)
    for name, dim in (("colours", 1.0), ("colours-dim", 0.6)):
        for split, count in (("test", per_class), ("train", per_class)):
            samples = [(f"{c}_{split}_{i:03d}", jpeg(colour_image(c, rng, dim=dim)), index)
                       for index, c in enumerate(NAMES) for i in range(count)]
            rng.shuffle(samples)
            write_split(root / name, split, samples, classnames=NAMES, templates=["a photo of a {c}.", "a {c} patch."],
                        per_shard=40)


def task_file(path: Path, data: Path, seeds: int = 2) -> Path:
    path.write_text(yaml.safe_dump({
        "robustness_fit": {"slope": 1.0, "intercept": -0.5, "source": "test fixture"},
        "tasks": [{"name": "colours", "path": str(data / "colours"), "train_split": "train"},
                  {"name": "colours-dim", "path": str(data / "colours-dim"), "shift_of": "colours", "probes": []}]}))
    return path


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([WIT, "eval", "suite", *args], capture_output=True, text=True,
                          env={**os.environ, "WIT_QUIET": "1"}, timeout=600, **kwargs)


def test_trained_model_beats_chance_and_the_report_opens(trained, tmp_path):
    build_sets(tmp_path / "data")
    tasks = task_file(tmp_path / "tasks.yaml", tmp_path / "data")
    done = run(["--checkpoint", str(trained), "--tasks", str(tasks), "--out", str(tmp_path / "out"), "--seeds", "2"])
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    colours = next(r for r in results["tasks"] if r["task"] == "colours")
    assert colours["classes"] == 6 and colours["templates"] == 2 and colours["data"]["n"] == 120
    assert colours["value"] > 2 * (1 / 6), colours["scores"]  # well above chance
    assert colours["linear_probe"]["value"] > 2 * (1 / 6) and set(colours["few_shot"]) == {"1", "2", "4", "8", "16"}
    rows = {(r["task"], r["evaluation"], r["metric"]) for r in results["rows"]}
    assert {("colours", "zero_shot", "top1"), ("colours", "zero_shot", "mean_per_class"),
            ("colours", "linear_probe", "top1"), ("colours", "few_shot_16", "top1")} <= rows
    robust = results["robustness"]
    assert robust["shifts"] == {"colours-dim": pytest.approx(results["tasks"][1]["value"])}
    assert robust["effective_robustness"] == pytest.approx(robust["average"] - robust["expected_average"])
    assert results["model"]["id"] and results["data"]["colours"]["fingerprint"]
    assert "colours: zero_shot top1" in done.stdout

    from tests.conftest import require_chromium
    from wit.testing import browser

    require_chromium()
    dom = browser.dump_dom(tmp_path / "out" / "report.html")
    for marker in ("id=\"results\"", "id=\"zs-vs-lp\"", "id=\"few-shot\"", "id=\"robustness\"", "id=\"fit-line\"",
                   "effective robustness"):
        assert marker in dom, marker
    assert dom.count("<tr>") == 3  # header + two tasks
    assert "colours top1: " in dom.split("data-visible-figures=", 1)[1].split(">", 1)[0]  # key figures shown


def test_the_suite_resumes_after_a_kill_without_recomputing_finished_tasks(trained, tmp_path):
    build_sets(tmp_path / "data", per_class=40)
    tasks = task_file(tmp_path / "tasks.yaml", tmp_path / "data")
    out = tmp_path / "out"
    args = ["--checkpoint", str(trained), "--tasks", str(tasks), "--out", str(out), "--seeds", "20"]
    process = subprocess.Popen([WIT, "eval", "suite", *args], env={**os.environ, "WIT_QUIET": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "tasks" / "colours.json"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists() and not (out / "tasks" / "colours-dim.json").exists()
    assert not (out / "results.json").exists()
    kept = first.read_text()
    stamp = first.stat().st_mtime_ns
    cached = sorted(p.name for p in (out / "features").glob("*.pt"))
    assert len(cached) == 2  # colours' test and train features

    done = run(args)
    assert done.returncode == 0, done.stderr
    assert first.read_text() == kept and first.stat().st_mtime_ns == stamp  # not recomputed
    results = json.loads((out / "results.json").read_text())
    assert [r["task"] for r in results["tasks"]] == ["colours", "colours-dim"]
    assert len(list((out / "features").glob("*.pt"))) == 3  # only the new task was encoded


def test_the_audit_items_come_from_the_suite_and_split_by_the_audits_hits(trained, tmp_path):
    """`wit eval audit-items` (the suite's code path) writes a model's per-image results on an
    index's labelled set; the audit splits them by its hits into All / Clean / Overlap."""
    from dedup import index as index_job
    from dedup import report
    from trainer.evaluation.audit import write_audit_items

    rng = np.random.default_rng(2)
    images = tmp_path / "eval"
    images.mkdir()
    rows = []
    for i, name in enumerate(NAMES * 4):
        (images / f"{i}.jpg").write_bytes(jpeg(colour_image(name, rng)))
        rows.append(f"{i}.jpg\t{name}\n")
    (tmp_path / "labels.tsv").write_text("file\tlabel\n" + "".join(rows))
    index_job.run(["--name", "colours", "--images", str(images), "--labels", str(tmp_path / "labels.tsv"),
                   "--out", str(tmp_path / "ix")])
    path = write_audit_items(str(tmp_path / "items.json"), [str(tmp_path / "ix")], str(trained))
    items = report.read_zero_shot_items(path)
    assert items["model"] == str(trained) and set(items["sets"]) == {"colours"}
    correct = items["sets"]["colours"]["correct"]
    assert len(correct) == 24 and items["sets"]["colours"]["classes"] == 6
    overlap = {eval_id for eval_id in sorted(correct)[:2]}
    result = report.zero_shot(items, [{"hits": {"colours": overlap}}])["colours"]
    assert (result["n_all"], result["n_overlap"], result["n_clean"], result["classes"]) == (24, 2, 22, 6)
    assert result["top1_all"] == pytest.approx(100 * sum(correct.values()) / 24, abs=0.01)
    assert result["top1_all"] > 2 * 100 / 6
    (tmp_path / "bad.json").write_text(json.dumps({"sets": {}}))
    with pytest.raises(ValueError, match="not a wit-audit-zero-shot/1 file"):
        report.read_zero_shot_items(str(tmp_path / "bad.json"))