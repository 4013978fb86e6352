"""Streaming webdataset shards into training: deterministic, resumable, never hanging.

Shards come from brace patterns (``{00000..04095}.tar``), globs, explicit paths or the crawl's
``sizes.json`` manifest, local or remote, opened through fsspec with a retrying reader (no shell
pipes); their sample counts from :mod:`core.sizes` (a manifest, img2dataset's stats files, or a
local tar's headers). The stream of one DataLoader worker is a pure function of ``(seed, epoch, rank, worker)``:

1. the shard list is shuffled with ``(seed, epoch)`` (every rank the same), split by rank, then
   by worker; with fewer shards than ranks x workers every worker instead draws shards at random
   from the whole list (resampling), so no worker is ever left without data;
2. a worker that runs out of shards before its quota starts another pass over its shards in a
   new order, so every rank yields exactly ``batches_per_epoch`` batches;
3. samples pass a byte-level shuffle buffer (raw tar members, decoded only after it) seeded
   from ``(seed, epoch, rank, worker)``; each batch's augmentation draws come from a generator
   seeded with ``(seed, epoch, rank, worker, batch number)``.

Each batch reports how many raw samples its worker has consumed. :class:`StreamState` keeps
that per worker (a versioned ``state_dict()`` in every checkpoint); on resume a worker replays
its raw stream up to that count without decoding anything, and DataLoader workers are
renumbered so the next batch comes from the worker whose turn it is.
The sample sequence after a resume is therefore exactly the one an uninterrupted run sees.
Corrupt samples (undecodable image, no caption) and unreadable or truncated shards are skipped
and counted, never fatal.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import fsspec
import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from core import shards, sizes

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
TRANSIENT = (OSError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class Shard:
    path: str
    samples: int | None = None


@dataclass
class DataConfig:
    shards: list[Shard]
    batch_size: int
    image_size: int
    workers: int = 2
    seed: int = 0
    shuffle_buffer: int = 1000
    retries: int = 5
    num_samples: int | None = None  # per epoch; default: the manifest's total
    augment: str = "clip"
    crop_scale: tuple[float, float] = (1.0, 1.0)  # area range of the square crop (CLIP: 1, 1)
    letterbox: str = "trim"  # trim: crop inside a `border` resize's padding; keep: crop the padded square

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"--crop-scale must be two numbers with 0 < MIN <= MAX <= 1, got {low} {high}")
        if self.letterbox not in ("trim", "keep"):
            raise ValueError("--letterbox must be trim or keep")

    @property
    def total_samples(self) -> int:
        if self.num_samples:
            return self.num_samples
        counts = [shard.samples for shard in self.shards]
        if any(count is None for count in counts):
            raise ValueError(sizes.missing_counts_message([s.path for s in self.shards if s.samples is None]))
        return sum(counts)


# -- shard lists ---------------------------------------------------------------------------------
def resolve_shards(patterns: list[str], count: bool = True) -> list[Shard]:
    """Every shard the patterns name, in order, with its sample count (``count``: from a
    ``sizes.json``, img2dataset's ``_stats.json`` files or a local tar's headers,
    :mod:`core.sizes`). A remote shard nobody counted is an error naming the ways to count it."""
    paths = sizes.list_shards(patterns)
    if not count:
        return [Shard(path) for path in paths]
    counts, _ = sizes.shard_counts(paths)
    unknown = [path for path in paths if counts[path] is None]
    absent = [path for path in unknown if "://" not in path and not os.path.exists(path)]
    if absent:
        raise FileNotFoundError(f"no such shard: {', '.join(absent[:3])}"
                                + (f" and {len(absent) - 3} more" if len(absent) > 3 else ""))
    if unknown:
        raise ValueError(sizes.missing_counts_message(unknown))
    return [Shard(path, counts[path]) for path in paths]


# -- reading -------------------------------------------------------------------------------------
class RetryingReader(io.RawIOBase):
    """A read-only stream over an fsspec file that reopens and seeks on transient errors."""

    def __init__(self, path: str, retries: int = 5, backoff: float = 0.5) -> None:
        self.path, self.retries, self.backoff = path, retries, backoff
        self.position = 0
        self.handle = None
        self._open()

    def _open(self) -> None:
        for attempt in range(self.retries + 1):
            try:
                self.handle = fsspec.open(self.path, "rb").open()
                if self.position:
                    self.handle.seek(self.position)
                return
            except FileNotFoundError:
                raise
            except TRANSIENT:
                if attempt == self.retries:
                    raise
                time.sleep(self.backoff * 2 ** attempt)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        for attempt in range(self.retries + 1):
            try:
                data = self.handle.read(len(buffer))
                buffer[:len(data)] = data
                self.position += len(data)
                return len(data)
            except TRANSIENT:
                if attempt == self.retries:
                    raise
                time.sleep(self.backoff * 2 ** attempt)
                self._reopen()
        return 0

    def _reopen(self) -> None:
        try:
            self.handle.close()
        except Exception:  # noqa: BLE001 - the old handle is broken either way
            pass
        self._open()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()


def raw_samples(path: str, retries: int, stats: dict) -> Iterator[dict]:
    """{'__key__', '__shard__', ext: bytes} per sample, by the shard contract's key rule
    (:mod:`core.shards`); members a shard must not hold and a damaged tail are counted in ``stats``."""
    try:
        reader = RetryingReader(path, retries)
    except TRANSIENT as exc:
        stats["bad_shards"] = stats.get("bad_shards", 0) + 1
        log.warning("shard %s unreadable, skipped: %s", path, exc)
        return
    with reader:
        for item in shards.read_tar(io.BufferedReader(reader, 1 << 20), name=path):
            if isinstance(item, shards.TarSkipped):
                stats["dropped_members"] = stats.get("dropped_members", 0) + 1
                log.warning("shard %s: member %r not read: %s", path, item.name, item.reason)
            elif isinstance(item, shards.TarDamaged):
                stats["bad_shards"] = stats.get("bad_shards", 0) + 1
                log.warning("shard %s unreadable or truncated, skipped past: %s", path, item.error)
            else:
                sample = {"__key__": item.key, "__shard__": path}
                for name, data in item.members:
                    sample[shards.split_member(name)[1].lower()] = data
                yield sample


def shuffled(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A reservoir shuffle over raw samples (bytes, not decoded images)."""
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(size)
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


