"""Distributed CLIP training that streams webdataset shards and resumes exactly.

    torchrun --nproc_per_node=N [--nnodes ...] -m trainer.train \\
        --train-data 'gs://BUCKET/shards/{00000..04095}.tar' [--train-data ...] --model ViT-B-32 \\
        --batch-size PER_RANK (--epochs E | --steps S) --out gs://BUCKET/runs/NAME [--resume latest] \\
        [--init MODEL_FOLDER|CHECKPOINT|RUN] \\
        [--recipe clip] [--max-minutes M] [--precision bf16|fp16] [--accum-freq K] [--grad-checkpointing] [--compile] \\
        [--text-chunk-tokens N]

``wit train ...`` is the same program in one process (or under torchrun). Data: :mod:`trainer.data`;
checkpoints: :mod:`trainer.state`. DDP over NCCL on GPUs and gloo on CPUs; CLIP's loss with
features gathered across ranks; AdamW with decay on every weight that is not a gain or a bias
(the paper's rule; ``--exempt-embeddings`` spares the embeddings too), the paper's settings per
architecture with ``--recipe clip``; linear warm-up then cosine; bf16 autocast, or fp16 with a
gradient scaler whose state is checkpointed; random square crops (``--crop-scale``, ``--letterbox``:
:mod:`trainer.data`); gradient clipping; gradient
accumulation that keeps the contrastive batch global (features of all micro-batches cached,
each re-computed with gradient in turn, as OpenCLIP's ``--accum-freq``); the text tower runs
captions in chunks of similar length cut to their longest (``--text-chunk-tokens``). SIGTERM (preemption),
``--max-minutes`` and ``--stop-after`` write a checkpoint at the next step boundary and exit 0.
Metrics: ``OUT/metrics.jsonl`` (one line per logged step) and TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.distributed as dist

from trainer import data as data_module
from trainer import state
from trainer.checkpoint import export_model
from trainer.recipe import PRESET_FIELDS, RECIPES, clip_preset, describe
from trainer.steps import Stopper, _nothing, build_model, learning_rate, load_tokenizer, parameter_groups
from trainer.steps import train_step as forward_backward
from core.storage import is_object_store, join, write_text_atomic

log = logging.getLogger(__name__)


PRECISIONS = ("fp32", "bf16", "fp16")
# Flags a --recipe preset may fill: their command-line default is None ("not given"), and a
# value given on the command line always wins over the preset.
OPTIMIZER_DEFAULTS = {"lr": 5e-4, "weight_decay": 0.2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "warmup": 100,
                      "epochs": 1}


@dataclass
class TrainConfig:
    train_data: list[str]
    out: str
    model: str = "wit-tiny-32"
    batch_size: int = 64
    epochs: int = 1
    steps: int | None = None
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup: int = 100
    grad_clip: float | None = 1.0
    accum_freq: int = 1
    precision: str = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    text_chunk_tokens: int | None = None
    workers: int = 2
    seed: int = 0
    shuffle_buffer: int = 1000
    augment: str = "clip"
    crop_scale: tuple[float, float] = (1.0, 1.0)
    letterbox: str = "trim"
    exempt_embeddings: bool = False
    recipe: str | None = None
    train_num_samples: int | None = None
    tokenizer: str | None = None
    init: str | None = None
    resume: str | None = None
    save_every: int = 1000
    keep: int = 3
    log_every: int = 10
    max_minutes: float | None = None
    stop_after: int | None = None
    deterministic: bool = False
    log_keys: bool = False
    zeroshot: dict | None = None
    zeroshot_every: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}")
        self.crop_scale = tuple(self.crop_scale)
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError("--crop-scale must be two numbers with 0 < MIN <= MAX <= 1")
        if self.accum_freq < 1 or self.batch_size < 1:
            raise ValueError("--batch-size and --accum-freq must be at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--train-data", action="append", required=True, metavar="PATTERN",
        help="shards: brace pattern, glob, path or a sizes.json manifest (local, gs://, s3://); repeatable")
    add("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, tensorboard/, model/")
    add("--model", default="wit-tiny-32", help="a model name (`wit train --list-models`) or a config JSON")
    add("--batch-size", type=int, default=64, help="per rank, per micro-batch")
    add("--epochs", type=int, default=None, help="default 1 (a --recipe preset may set it)")
    add("--steps", type=int, default=None, help="optimizer steps in all (overrides --epochs)")
    for flag, kind in (("--lr", float), ("--weight-decay", float), ("--beta1", float), ("--beta2", float),
                       ("--eps", float), ("--warmup", int)):
        name = flag[2:].replace("-", "_")
        add(flag, type=kind, default=None, help=f"default {OPTIMIZER_DEFAULTS[name]} (a --recipe preset may set it)")
    for flag, kind, default in (("--grad-clip", float, 1.0), ("--accum-freq", int, 1), ("--workers", int, 2),
                                ("--seed", int, 0), ("--shuffle-buffer", int, 1000),
                                ("--train-num-samples", int, None), ("--save-every", int, 1000), ("--keep", int, 3),
                                ("--log-every", int, 10), ("--max-minutes", float, None),
                                ("--stop-after", int, None), ("--zeroshot-every", int, 0)):
        add(flag, type=kind, default=default)
    add("--recipe", default=None, choices=RECIPES,
        help="clip: the paper's optimizer settings for --model (appendix F), printed at start; flags given "
             "on the command line override them")
    add("--precision", default="fp32", choices=PRECISIONS,
        help="bf16: autocast; fp16: autocast with a gradient scaler (GPUs without bf16, as the paper trained)")
    add("--exempt-embeddings", action="store_true",
        help="no weight decay on the token, positional and class embeddings either (default: the paper's rule, "
             "decay on every weight that is not a gain or a bias)")
    add("--augment", default="clip", choices=("clip", "strong"),
        help="clip: random square crop of the resized image (CLIP); strong: random resized crop and flip")
    add("--crop-scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
        help="clip augmentation: the square's area as a fraction of the largest square, drawn from [MIN, MAX] "
             "(default 1 1: CLIP's, the whole shorter side; OpenCLIP's scale range is 0.9 1.0)")
    add("--letterbox", default="trim", choices=("trim", "keep"),
        help="shards made with a border resize: trim crops inside the picture (found from the sample's .json), "
             "keep crops the padded square")
    add("--grad-checkpointing", action="store_true")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--text-chunk-tokens", type=int, default=None,
        help="text tower: captions sorted by length run in chunks of at least this many token rows, each "
             "cut to its longest caption (same features, less work); 0: full context for every caption; "
             "default 256 on CPU, 4096 on GPU")
    add("--tokenizer", default=None, help="a tokenizer folder (`wit tokenizer train`) or CLIP's bpe .txt.gz")
    add("--resume", default=None, help="'latest' or a checkpoint path")
    add("--init", default=None, metavar="MODEL",
        help="start from this model's weights, architecture and tokenizer (a model folder, e.g. from `wit import`, "
             "a training checkpoint or a run folder; local or gs://); --model and --tokenizer are then not used")
    add("--deterministic", action="store_true", help="deterministic kernels (bitwise-equal resumes on CPU)")
    add("--log-keys", action="store_true", help="record every trained sample key in OUT/keys-rank{R}.jsonl")
    add("--zeroshot-images", default=None, help="periodic zero-shot: image folder")
    add("--zeroshot-labels", default=None)
    add("--zeroshot-classnames", default=None)
    add("--zeroshot-templates", default=None)
    add("--zeroshot-task", default=None)
    add("--list-models", action="store_true", help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    zeroshot = None
    if args.zeroshot_images:
        zeroshot = {"images": args.zeroshot_images, "labels": args.zeroshot_labels,
                    "classnames": args.zeroshot_classnames, "templates": args.zeroshot_templates,
                    "task": args.zeroshot_task}
    names = [f.name for f in TrainConfig.__dataclass_fields__.values()]
    values = {name: getattr(args, name) for name in names if hasattr(args, name) and name != "zeroshot"}
    values.update(optimizer_values(args))
    return TrainConfig(**values, zeroshot=zeroshot)


def optimizer_values(args: argparse.Namespace) -> dict:
    """The optimizer flags: given ones as given, the others from ``--recipe``'s preset (when one
    is chosen) or the trainer's defaults."""
    fallback = dict(OPTIMIZER_DEFAULTS)
    if args.recipe:
        from trainer.config import get_config

        fallback.update(clip_preset(args.model, get_config(args.model)))
    return {name: fallback[name] if getattr(args, name) is None else getattr(args, name) for name in PRESET_FIELDS}


