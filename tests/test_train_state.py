"""The shard stream's own state (trainer.data.StreamState): stop, rebuild, resume, and the data
order goes on exactly as without the stop (torchtitan's stateful-loader test is the model); a
resume that cannot be exact is refused with a clear error."""

from __future__ import annotations

import json

import pytest

from tests.test_train import make_shards
from trainer import data as data_module
from trainer import state
from trainer.steps import load_tokenizer
from trainer.train import main


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream") / "shards"
    make_shards(str(folder), 96, 24)
    return folder


def stream_keys(config, tokenizer, state_: data_module.StreamState, count: int) -> list[list[str]]:
    """``count`` batches from where ``state_`` stands (crossing epochs), recording each in it."""
    out = []
    while len(out) < count:
        stream = data_module.ShardStream(config, tokenizer, 0, 1, state_)
        for batch in data_module.loader(stream):
            state_.record(batch["position"])
            out.append(batch["keys"])
            if len(out) == count:
                return out
        state_.next_epoch()
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_rebuild_resume_gives_the_same_data_order(shard_folder, workers):
    tokenizer = load_tokenizer(None)
    config = data_module.DataConfig(data_module.resolve_shards([str(shard_folder / "sizes.json")]), 8, 32,
                                    workers=workers, shuffle_buffer=16, seed=3)
    per_epoch = data_module.ShardStream(config, tokenizer, 0, 1).batches_per_epoch  # 12
    whole = stream_keys(config, tokenizer, data_module.StreamState.for_run(config, 1), per_epoch + 5)
    assert len(whole) == per_epoch + 5 and all(len(keys) == 8 for keys in whole)
    for stop in (1, 5, per_epoch, per_epoch + 2):
        first = data_module.StreamState.for_run(config, 1)
        head = stream_keys(config, tokenizer, first, stop)
        saved = json.loads(json.dumps(first.state_dict()))  # plain values only
        rebuilt = data_module.StreamState.for_run(config, 1)
        rebuilt.load_state_dict(saved)
        assert rebuilt == first
        tail = stream_keys(config, tokenizer, rebuilt, per_epoch + 5 - stop)
        assert head + tail == whole, f"stopped after {stop} batches"


def test_a_restore_checks_version_world_size_and_workers(shard_folder):
    config = data_module.DataConfig(data_module.resolve_shards([str(shard_folder / "sizes.json")]), 8, 32, workers=2)
    saved = data_module.StreamState.for_run(config, 2).state_dict()
    for world, workers, match in ((1, 2, "saved by 2 ranks, this run has 1"),
                                  (2, 1, "2 DataLoader worker.*this run has 1.*same --workers")):
        with pytest.raises(ValueError, match=match):
            data_module.StreamState(world=world, workers=workers).load_state_dict(saved)
    with pytest.raises(ValueError, match="version 99"):
        data_module.StreamState(world=2, workers=2).load_state_dict({**saved, "version": 99})
    # a wit-train/2 checkpoint's untyped position still resumes
    legacy = {"batches": 3, "workers": {"0": {"worker": 0, "batch": 2, "raw": 17, "skipped": 1, "bad_shards": 0},
                                        "1": {"worker": 1, "batch": 1, "raw": 8, "skipped": 0, "bad_shards": 1}}}
    restored = data_module.StreamState(world=2, workers=2)
    restored.load_state_dict(data_module.StreamState.legacy(legacy, 2, 2, epoch=4))
    assert (restored.epoch, restored.batches, restored.skipped, restored.bad_shards) == (4, 3, 1, 1)
    assert restored.positions[0] == data_module.WorkerPosition(batch=2, raw=17, skipped=1, bad_shards=0)


def test_a_run_resumed_with_other_workers_stops_with_the_reason(shard_folder, tmp_path, caplog):
    args = ["--train-data", str(shard_folder / "sizes.json"), "--steps", "4", "--batch-size", "8",
            "--out", str(tmp_path / "run"), "--log-every", "1", "--shuffle-buffer", "8"]
    assert main([*args, "--workers", "2", "--stop-after", "2"]) == 0
    saved = state.load_checkpoint(state.list_checkpoints(str(tmp_path / "run"))[-1][1])
    assert saved["format"] == state.FORMAT and saved["ranks"][0]["data"]["batches"] == 2
    assert set(saved["ranks"][0]["data"]["positions"]) == {"0", "1"}
    assert main([*args, "--workers", "1", "--resume", "latest"]) == 2
    assert "same --workers" in caplog.text
    assert main([*args, "--workers", "2", "--resume", "latest"]) == 0