# -- decoding ------------------------------------------------------------------------------------
def letterbox_content(meta: dict | None) -> tuple[float, float, float, float] | None:
    """Where the picture lies inside a square made by a ``border`` resize (img2dataset's, or
    ``wit crawl --resize-mode border``), as fractions (left, top, right, bottom) of the stored
    image; None when the sample's ``.json`` does not describe a letterboxed square. Both tools
    centre the picture and write the stored and the original sizes beside it."""
    if not meta:
        return None
    try:
        width, height = int(meta["width"]), int(meta["height"])
        original_w, original_h = int(meta["original_width"]), int(meta["original_height"])
    except (KeyError, TypeError, ValueError):
        return None
    if width != height or width < 2 or min(original_w, original_h) < 1:
        return None
    scale = width / max(original_w, original_h)
    inner_w, inner_h = max(1, round(original_w * scale)), max(1, round(original_h * scale))
    if (inner_w, inner_h) == (width, height):
        return None
    left, top = (width - inner_w) // 2, (height - inner_h) // 2
    return left / width, top / height, (left + inner_w) / width, (top + inner_h) / height


def plain_margins(pixels: np.ndarray, box: tuple[int, int, int, int], tolerance: int = 16, seam: int = 2) -> bool:
    """Whether everything outside ``box`` is one flat colour (a border, JPEG ringing allowed): the
    check that a ``.json`` really describes these pixels before the border is cut away. The
    ``seam`` pixels next to the picture are not looked at: resizing and JPEG blend them with it."""
    left, top, right, bottom = box
    mask = np.ones(pixels.shape[:2], bool)
    mask[max(0, top - seam):bottom + seam, max(0, left - seam):right + seam] = False
    margin = pixels[mask].astype(np.int16)
    if margin.size == 0:
        return False
    flat = np.abs(margin - np.median(margin, axis=0)).max(axis=1) <= tolerance
    return bool(flat.mean() >= 0.95)


