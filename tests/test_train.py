"""Training: streaming shards (local and the GCS emulator), real 2-process torchrun on gloo,
exact resume, damaged data, preemption."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
import torch

from tests.conftest import require_shared_data
from trainer import data as data_module
from trainer import state
from trainer.steps import learning_rate, parameter_groups

PHRASES = ["a photo of a {}", "a {} in the picture", "this is a {}", "an image showing a {}", "my {}"]


def make_shards(out: str, count: int, per_shard: int, start: int = 0) -> list[str]:
    """Webdataset shards of real CIFAR-10 photos with captions, and the crawl's sizes.json."""
    from core.sizes import write_sizes
    from pipeline import shards

    folder = require_shared_data() / "images/eval/cifar10_test_jpg"
    with open(folder / "labels.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))[start:start + count]
    sizes = {}
    for shard, first in enumerate(range(0, count, per_shard)):
        samples = [shards.Sample(key=f"{shard:05d}{i:04d}", url="https://example.com/x.jpg", status="success",
                                 caption=PHRASES[(first + i) % len(PHRASES)].format(row["label"]),
                                 image=(folder / row["file"]).read_bytes())
                   for i, row in enumerate(rows[first:first + per_shard])]
        shards.write_shard(out, shard, samples, "jpg")
        sizes[f"{shard:05d}.tar"] = len(samples)
    write_sizes(out, sizes)
    return [f"{out}/{name}" for name in sizes]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "trainer.train", *args]
    env = {**os.environ, "WIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def keys(out: Path, rank: int) -> list[list[str]]:
    return [json.loads(line)["keys"] for line in (out / f"keys-rank{rank}.jsonl").read_text().splitlines()]


COMMON = ["--batch-size", "8", "--workers", "2", "--shuffle-buffer", "40", "--log-every", "2", "--deterministic",
          "--log-keys", "--warmup", "3"]


def test_stop_and_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    """2 ranks x 2 workers, 400 samples: 25 batches per rank per epoch, 30 steps cross an epoch.
    Stopped after 7 steps, then after 13 more, then run to the end: same samples, same weights."""
    make_shards(str(tmp_path / "shards"), 400, 50)
    args = ["--train-data", str(tmp_path / "shards" / "sizes.json"), "--steps", "30", *COMMON]
    whole = torchrun([*args, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-3000:]
    for extra in (["--stop-after", "7"], ["--resume", "latest", "--stop-after", "13"], ["--resume", "latest"]):
        part = torchrun([*args, "--out", str(tmp_path / "parts"), *extra])
        assert part.returncode == 0, part.stderr[-3000:]
    assert [step for step, _ in state.list_checkpoints(str(tmp_path / "parts"))] == [7, 20, 30]
    for rank in (0, 1):
        assert keys(tmp_path / "whole", rank) == keys(tmp_path / "parts", rank)
        assert len(keys(tmp_path / "whole", rank)) == 30  # every rank the same number of batches
    # epoch 0: the ranks read disjoint shards
    assert set(sum(keys(tmp_path / "whole", 0)[:25], [])).isdisjoint(sum(keys(tmp_path / "whole", 1)[:25], []))
    a = torch.load(tmp_path / "whole" / "model" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(a[name], b[name]) for name in a)
    last = metrics(tmp_path / "whole")[-1]
    assert last["step"] == 30 and last["epoch"] == 1 and last["total_steps"] == 30
    # the resumed run's curve has each logged step once, as the uninterrupted one
    assert [m["step"] for m in metrics(tmp_path / "parts")] == [m["step"] for m in metrics(tmp_path / "whole")]
    # a fresh start into a folder that holds a run is refused, not mixed into it
    again = subprocess.run([sys.executable, "-m", "trainer.train", *args, "--out", str(tmp_path / "parts")],
                           env={**os.environ, "WIT_QUIET": "1"}, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already holds a run" in again.stderr and "--resume latest" in again.stderr
    assert {"loss", "lr", "logit_scale", "samples_per_s", "data_wait", "skipped"} <= set(last)
    assert (tmp_path / "whole" / "tensorboard").is_dir()


def test_two_ranks_stream_from_the_gcs_emulator(gcs_bucket, tmp_path):
    make_shards(f"{gcs_bucket}/shards", 160, 40)
    out = f"{gcs_bucket}/runs/one"
    done = torchrun(["--train-data", f"{gcs_bucket}/shards/{{00000..00003}}.tar", "--steps", "6", "--out", out,
                     "--batch-size", "8", "--workers", "2", "--log-every", "3", "--save-every", "3"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "tensorboard").exists()  # the events go to the bucket, not the working folder
    fs = fsspec.filesystem("gs")
    lines = fs.cat_file(f"{out}/metrics.jsonl").decode().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]
    assert [step for step, _ in state.list_checkpoints(out)] == [3, 6]
    assert fs.exists(f"{out}/model/model.pt") and fs.exists(f"{out}/model/config.json")
    assert any("tfevents" in path for path in fs.find(f"{out}/tensorboard"))


def test_corrupt_samples_and_a_truncated_shard_are_skipped_and_counted(tmp_path):
    from pipeline import shards

    paths = make_shards(str(tmp_path / "shards"), 120, 40)
    bad = [shards.Sample(key=f"00003{i:04d}", url="u", caption="a cat", status="success",
                         image=b"\xff\xd8 broken" if i % 2 else Path(paths[0]).read_bytes()[:600])
           for i in range(6)]
    shards.write_shard(str(tmp_path / "shards"), 3, bad, "jpg")
    data = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(data[:len(data) // 2])  # truncated mid-member
    out = tmp_path / "run"
    done = torchrun(["--train-data", str(tmp_path / "shards" / "{00000..00004}.tar"), "--train-num-samples", "160",
                     "--steps", "10", "--out", str(out), "--batch-size", "8", "--workers", "1", "--log-every", "5"],
                    nproc=1)
    assert done.returncode == 0, done.stderr[-3000:]
    last = metrics(out)[-1]
    assert last["skipped"] >= 6 and last["bad_shards"] >= 2  # the truncated tar, the missing 00004.tar
    assert last["step"] == 10


def test_fewer_shards_than_ranks_times_workers_resamples_instead_of_hanging(tmp_path):
    make_shards(str(tmp_path / "shards"), 64, 64)  # one shard; 2 ranks x 2 workers
    out = tmp_path / "run"
    done = torchrun(["--train-data", str(tmp_path / "shards" / "*.tar"), "--steps", "6", "--out", str(out), *COMMON],
                    timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(keys(out, 0)) == len(keys(out, 1)) == 6


def test_sigterm_checkpoints_at_a_step_boundary_and_exits_zero_then_resumes(tmp_path):
    make_shards(str(tmp_path / "shards"), 400, 50)
    out = tmp_path / "run"
    args = ["--train-data", str(tmp_path / "shards" / "sizes.json"), "--steps", "400", "--out", str(out),
            "--batch-size", "8", "--workers", "1", "--log-every", "1", "--save-every", "1000"]
    command = [sys.executable, "-m", "trainer.train", *args]
    process = subprocess.Popen(command, env={**os.environ, "WIT_QUIET": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or len(metrics(out)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:] if process.poll() else "timeout"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    saved = state.list_checkpoints(str(out))
    assert len(saved) == 1 and 3 <= saved[0][0] < 400
    assert not (out / "model").exists()  # preempted: no final export
    done = subprocess.run([*command, "--resume", "latest", "--steps", str(saved[0][0] + 2)],
                          env={**os.environ, "WIT_QUIET": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert metrics(out)[-1]["step"] == saved[0][0] + 2


def test_a_killed_checkpoint_writer_leaves_the_previous_one_loadable(tmp_path):
    out = str(tmp_path)
    for step in (4, 8):
        state.save_checkpoint(out, step, {"step": step}, keep=2)
    folder = tmp_path / "checkpoints"
    (folder / ".step_00000012.pt.tmp").write_bytes(b"half a checkpoint")  # what a killed write leaves
    assert [step for step, _ in state.list_checkpoints(out)] == [4, 8]
    assert state.load_checkpoint(state.resolve_resume(out, "latest"))["step"] == 8
    (folder / "step_00000016.pt").write_bytes((folder / "step_00000008.pt").read_bytes()[:20])  # damaged
    assert state.load_checkpoint(state.resolve_resume(out, "latest"))["step"] == 8
    state.save_checkpoint(out, 20, {"step": 20}, keep=2)
    assert [step for step, _ in state.list_checkpoints(out)] == [16, 20]


def test_shard_lists_from_braces_globs_and_manifests(tmp_path):
    paths = make_shards(str(tmp_path / "s"), 90, 30)
    by_manifest = data_module.resolve_shards([str(tmp_path / "s" / "sizes.json")])
    assert [s.path for s in by_manifest] == paths and [s.samples for s in by_manifest] == [30, 30, 30]
    by_brace = data_module.resolve_shards([str(tmp_path / "s" / "{00000..00002}.tar")])
    assert by_brace == by_manifest  # counts found in the manifest beside the shards
    assert data_module.resolve_shards([str(tmp_path / "s" / "*.tar")]) == by_manifest
    with pytest.raises(FileNotFoundError):
        data_module.resolve_shards([str(tmp_path / "none" / "*.tar")])
    (tmp_path / "s" / "sizes.json").unlink()  # then the crawl's per-shard _stats.json count them
    assert data_module.resolve_shards([str(tmp_path / "s" / "*.tar")]) == by_manifest
    config = data_module.DataConfig(data_module.resolve_shards([str(tmp_path / "s" / "*.tar")], count=False), 8, 32)
    with pytest.raises(ValueError, match="--train-num-samples"):
        config.total_samples


def test_gradient_accumulation_keeps_the_contrastive_batch_global():
    """Two micro-batches of 8 with cached features give the gradient of one batch of 16."""
    from trainer.loss import ClipLoss
    from trainer.models import create_model
    from trainer.steps import _nothing, train_step
    from trainer.train import TrainConfig

    torch.manual_seed(0)
    model = create_model("wit-tiny-32")
    images, tokens = torch.randn(16, 3, 32, 32), torch.randint(1, 400, (16, 77))
    loss_fn = ClipLoss()
    config = TrainConfig(train_data=[], out="", accum_freq=2)
    train_step(model, [{"images": images, "tokens": tokens}], loss_fn, _nothing, config)
    whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    halves = [{"images": images[:8], "tokens": tokens[:8]}, {"images": images[8:], "tokens": tokens[8:]}]
    train_step(model, halves, loss_fn, _nothing, config)
    for a, p in zip(whole, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["wit-tiny-32", "wit-rn-tiny-64"])
def test_weight_decay_on_every_weight_that_is_not_a_gain_or_a_bias(name):
    """The paper (section 2.5): decay on all weights that are not gains or biases. Embeddings are
    weights, and are decayed unless --exempt-embeddings; the temperature is never decayed."""
    from trainer.models import create_model

    model = create_model(name)
    modules = dict(model.named_modules())
    gains = {f"{m}.weight" for m, module in modules.items()
             if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))}
    biases = {n for n, _ in model.named_parameters() if n.endswith("bias")}
    names = {id(p): n for n, p in model.named_parameters()}
    plain, decay = parameter_groups(model, 0.2)
    assert plain["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    assert {names[id(p)] for p in plain["params"]} == gains | biases | {"logit_scale"}
    decayed = {names[id(p)] for p in decay["params"]}
    assert len(decayed) + len(plain["params"]) == len(names)
    embeddings = {n for n in names.values() if "embedding" in n}
    assert embeddings and embeddings <= decayed  # token and positional (and a ViT's class) embeddings
    assert "text.token_embedding.weight" in decayed and "text.positional_embedding" in decayed
    plain, decay = parameter_groups(model, 0.2, exempt_embeddings=True)
    assert {names[id(p)] for p in plain["params"]} == gains | biases | {"logit_scale"} | embeddings


def test_schedule():
    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.0)


def parse(argv: list[str]):
    import argparse

    from trainer.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(["--train-data", "x", "--out", "y", *argv]))


def test_recipe_clip_takes_the_papers_table_per_architecture_and_flags_override_it():
    resnet = parse(["--recipe", "clip", "--model", "RN50x16"])
    assert (resnet.lr, resnet.beta1, resnet.beta2, resnet.eps) == (4e-4, 0.9, 0.999, 1e-8)
    assert (resnet.weight_decay, resnet.warmup, resnet.epochs) == (0.2, 2000, 32)
    vit = parse(["--recipe", "clip", "--model", "ViT-L-14"])
    assert (vit.lr, vit.beta2, vit.eps, vit.warmup, vit.epochs) == (4e-4, 0.98, 1e-6, 2000, 32)
    assert parse(["--recipe", "clip", "--model", "RN50x64"]).lr == 3.6e-4
    assert parse(["--recipe", "clip", "--model", "wit-rn-tiny-64"]).beta2 == 0.999  # by family
    chosen = parse(["--recipe", "clip", "--model", "RN50", "--lr", "1e-3", "--beta2", "0.98", "--epochs", "2"])
    assert (chosen.lr, chosen.beta2, chosen.epochs, chosen.eps, chosen.warmup) == (1e-3, 0.98, 2, 1e-8, 2000)
    plain = parse([])  # no recipe: the trainer's own defaults
    assert (plain.lr, plain.beta2, plain.eps, plain.warmup, plain.epochs) == (5e-4, 0.98, 1e-6, 100, 1)


def test_recipe_is_printed_at_start_up(tmp_path):
    make_shards(str(tmp_path / "shards"), 16, 16)
    done = subprocess.run([sys.executable, "-m", "trainer.train", "--train-data", str(tmp_path / "shards/sizes.json"),
                           "--out", str(tmp_path / "run"), "--recipe", "clip", "--model", "wit-rn-tiny-64",
                           "--steps", "1", "--batch-size", "8", "--workers", "0", "--lr", "1e-3"],
                          env={**os.environ, "WIT_QUIET": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout
    assert "recipe clip for wit-rn-tiny-64" in lines and "global batch 32,768 in the paper, 8 in this run" in lines
    assert "beta2         0.999" in lines and "eps           1e-08" in lines and "warmup        2000" in lines
    assert "lr            0.001  (preset 0.0005, overridden)" in lines


def test_a_precision_the_cpu_would_emulate_is_named_from_its_flags():
    """bf16/fp16 autocast on a CPU without AVX-512 or AMX runs emulated (a ViT-B/32 bf16 step at
    batch 4 took 74 s on a 2-core AVX2 machine): the trainer says so, judged against the CPU's
    own flags."""
    from trainer.train import emulated_precision

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("the CPU's flags are read from /proc/cpuinfo (Linux)")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    cpu = torch.device("cpu")
    assert emulated_precision(cpu, "fp32") is None
    if not any(flag.startswith(("avx512", "amx")) for flag in flags):
        for precision in ("bf16", "fp16"):
            assert f"no native {precision}" in emulated_precision(cpu, precision)
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert emulated_precision(cpu, "bf16") is None


def test_fp16_with_a_grad_scaler_resumes_bitwise_with_the_scaler_state(tmp_path, caplog):
    """fp16 autocast with a gradient scaler (GPUs without bf16, as the paper trained): the scaler's
    state rides in every checkpoint, and stop-and-resume equals one uninterrupted run bitwise."""
    from trainer.train import emulated_precision, main

    make_shards(str(tmp_path / "shards"), 64, 32)
    args = ["--train-data", str(tmp_path / "shards" / "sizes.json"), "--steps", "6", "--batch-size", "8",
            "--workers", "0", "--deterministic", "--precision", "fp16", "--log-every", "1", "--warmup", "2",
            "--shuffle-buffer", "10"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    warned = [r.message for r in caplog.records if r.levelname == "WARNING" and "--precision fp16" in r.message]
    assert bool(warned) == (emulated_precision(torch.device("cpu"), "fp16") is not None)  # on this CPU
    assert main([*args, "--out", str(tmp_path / "parts"), "--stop-after", "3"]) == 0
    saved = state.load_checkpoint(state.list_checkpoints(str(tmp_path / "parts"))[0][1])
    assert saved["scaler"]["scale"] == 65536.0 and saved["scaler"]["_growth_tracker"] == 3
    assert main([*args, "--out", str(tmp_path / "parts"), "--resume", "latest"]) == 0
    a = torch.load(tmp_path / "whole" / "model" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(a[name], b[name]) for name in a)
    whole = metrics(tmp_path / "whole")
    assert [m["loss"] for m in whole] == [m["loss"] for m in metrics(tmp_path / "parts")]
    assert all(m["loss_scale"] == 65536.0 for m in whole)
    final = state.load_checkpoint(state.list_checkpoints(str(tmp_path / "parts"))[-1][1])
    assert final["scaler"]["_growth_tracker"] == 6  # carried across the resume, not restarted at 0


def test_list_models_prints_every_model():
    done = subprocess.run([sys.executable, "-m", "wit.cli", "train", "--list-models"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["ViT-B-32"].split()[0] == "151.3M" and lines["RN50"].split()[:2] == ["102.0M", "224px"]
    assert "wit-tiny-32" in lines