def emulated_precision(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` would run emulated (many times slower than fp32) on ``device``, or None
    when the hardware computes it natively: bf16 or fp16 autocast on a CPU without those
    instructions (oneDNN's check: AVX-512 or AMX), bf16 on a GPU without it (V100, T4)."""
    if device.type == "cpu" and precision in ("bf16", "fp16"):
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported() if precision == "bf16" \
            else torch.ops.mkldnn._is_mkldnn_fp16_supported()
        if not native:
            return (f"this CPU has no native {precision} (AVX-512 {precision} or AMX): autocast emulates it, "
                    "many times slower than fp32: train in fp32 here")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "this GPU has no native bf16: use --precision fp16, as the paper trained"
    return None


@dataclass
class Window:
    """What the next metrics line averages over: since ``start``, samples seen (all ranks) and
    seconds waited for data."""

    start: float = field(default_factory=time.monotonic)
    samples: int = 0
    data_wait: float = 0.0

    def reset(self) -> None:
        self.start, self.samples, self.data_wait = time.monotonic(), 0, 0.0


# -- the run -----------------------------------------------------------------------------------------
class Run:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.distributed = self.world > 1
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(config.seed)
        self.tokenizer, self.model = self.initial_model()
        self.model.to(self.device)
        self.model.set_text_chunk_tokens(config.text_chunk_tokens)
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config.weight_decay, config.exempt_embeddings),
                                           lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                                           fused=True)
        # fp16's narrow range needs the loss scaled up before backward (and the step skipped on an
        # overflow); bf16 and fp32 do not, and a disabled scaler passes everything through.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        shards = data_module.resolve_shards(config.train_data, count=config.train_num_samples is None)
        self.data = data_module.DataConfig(shards, config.batch_size, self.model.config.vision.image_size,
                                           workers=config.workers, seed=config.seed,
                                           shuffle_buffer=config.shuffle_buffer, num_samples=config.train_num_samples,
                                           augment=config.augment, crop_scale=config.crop_scale,
                                           letterbox=config.letterbox)
        per_epoch = data_module.ShardStream(self.data, self.tokenizer, self.rank, self.world).batches_per_epoch
        self.steps_per_epoch = max(1, per_epoch // config.accum_freq)
        self.total_steps = config.steps or config.epochs * self.steps_per_epoch
        self.step = 0
        self.data_state = data_module.StreamState.for_run(self.data, self.world)
        self.skipped, self.bad_shards = 0, 0  # the epoch's so far, as last logged
        self.wrapped = self.model
        if self.distributed:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.wrapped = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.wrapped = torch.compile(self.wrapped)
        from trainer.loss import ClipLoss

        self.loss_fn = ClipLoss(local_loss=True, gather_with_grad=True)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype is not None else _nothing
        self.metrics: list[str] = []
        self.writer = None
        self.keys_log = None
        self.started = time.monotonic()

    def initial_model(self):
        """The tokenizer and the model to start from: ``--init``'s (any model spec,
        :func:`trainer.checkpoint.load_model`: its architecture, weights and tokenizer) or a fresh
        ``--model`` with ``--tokenizer``."""
        config = self.config
        if config.init:
            from trainer.checkpoint import load_model

            model, tokenizer = load_model(config.init)
            model.set_grad_checkpointing(config.grad_checkpointing)
            return tokenizer, model.train()
        tokenizer = load_tokenizer(config.tokenizer)
        return tokenizer, build_model(config.model, tokenizer, config.grad_checkpointing)

    @property
    def epoch(self) -> int:
        return self.data_state.epoch

    # -- checkpoints ---------------------------------------------------------------------------
    def payload(self) -> dict | None:
        mine = {"data": self.data_state.state_dict(), "rng": state.rng_state()}
        gathered = [None] * self.world
        if self.distributed:
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        if self.rank != 0:
            return None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step,
                "epoch": self.epoch, "ranks": gathered, "world_size": self.world, "config": asdict(self.config),
                "model_config": self.model.config.to_json(), "format": state.FORMAT}

    def save(self) -> None:
        payload = self.payload()
        if payload is not None:
            state.save_tokenizer(self.config.out, self.tokenizer)
            path = state.save_checkpoint(self.config.out, self.step, payload, self.config.keep)
            log.info("checkpoint %s", path)
            self.sync_tensorboard()
        if self.distributed:
            dist.barrier()

    def restore(self) -> None:
        path = state.resolve_resume(self.config.out, self.config.resume)
        if path is None:
            if self.config.resume and self.config.resume != "latest":
                raise FileNotFoundError(f"--resume {self.config.resume}: no such checkpoint")
            existing = state.list_checkpoints(self.config.out)
            if existing:  # a fresh start would mix two runs' checkpoints and metrics in one folder
                raise FileExistsError(f"{self.config.out} already holds a run (checkpoint at step {existing[-1][0]}): "
                                      "pass --resume latest to continue it, or choose another --out")
            self.restore_metrics(0)
            return
        payload = state.load_checkpoint(path)
        if payload["world_size"] != self.world:
            raise state.ResumeError(f"{path} was written by {payload['world_size']} ranks, this run has {self.world}: "
                             "an exact resume needs the same world size")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler"):  # an fp16 run's loss scale and growth tracker
            self.scaler.load_state_dict(payload["scaler"])
        self.step = payload["step"]
        mine = payload["ranks"][self.rank]
        try:
            self.data_state.load_state_dict(mine["data"] if "data" in mine else
                                            data_module.StreamState.legacy(mine["position"], self.world,
                                                                           self.data_state.workers, payload["epoch"]))
        except ValueError as exc:
            raise state.ResumeError(f"{path}: {exc}") from None
        state.set_rng_state(mine["rng"])
        self.restore_metrics(self.step)
        if self.rank == 0:
            log.info("resumed from %s: step %d, epoch %d, batch %d of the epoch", path, self.step, self.epoch,
                     self.data_state.batches)

    # -- logging -------------------------------------------------------------------------------
    def announce(self) -> None:
        """Rank 0 prints the recipe's settings once at start-up (and logs the optimizer's always)."""
        config = self.config
        if self.rank != 0:
            return
        chosen = {name: getattr(config, name) for name in PRESET_FIELDS}
        if config.recipe:
            preset = clip_preset(config.model, self.model.config)
            overridden = {name for name in PRESET_FIELDS if chosen[name] != preset[name]}
            global_batch = config.batch_size * config.accum_freq * self.world
            print(describe(config.recipe, config.model, preset, chosen, overridden, global_batch), flush=True)
        log.info("optimizer %s, precision %s, embeddings %s", chosen, config.precision,
                 "not decayed" if config.exempt_embeddings else "decayed")
        slow = emulated_precision(self.device, config.precision)
        if slow:
            log.warning("--precision %s: %s", config.precision, slow)

    def restore_metrics(self, step: int) -> None:
        if self.rank == 0:
            self.metrics = state.trim_metrics(self.config.out, step)

    def log_metrics(self, record: dict) -> None:
        if self.rank != 0:
            return
        self.metrics.append(json.dumps(record))
        path = join(self.config.out, "metrics.jsonl")
        if "://" in self.config.out:
            write_text_atomic(path, "\n".join(self.metrics) + "\n")
        else:
            os.makedirs(self.config.out, exist_ok=True)
            with open(path, "a") as handle:
                handle.write(self.metrics[-1] + "\n")
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # An object store: events are written to a local folder and copied up at each
                # checkpoint and at the end (TensorBoard's writer reads and writes files only).
                folder = tempfile.mkdtemp(prefix="wit-tensorboard-") if is_object_store(self.config.out) \
                    else join(self.config.out, "tensorboard")
                self.writer = SummaryWriter(folder)
            except ImportError:
                self.writer = False
        if self.writer:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "total_steps"):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def sync_tensorboard(self) -> None:
        if self.writer and is_object_store(self.config.out):
            self.writer.flush()
            state.upload_folder(self.writer.log_dir, join(self.config.out, "tensorboard"))

    def zeroshot(self) -> None:
        spec = self.config.zeroshot
        if self.rank == 0 and spec:
            from trainer import zeroshot

            classnames = zeroshot.load_task_list(spec["classnames"], spec["task"], "class names")
            templates = (zeroshot.load_task_list(spec["templates"], spec["task"], "templates")
                         if spec["templates"] else zeroshot.DEFAULT_TEMPLATES)
            result = zeroshot.zeroshot(self.model, self.tokenizer, spec["images"], spec["labels"], classnames,
                                       templates)
            self.model.train()
            self.log_metrics({"step": self.step, "zeroshot_top1": result["top1"], "zeroshot_top5": result["top5"]})
        if self.distributed:
            dist.barrier()

    # -- training ------------------------------------------------------------------------------
    def run(self) -> dict:
        """Restore, then per epoch: batches -> :meth:`train_step` -> :meth:`log` ->
        :meth:`maybe_evaluate` -> :meth:`maybe_checkpoint` -> :meth:`should_stop`; then :meth:`finish`."""
        self.restore()
        stopper = Stopper(self.config.max_minutes)
        self.announce()
        self.open_keys_log()
        bar = self._bar()
        stopped_by, this_run = None, 0
        self.wrapped.train()
        while self.step < self.total_steps and stopped_by is None:
            stream = data_module.ShardStream(self.data, self.tokenizer, self.rank, self.world, self.data_state)
            batches = iter(data_module.loader(stream))
            window = Window()
            while self.step < self.total_steps:
                micro = self.next_micro_batches(batches, window)
                if micro is None:
                    break  # the epoch is over (every rank ends it at the same batch)
                loss = self.train_step(micro)
                this_run += 1
                self.log(loss, micro, window, bar)
                self.maybe_evaluate()
                self.maybe_checkpoint()
                stopped_by = self.should_stop(stopper, this_run)
                if stopped_by:
                    break
            if stopped_by is None and self.step < self.total_steps:
                self.data_state.next_epoch()
        return self.finish(stopped_by, bar)

    def next_micro_batches(self, batches, window: "Window") -> list[dict] | None:
        """The next ``accum_freq`` batches, or None at the end of the epoch."""
        micro = []
        waited = time.monotonic()
        for _ in range(self.config.accum_freq):
            batch = next(batches, None)
            if batch is None:
                break
            micro.append(batch)
        window.data_wait += time.monotonic() - waited
        return micro if len(micro) == self.config.accum_freq else None

    def train_step(self, micro: list[dict]) -> torch.Tensor:
        """One optimizer step over the micro-batches; records their data positions."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, config.lr, config.warmup, self.total_steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss = forward_backward(self.wrapped, micro, self.loss_fn, self.autocast, config, self.scaler)
        if config.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)  # skipped when an fp16 gradient overflowed
        self.scaler.update()
        self.model.clamp_logit_scale_()
        self.step += 1
        for batch in micro:
            self.data_state.record(batch["position"])
        self.skipped, self.bad_shards = self.data_state.skipped, self.data_state.bad_shards
        return loss

    def log(self, loss: torch.Tensor, micro: list[dict], window: "Window", bar) -> None:
        """The keys log, the progress bar and, every ``log_every`` steps, a metrics line."""
        if self.keys_log is not None:
            for batch in micro:
                self.keys_log.write(json.dumps({"step": self.step, "keys": batch["keys"]}) + "\n")
        window.samples += sum(len(b["keys"]) for b in micro) * self.world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if self.step % self.config.log_every == 0 or self.step == self.total_steps:
            elapsed = time.monotonic() - window.start
            self.log_metrics({"step": self.step, "total_steps": self.total_steps, "epoch": self.epoch,
                              "loss": round(loss.item(), 6),
                              "lr": self.optimizer.param_groups[0]["lr"],
                              "logit_scale": round(self.model.logit_scale.exp().item(), 4),
                              "samples_per_s": round(window.samples / elapsed, 2) if elapsed else None,
                              "data_wait": round(window.data_wait, 4), "skipped": self.skipped,
                              "bad_shards": self.bad_shards,
                              **({"loss_scale": self.scaler.get_scale()} if self.scaler.is_enabled() else {})})
            window.reset()

    def maybe_evaluate(self) -> None:
        if self.config.zeroshot_every and self.step % self.config.zeroshot_every == 0:
            self.zeroshot()

    def maybe_checkpoint(self) -> None:
        if self.step % self.config.save_every == 0 and self.step < self.total_steps:
            self.save()

    def should_stop(self, stopper: Stopper, this_run: int) -> str | None:
        """Why the run stops here (``--stop-after``, a signal or the time limit), agreed by all ranks."""
        if self.config.stop_after and this_run >= self.config.stop_after and self.step < self.total_steps:
            return "stop-after"
        if stopper.should_stop(self.distributed):
            return "signal or time limit"
        return None

    def open_keys_log(self) -> None:
        if self.config.log_keys and "://" not in self.config.out:
            os.makedirs(self.config.out, exist_ok=True)
            self.keys_log = open(os.path.join(self.config.out, f"keys-rank{self.rank}.jsonl"), "a")

    def finish(self, stopped_by: str | None, bar) -> dict:
        """The last checkpoint; a finished run also gets its model folder (and zero-shot score)."""
        config = self.config
        self.save()
        if self.keys_log is not None:
            self.keys_log.close()
        if bar is not None:
            bar.close()
        if stopped_by is None:
            if self.rank == 0:
                export_model(config.out, self.model, self.tokenizer)
            if config.zeroshot:
                self.zeroshot()
        if self.writer:
            self.writer.close()
            self.sync_tensorboard()
            if is_object_store(config.out):
                shutil.rmtree(self.writer.log_dir, ignore_errors=True)
        return {"step": self.step, "epoch": self.epoch, "stopped_by": stopped_by, "skipped": self.skipped,
                "bad_shards": self.bad_shards, "rank": self.rank}

    def _bar(self):
        from core.logs import progress_enabled

        if self.rank != 0 or not progress_enabled():
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")


def list_models() -> str:
    from trainer.config import MODELS
    from trainer.models import count_parameters

    lines = []
    for name, clip_config in MODELS.items():
        with torch.device("meta"):
            from trainer.models import CLIP

            params = count_parameters(CLIP(clip_config))
        lines.append(f"{name:16s} {params / 1e6:8.1f}M  {clip_config.vision.image_size}px")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from core.logs import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list-models" in argv:
        print(list_models())
        return 0
    if not logging.getLogger().handlers:
        setup_logging()
    parser = argparse.ArgumentParser(prog="wit train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, KeyError) as exc:  # a bad value, or --recipe for an unknown --model
        parser.error(str(exc).strip('"'))
    run = Run(config)
    try:
        result = run.run()
    except (FileExistsError, state.UnsafeCheckpointError, state.ResumeError) as exc:
        log.error("%s", exc)
        return 2
    log.info("rank %d: %s", run.rank, result)
    if run.distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    import importlib

    sys.exit(importlib.import_module("trainer.train").main())  # by module path: workers unpickle by it
