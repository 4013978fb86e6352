"""Checkpoints are read with a weights-only load: a file planted in a run's checkpoints folder is
refused with an error that names it, and nothing in it runs; what the trainer writes reads back."""

from __future__ import annotations

import io
import os
import pickle
import random
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_train import make_shards
from trainer import state


class RunsCode:
    """What an attacker plants: unpickling it runs a shell command (here: creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def plant(out: Path, step: int, marker: Path, kind: str) -> Path:
    """A file named like a checkpoint whose pickle runs code: a torch.save zip or a bare pickle."""
    path = out / "checkpoints" / f"step_{step:08d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": RunsCode(marker), "step": step, "world_size": 1}
    if kind == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def unrestricted_unpickle(path: Path) -> None:
    """What an unrestricted load does with the planted file (the pickle inside a torch.save zip)."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))
    pickle.loads(data)


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_resume_latest_refuses_a_planted_checkpoint_and_runs_nothing(tmp_path, kind):
    out, marker = tmp_path / "run", tmp_path / "ran"
    state.save_checkpoint(str(out), 4, {"step": 4}, keep=3)  # a genuine older checkpoint beside it
    path = plant(out, 8, marker, kind)
    with pytest.raises(ValueError, match="not a safe checkpoint") as refused:
        state.resolve_resume(str(out), "latest")
    assert str(path) in str(refused.value) and "nothing in it ran" in str(refused.value)
    if kind == "torch.save":
        assert "posix.system" in str(refused.value)  # what the pickle asked for, read without running it
    with pytest.raises(ValueError, match="not a safe checkpoint"):
        state.load_checkpoint(str(path))  # --resume PATH takes this road
    assert not marker.exists()
    unrestricted_unpickle(path)  # the refused file was a real threat: a plain unpickle runs its command
    assert marker.exists()


def test_the_trainer_writes_weights_only_checkpoints_and_refuses_a_planted_one(tmp_path):
    make_shards(str(tmp_path / "shards"), 64, 32)
    out, marker = tmp_path / "run", tmp_path / "ran"
    args = [sys.executable, "-m", "trainer.train", "--train-data", str(tmp_path / "shards" / "sizes.json"),
            "--out", str(out), "--batch-size", "8", "--workers", "2", "--save-every", "1", "--log-every", "1"]
    env = {**os.environ, "WIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*args, "--steps", "2", "--stop-after", "1"], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    [(step, written)] = state.list_checkpoints(str(out))
    payload = torch.load(written, map_location="cpu", weights_only=True)
    assert step == payload["step"] == 1 and payload["format"] == state.FORMAT == "wit-train/3"
    assert set(payload["ranks"][0]["rng"]) == {"torch", "python", "numpy"}
    assert payload["ranks"][0]["data"]["batches"] == 1 and payload["ranks"][0]["data"]["workers"] == 2

    planted = plant(out, 2, marker, "torch.save")
    refused = subprocess.run([*args, "--steps", "2", "--resume", "latest"], env=env, capture_output=True, text=True,
                             timeout=240)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert str(planted) in refused.stderr and "not a safe checkpoint" in refused.stderr
    assert not marker.exists() and not (out / "model").exists()


def test_rng_states_survive_a_weights_only_round_trip_exactly(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both generators
    state.save_checkpoint(str(tmp_path), 1, {"rng": state.rng_state()}, keep=1)
    expected = (torch.rand(4), random.random(), random.gauss(0, 1), np.random.standard_normal(3), np.random.rand())
    buffer = io.BytesIO((tmp_path / "checkpoints" / "step_00000001.pt").read_bytes())
    state.set_rng_state(torch.load(buffer, map_location="cpu", weights_only=True)["rng"])
    again = (torch.rand(4), random.random(), random.gauss(0, 1), np.random.standard_normal(3), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:3] == again[1:3]
    assert np.array_equal(expected[3], again[3]) and expected[4] == again[4]


def test_a_checkpoint_of_the_previous_format_is_refused_with_a_clear_error(tmp_path):
    """The previous trainer kept numpy's RNG state as a numpy array: not read, and the error says why."""
    out = tmp_path / "run"
    old = {"step": 5, "world_size": 1, "format": "wit-train/1",
           "ranks": [{"position": {"batches": 5, "workers": {}},
                      "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                              "numpy": np.random.get_state()}}]}
    (out / "checkpoints").mkdir(parents=True)
    torch.save(old, out / "checkpoints" / "step_00000005.pt")
    with pytest.raises(ValueError, match="previous format") as refused:
        state.resolve_resume(str(out), "latest")
    message = str(refused.value)
    assert "step_00000005.pt" in message and "wit-train/1" in message and "not a safe checkpoint" in message