def content_box(image: Image.Image, meta: dict | None, letterbox: str) -> tuple[int, int, int, int]:
    """The picture's box in ``image``: the whole image, or with ``letterbox="trim"`` the part a
    ``border`` resize did not pad (only when the padding really is flat there)."""
    whole = (0, 0, image.width, image.height)
    fractions = letterbox_content(meta) if letterbox == "trim" else None
    if fractions is None or image.width != image.height:
        return whole
    box = (round(fractions[0] * image.width), round(fractions[1] * image.height),
           round(fractions[2] * image.width), round(fractions[3] * image.height))
    return box if plain_margins(np.asarray(image), box) else whole


def square_crop(box: tuple[int, int, int, int], rng: np.random.Generator, scale: tuple[float, float] = (1.0, 1.0),
                train: bool = True) -> tuple[int, int, int]:
    """CLIP's random square crop inside ``box``: (x, y, side) in pixels. The side is the box's
    shorter side times sqrt(s), s drawn uniformly from ``scale`` (a fraction of the largest square's
    area; (1, 1), the default, is CLIP's: the whole shorter side); the position is uniform over
    every place the square fits, on both axes. ``train=False``: the centred largest square."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    short = min(width, height)
    low, high = scale
    fraction = float(rng.uniform(low, high)) if train and low < high else (low if train else 1.0)
    side = max(1, min(short, round(short * fraction ** 0.5)))
    if not train:
        return left + (width - side) // 2, top + (height - side) // 2, side
    x = left + int(rng.integers(0, width - side + 1))
    y = top + int(rng.integers(0, height - side + 1))
    return x, y, side


def augment(data: bytes, image_size: int, rng: np.random.Generator, mode: str = "clip",
            scale: tuple[float, float] = (1.0, 1.0), meta: dict | None = None, letterbox: str = "trim") -> np.ndarray:
    """``clip``: CLIP's augmentation, a random square crop (:func:`square_crop`, ``scale`` its
    optional size range) resized to ``image_size`` (bicubic). ``strong``: a random crop of 50-100%
    of the area (aspect 3:4..4:3) resized to ``image_size``, flipped half the time (for small
    data). ``center``: the evaluation view. Either way the crop lies inside the picture: a
    letterboxed square (``meta``: the sample's ``.json``) loses its border first unless
    ``letterbox="keep"``. All draws come from ``rng``. Returns the uint8 crop (:func:`normalise`
    makes the batch)."""
    with Image.open(io.BytesIO(data)) as image:
        # JPEG draft decoding at a reduced scale, never below what the smallest crop needs
        wanted = int(np.ceil(image_size / max(scale[0], 1e-6) ** 0.5)) if mode == "clip" else image_size
        image.draft("RGB", (wanted, wanted))
        image = image.convert("RGB")
        left, top, right, bottom = content_box(image, meta, letterbox)
        if mode == "strong":
            width, height = right - left, bottom - top
            area = rng.uniform(0.5, 1.0) * width * height
            ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
            w = min(width, max(1, round(np.sqrt(area * ratio))))
            h = min(height, max(1, round(np.sqrt(area / ratio))))
            x, y = left + int(rng.integers(0, width - w + 1)), top + int(rng.integers(0, height - h + 1))
            image = image.resize((image_size, image_size), Image.BICUBIC, box=(x, y, x + w, y + h))
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            return np.asarray(image)
        # only the chosen square is resized (cheaper than resizing the whole image first)
        x, y, side = square_crop((left, top, right, bottom), rng, scale, train=mode != "center")
        return np.asarray(image.resize((image_size, image_size), Image.BICUBIC, box=(x, y, x + side, y + side)))


def normalise(crops: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) crops -> one float (N, 3, H, W) batch with CLIP's normalisation, in a few
    vectorised passes (per-image float arithmetic and a stack of float tensors cost more)."""
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous().float()  # layout moved as bytes
    scale = 1 / (255 * torch.tensor(CLIP_STD)).view(1, 3, 1, 1)
    return batch.mul_(scale).sub_((torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)).view(1, 3, 1, 1))


def sample_meta(sample: dict, letterbox: str) -> dict | None:
    """The sample's ``.json`` when the crop needs it (to find a letterbox), else None; a damaged
    one is ignored (the image is then cropped whole)."""
    raw = sample.get("json") if letterbox == "trim" else None
    if not raw:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def image_member(sample: dict) -> bytes | None:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    return None


