"""CLIP's augmentation on the shards we make: a random square crop of the resized image, at a
random position over the whole valid range, an optional scale range, and crops inside the
picture of a letterboxed (``border``) square."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from pipeline import images
from tests.conftest import require_shared_data
from trainer import data as data_module
from trainer.data import augment, content_box, letterbox_content, square_crop


def photo(name: str) -> bytes:
    return (require_shared_data() / "images/photos/imagenet_sample" / name).read_bytes()


def stored(data: bytes, mode: str, size: int = 128) -> tuple[bytes, dict]:
    """The image as ``wit crawl --resize-mode MODE`` stores it, and its ``.json`` sizes."""
    done = images.process(data, images.ImageConfig(image_size=size, resize_mode=mode))
    assert done.status == "success"
    return done.data, {"width": done.width, "height": done.height, "original_width": done.original_width,
                       "original_height": done.original_height}


def test_crop_offsets_cover_the_whole_valid_range_on_a_non_square_image():
    rng = np.random.default_rng(0)
    boxes = [square_crop((0, 0, 384, 256), rng) for _ in range(3000)]
    assert {side for _, _, side in boxes} == {256} and {y for _, y, _ in boxes} == {0}
    assert {x for x, _, _ in boxes} == set(range(129))  # every position the square fits, ends included
    tall = [square_crop((0, 0, 200, 300), rng) for _ in range(3000)]
    assert {y for _, y, _ in tall} == set(range(101)) and {x for x, _, _ in tall} == {0}
    assert square_crop((0, 0, 384, 256), rng, train=False) == (64, 0, 256)  # evaluation: centred


def test_the_crop_is_taken_where_square_crop_says_then_resized():
    data, meta = stored(photo("n01440764_tench.JPEG"), "keep_ratio")
    with Image.open(io.BytesIO(data)) as image:
        assert min(image.size) == 128 and image.width != image.height  # keep_ratio: shorter side at the size
        image.draft("RGB", (64, 64))  # as the loader decodes: JPEG's reduced scale, never under the crop
        image = image.convert("RGB")
    assert min(image.size) == 64
    crops = [augment(data, 64, np.random.default_rng(seed), meta=meta) for seed in range(8)]
    for seed, crop in enumerate(crops):
        x, y, side = square_crop((0, 0, image.width, image.height), np.random.default_rng(seed))
        want = np.asarray(image.resize((64, 64), Image.BICUBIC, box=(x, y, x + side, y + side)))
        assert np.array_equal(crop, want)
    assert len({crop.tobytes() for crop in crops}) > 4  # random positions: the crops differ


def test_a_square_image_is_cropped_whole_unless_a_scale_range_is_given():
    square, meta = stored(photo("n01530575_brambling.JPEG"), "center_crop")
    assert meta["width"] == meta["height"] == 128
    plain = {augment(square, 64, np.random.default_rng(seed), meta=meta).tobytes() for seed in range(10)}
    assert len(plain) == 1  # CLIP's crop of a square is the square
    scaled = [augment(square, 64, np.random.default_rng(seed), scale=(0.9, 1.0), meta=meta) for seed in range(10)]
    assert len({crop.tobytes() for crop in scaled}) == 10
    sides = [square_crop((0, 0, 256, 256), np.random.default_rng(seed), (0.9, 1.0))[2] for seed in range(500)]
    assert min(sides) == round(256 * 0.9 ** 0.5) and max(sides) == 256  # sqrt of the area fraction
    with pytest.raises(ValueError, match="crop-scale"):
        data_module.DataConfig([], 8, 32, crop_scale=(0.0, 1.0))


def test_a_letterboxed_square_is_cropped_inside_its_picture():
    data, meta = stored(photo("n01440764_tench.JPEG"), "border")
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
    assert image.size == (128, 128) and meta["original_width"] != meta["original_height"]
    inner_w, inner_h = images.resized_size(images.ImageConfig(image_size=128, resize_mode="border"),
                                           meta["original_width"], meta["original_height"])
    left, top = (128 - inner_w) // 2, (128 - inner_h) // 2
    assert content_box(image, meta, "trim") == (left, top, left + inner_w, top + inner_h)
    assert content_box(image, meta, "keep") == (0, 0, 128, 128)
    # a .json that does not describe these pixels (no flat border where it says) is not trusted
    keep_data, keep_meta = stored(photo("n01440764_tench.JPEG"), "center_crop")
    with Image.open(io.BytesIO(keep_data)) as square:
        assert content_box(square.convert("RGB"), meta, "trim") == (0, 0, 128, 128)
    assert letterbox_content({**meta, "width": "x"}) is None and letterbox_content(None) is None
    # trimmed: no crop shows the white border; kept: every crop is the padded square itself
    trimmed = [augment(data, 32, np.random.default_rng(seed), meta=meta) for seed in range(20)]
    padded = [augment(data, 32, np.random.default_rng(seed), meta=meta, letterbox="keep") for seed in range(20)]
    assert len({crop.tobytes() for crop in padded}) == 1 and len({crop.tobytes() for crop in trimmed}) > 5
    white = lambda crop: (crop[0] > 245).all() or (crop[-1] > 245).all()  # noqa: E731
    assert white(padded[0]) and not any(white(crop) for crop in trimmed)


def test_the_loader_reads_the_json_and_trims_border_shards(tmp_path):
    from pipeline import shards
    from tests.test_train import PHRASES

    names = ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "n01484850_great_white_shark.JPEG"]
    samples = []
    for i, name in enumerate(names * 4):
        image, meta = stored(photo(name), "border", 64)
        samples.append(shards.Sample(key=f"{i:05d}", url="", status="success", caption=PHRASES[i % 5].format("fish"),
                                     image=image, **meta))
    shards.write_shard(str(tmp_path), 0, samples, "jpg")
    assert any(s.original_width != s.original_height for s in samples)
    crops = {}
    for letterbox in ("trim", "keep"):
        config = data_module.DataConfig([data_module.Shard(str(tmp_path / "00000.tar"), 12)], 12, 32,
                                        shuffle_buffer=1, letterbox=letterbox)
        plan = data_module.WorkerPlan(0, 0, 1, 0, 1, 1)
        batch = next(data_module.batches(config, plan, lambda texts: [len(t) for t in texts]))
        crops[letterbox] = batch["images"]
    # CLIP-normalised white is (1 - mean) / std per channel: a padded row is all of it
    white = ((1 - torch_tensor(data_module.CLIP_MEAN)) / torch_tensor(data_module.CLIP_STD)).view(3, 1)
    edge_white = lambda batch: [bool(((img[:, 0, :] - white).abs() < 0.1).all()) for img in batch]  # noqa: E731
    assert any(edge_white(crops["keep"])) and not any(edge_white(crops["trim"]))


def torch_tensor(values):
    import torch

    return torch.tensor(values)


def test_the_crawl_stores_the_shorter_side_at_the_size_by_default():
    """CLIP's recipe end to end: `wit crawl` keeps the aspect ratio (img2dataset's keep_ratio), so
    the trainer's crop has somewhere to move; `border` remains a choice."""
    import argparse

    from pipeline import crawl

    parser = argparse.ArgumentParser()
    crawl.add_arguments(parser)
    assert parser.get_default("resize_mode") == "keep_ratio" == images.ImageConfig().resize_mode
    data, meta = stored(photo("n01440764_tench.JPEG"), images.ImageConfig().resize_mode)
    assert (meta["width"], meta["height"]) == (round(427 * 128 / 320), 128)  # a 427 x 320 photo
