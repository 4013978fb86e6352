"""End-to-end training throughput: ``wit train`` against OpenCLIP's ``open_clip_train.main`` on
the same shards, model, per-rank batch, precision and schedule, 2 CPU processes each
(``torchrun --standalone --nproc_per_node 2``, gloo, one thread per process), one after the other
in one run.

Shards: benchmarks/train_loader.py's 4,000 real photos at 256 px with real web alt-texts. Both read them from local
disk with 1 DataLoader worker per rank, CLIP's loss with local loss and gathered gradients.
Reported: steady-state samples/s from each trainer's own log (the first logging window, start-up,
dropped) and whole-run wall time, with the ratios.

    .venv/bin/python benchmarks/train_e2e.py [--model wit-small-64] [--batch-size 32] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(command: list[str], cwd: Path | None = None) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WIT_QUIET": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:6]} failed:\n{done.stderr[-4000:]}")
    return wall, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default="wit-small-64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from train_loader import make_shards

    from trainer.config import get_config
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_shards(tmp / "shards", data)
        configs = tmp / "configs"
        configs.mkdir()
        (configs / f"{args.model}.json").write_text(json.dumps(get_config(args.model).to_json()))
        pattern = str(tmp / "shards" / "{00000..00007}.tar")
        common = dict(lr="5e-4", warmup="10", batch=str(args.batch_size), epochs=str(args.epochs))
        ours_wall, _ = run([*torchrun, "-m", "trainer.train", "--train-data", pattern, "--model", args.model,
                            "--batch-size", common["batch"], "--epochs", common["epochs"], "--lr", common["lr"],
                            "--warmup", common["warmup"], "--workers", "1", "--log-every", "10",
                            "--save-every", "1000000", "--precision", args.precision, "--out", str(tmp / "ours")])
        ours_rates = [json.loads(line)["samples_per_s"]
                      for line in (tmp / "ours" / "metrics.jsonl").read_text().splitlines()][1:]
        precision = {"fp32": "fp32", "bf16": "amp_bf16"}[args.precision]
        theirs_wall, log = run([*torchrun, str(HERE / "_openclip_main.py"), str(configs), "--train-data", pattern,
                                "--train-num-samples", "4000", "--dataset-type", "webdataset", "--model", args.model,
                                "--batch-size", common["batch"], "--epochs", common["epochs"], "--lr", common["lr"],
                                "--warmup", common["warmup"], "--workers", "1", "--precision", precision,
                                "--dist-backend", "gloo", "--local-loss", "--gather-with-grad", "--save-frequency", "0",
                                "--report-to", "", "--name", "bench",
                                "--log-every-n-steps", "10", "--seed", "0"], cwd=tmp)  # logs in tmp/logs
        theirs_rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s,", log)][1:]
    ours = sum(ours_rates) / len(ours_rates)
    theirs = sum(theirs_rates) / len(theirs_rates)
    print(f"{args.model}, 2 ranks x batch {args.batch_size}, {args.precision}, {args.epochs} epoch(s) of 4,000 samples:")
    print(f"  wit train              {ours:7.1f} samples/s steady, {ours_wall:6.1f} s wall")
    print(f"  open_clip_train.main   {theirs:7.1f} samples/s steady, {theirs_wall:6.1f} s wall")
    print(f"  ratio                  {ours / theirs:7.2f} steady, {theirs_wall / ours_wall:6.2f} wall (goal 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