# -- the per-worker stream -------------------------------------------------------------------------
@dataclass
class WorkerPlan:
    epoch: int
    rank: int
    world: int
    worker: int  # logical worker number
    workers: int
    batches: int  # this worker's quota of batches in the epoch
    start_batch: int = 0  # batches it already delivered (resume)
    start_raw: int = 0  # raw samples it already consumed (resume)
    skipped: int = 0  # corrupt samples already counted (resume)
    stats: dict = field(default_factory=dict)


def worker_shards(config: DataConfig, plan: WorkerPlan, pass_number: int) -> tuple[list[Shard], bool]:
    """The shards of one pass of a worker, and whether it is resampling."""
    order = list(config.shards)
    random.Random(f"{config.seed}:{plan.epoch}").shuffle(order)
    if len(order) < plan.world * plan.workers:  # too few to split: every worker draws from all
        rng = random.Random(f"{config.seed}:{plan.epoch}:{plan.rank}:{plan.worker}:{pass_number}")
        return [rng.choice(order) for _ in range(max(1, len(order)))], True
    mine = order[plan.rank::plan.world][plan.worker::plan.workers]
    if pass_number:
        random.Random(f"{config.seed}:{plan.epoch}:{plan.rank}:{plan.worker}:{pass_number}").shuffle(mine)
    return mine, False


def raw_stream(config: DataConfig, plan: WorkerPlan) -> Iterator[dict]:
    pass_number = 0
    while True:
        shards, _ = worker_shards(config, plan, pass_number)
        delivered = False
        for shard in shards:
            for sample in raw_samples(shard.path, config.retries, plan.stats):
                delivered = True
                yield sample
        if not delivered and pass_number > 3:
            raise RuntimeError(f"rank {plan.rank} worker {plan.worker}: no readable sample in any of its shards")
        pass_number += 1


def batches(config: DataConfig, plan: WorkerPlan, tokenizer) -> Iterator[dict]:
    """This worker's batches for the epoch: images, tokens and the position to resume from."""
    rng = random.Random(f"{config.seed}:{plan.epoch}:{plan.rank}:{plan.worker}:shuffle")
    stream = shuffled(raw_stream(config, plan), config.shuffle_buffer, rng)
    raw, skipped = 0, plan.skipped
    for _ in range(plan.start_raw):  # replay to the resume point: bytes only, nothing decoded
        next(stream)
        raw += 1
    for number in range(plan.start_batch, plan.batches):
        augment_rng = np.random.default_rng([config.seed, plan.epoch, plan.rank, plan.worker, number])
        images, texts, keys = [], [], []
        while len(images) < config.batch_size:
            sample = next(stream)
            raw += 1
            data, text = image_member(sample), sample.get("txt")
            try:
                if data is None or text is None:
                    raise ValueError("no image or no caption")
                images.append(augment(data, config.image_size, augment_rng, config.augment, config.crop_scale,
                                      sample_meta(sample, config.letterbox), config.letterbox))
                texts.append(text.decode("utf-8"))
                keys.append(f"{sample['__shard__'].rsplit('/', 1)[-1]}/{sample['__key__']}")
            except (OSError, ValueError, UnicodeDecodeError, Image.DecompressionBombError):
                skipped += 1
        yield {"images": normalise(images), "tokens": tokenizer(texts), "keys": keys,
               "position": {"worker": plan.worker, "batch": number + 1, "raw": raw, "skipped": skipped,
                            "bad_shards": plan.stats.get("bad_shards", 0)}}


STATE_VERSION = 1


@dataclass
class WorkerPosition:
    """How far one logical worker got in the epoch: batches delivered, raw samples consumed
    (replayed without decoding on resume), corrupt samples skipped, unreadable shards met."""

    batch: int = 0
    raw: int = 0
    skipped: int = 0
    bad_shards: int = 0


