"""Models wherever a model is asked for (trainer.checkpoint.load_model): a model folder, a training
checkpoint file, a run folder (a stopped run as it stands), local or gs://; `wit train --init`."""

from __future__ import annotations

import fsspec
import pytest
import torch

from tests.test_train import make_shards
from trainer import state
from trainer.checkpoint import load_model
from trainer.train import main


def weights(model) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run and one stopped after 3 of 6 steps (checkpoints only, no model folder)."""
    root = tmp_path_factory.mktemp("runs")
    make_shards(str(root / "shards"), 48, 24)
    args = ["--train-data", str(root / "shards" / "sizes.json"), "--batch-size", "8", "--workers", "0",
            "--log-every", "1", "--shuffle-buffer", "8", "--steps", "6"]
    assert main([*args, "--out", str(root / "done")]) == 0
    assert main([*args, "--out", str(root / "stopped"), "--stop-after", "3"]) == 0
    return root


def test_a_stopped_run_is_a_model_by_folder_and_by_checkpoint(runs):
    stopped = runs / "stopped"
    assert not (stopped / "model").exists() and (stopped / "tokenizer" / "tokenizer.json").exists()
    (step, path), = state.list_checkpoints(str(stopped))
    assert step == 3
    by_run, tokenizer = load_model(stopped)
    by_file, _ = load_model(path)
    saved = state.load_checkpoint(path)["model"]
    assert same(weights(by_run), saved) and same(weights(by_file), saved)
    assert not by_run.training and tokenizer("a cat").shape == (1, 77)


def test_a_finished_run_its_model_folder_and_its_last_checkpoint_agree(runs):
    by_run, _ = load_model(runs / "done")
    by_folder, _ = load_model(runs / "done" / "model")
    assert same(weights(by_run), weights(by_folder))


def test_models_on_gcs(runs, gcs_bucket):
    fs = fsspec.filesystem("gs")
    fs.put(str(runs / "stopped"), f"{gcs_bucket}/stopped", recursive=True)
    fs.put(str(runs / "done" / "model"), f"{gcs_bucket}/model", recursive=True)
    local, _ = load_model(runs / "stopped")
    remote_run, _ = load_model(f"{gcs_bucket}/stopped")
    remote_file, _ = load_model(state.list_checkpoints(f"{gcs_bucket}/stopped")[-1][1])
    assert same(weights(remote_run), weights(local)) and same(weights(remote_file), weights(local))
    remote_folder, tokenizer = load_model(f"{gcs_bucket}/model")
    assert same(weights(remote_folder), weights(load_model(runs / "done" / "model")[0]))
    assert tokenizer.vocab_size == 49408


def test_what_is_not_a_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder, checkpoint file or run folder"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        load_model(tmp_path / "empty")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a wit training checkpoint"):
        load_model(tmp_path / "other.pt")


def test_train_init_starts_from_a_model(runs, tmp_path):
    start, _ = load_model(runs / "stopped")
    args = ["--train-data", str(runs / "shards" / "sizes.json"), "--batch-size", "8", "--workers", "0",
            "--log-every", "1", "--shuffle-buffer", "8", "--init", str(runs / "stopped"), "--model", "wit-small-64"]
    assert main([*args, "--steps", "1", "--out", str(tmp_path / "zero"), "--lr", "0"]) == 0
    # lr 0: the one step leaves the weights as they were (AdamW's decay is lr-scaled too)
    after, _ = load_model(tmp_path / "zero")
    assert after.config == start.config  # the architecture came with --init, not from --model
    assert same(weights(after), weights(start))
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "tuned")]) == 0
    tuned, _ = load_model(tmp_path / "tuned")
    assert tuned.config == start.config and not same(weights(tuned), weights(start))