@dataclass
class StreamState:
    """Where one rank's shard stream stands: the epoch, the batches it has delivered in it, and
    each worker's :class:`WorkerPosition`. Versioned; a restore checks the world size and the
    worker count, the two settings an exact resume cannot change. Saved in every checkpoint, one
    per rank (:mod:`trainer.state`)."""

    world: int = 1
    workers: int = 1  # logical workers (``--workers 0`` streams as one)
    epoch: int = 0
    batches: int = 0
    positions: dict[int, WorkerPosition] = field(default_factory=dict)

    def record(self, position: dict) -> None:
        """A delivered batch's ``position`` (what :func:`batches` yields with it)."""
        self.batches += 1
        self.positions[int(position["worker"])] = WorkerPosition(position["batch"], position["raw"],
                                                                 position["skipped"], position["bad_shards"])

    def next_epoch(self) -> None:
        self.epoch, self.batches, self.positions = self.epoch + 1, 0, {}

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.positions.values())

    @property
    def bad_shards(self) -> int:
        return sum(p.bad_shards for p in self.positions.values())

    def state_dict(self) -> dict:
        """Plain ints, strings and dicts (what a weights-only checkpoint load accepts)."""
        return {"version": STATE_VERSION, "world": self.world, "workers": self.workers, "epoch": self.epoch,
                "batches": self.batches,
                "positions": {str(worker): asdict(p) for worker, p in sorted(self.positions.items())}}

    def load_state_dict(self, data: dict) -> None:
        version = data.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"data stream state of version {version!r}; this trainer reads version {STATE_VERSION}")
        if data["world"] != self.world:
            raise ValueError(f"the data position was saved by {data['world']} ranks, this run has {self.world}: "
                             "an exact resume needs the same world size")
        if data["workers"] != self.workers:
            raise ValueError(f"the data position was saved with {data['workers']} DataLoader worker(s) per rank, "
                             f"this run has {self.workers}: an exact resume needs the same --workers")
        self.epoch, self.batches = int(data["epoch"]), int(data["batches"])
        self.positions = {int(worker): WorkerPosition(**p) for worker, p in data["positions"].items()}

    @staticmethod
    def legacy(position: dict, world: int, workers: int, epoch: int) -> dict:
        """The state dict of a checkpoint of format wit-train/2 (an untyped position dict)."""
        positions = {worker: {name: p[name] for name in ("batch", "raw", "skipped", "bad_shards")}
                     for worker, p in position["workers"].items()}
        return {"version": STATE_VERSION, "world": world, "workers": workers, "epoch": epoch,
                "batches": position["batches"], "positions": positions}

    @classmethod
    def for_run(cls, config: DataConfig, world: int) -> "StreamState":
        return cls(world=world, workers=max(1, config.workers))


class ShardStream(IterableDataset):
    """One epoch of one rank: ``batches_per_epoch`` batches from ``config.workers`` workers,
    from where ``state`` (a :class:`StreamState`, copied) says the epoch stands."""

    def __init__(self, config: DataConfig, tokenizer, rank: int, world: int, state: StreamState | None = None) -> None:
        self.config, self.tokenizer, self.rank, self.world = config, tokenizer, rank, world
        self.state = copy.deepcopy(state) if state is not None else StreamState.for_run(config, world)
        self.epoch = self.state.epoch

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.config.total_samples // (self.world * self.config.batch_size))

    def quota(self, worker: int) -> int:
        workers = max(1, self.config.workers)
        return len(range(worker, self.batches_per_epoch, workers))

    def __len__(self) -> int:
        return self.batches_per_epoch - self.state.batches

    def plan(self, physical: int) -> WorkerPlan:
        workers = max(1, self.config.workers)
        logical = (physical + self.state.batches) % workers
        done = self.state.positions.get(logical, WorkerPosition())
        return WorkerPlan(self.epoch, self.rank, self.world, logical, workers, self.quota(logical),
                          start_batch=done.batch, start_raw=done.raw, skipped=done.skipped,
                          stats={"bad_shards": done.bad_shards})

    def __iter__(self):
        info = get_worker_info()
        physical = info.id if info else 0
        if info is None and self.config.workers > 1:  # no DataLoader workers: interleave the streams
            streams = [batches(self.config, self.plan(p), self.tokenizer) for p in range(self.config.workers)]
            for _ in range(len(self)):
                stream = streams.pop(0)
                yield next(stream)
                streams.append(stream)
            return
        yield from batches(self.config, self.plan(physical), self.tokenizer)


def loader(stream: ShardStream, prefetch: int = 4) -> torch.utils.data.DataLoader:
    """Workers start by fork (the platform default here): a spawned worker re-imports torch, seconds
    per worker and epoch. fsspec resets its event loop in a forked child; gloo is not used there."""
    workers = stream.config.workers
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                       prefetch_factor=prefetch if workers else None, in_order=True)
