"""CLIP models, loss and OpenCLIP interoperability."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config import MODELS, CLIPConfig
from trainer.interop import export_openclip, from_openclip_state_dict, load_openclip_export
from trainer.loss import ClipLoss
from trainer.models import CLIP, count_parameters, length_chunks

PAPER = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"]


@pytest.mark.parametrize("name", PAPER)
def test_parameter_counts_equal_openclip(name):
    import open_clip

    with torch.device("meta"):
        ours = count_parameters(CLIP(MODELS[name]))
    theirs = sum(p.numel() for p in open_clip.create_model(name, device="meta").parameters())
    assert ours == theirs


def test_known_sizes():
    with torch.device("meta"):
        assert round(count_parameters(CLIP(MODELS["ViT-B-32"])) / 1e6, 1) == 151.3
        assert round(count_parameters(CLIP(MODELS["RN50"])) / 1e6, 1) == 102.0


@pytest.mark.parametrize("name", ["wit-tiny-32", "wit-small-64", "wit-rn-tiny-64"])
def test_small_models_shapes_and_backward(name):
    config = MODELS[name]
    model = CLIP(config)
    assert 1e6 < count_parameters(model) < 3e7
    size = config.vision.image_size
    images, tokens = torch.randn(3, 3, size, size), torch.randint(1, 1000, (3, config.text.context_length))
    image, text, scale = model(images, tokens)
    assert image.shape == text.shape == (3, config.embed_dim)
    assert torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert scale.item() == pytest.approx(1 / 0.07)
    ClipLoss()(image, text, scale).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = CLIP(MODELS["wit-tiny-32"])
    images, tokens = torch.randn(4, 3, 32, 32), torch.randint(1, 1000, (4, 77))

    def grads(enabled: bool):
        model.zero_grad()
        model.set_grad_checkpointing(enabled)
        ClipLoss()(*model(images, tokens)).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(False), grads(True)):
        assert torch.allclose(a, b, atol=1e-6)


def _captions(count: int, seed: int) -> torch.Tensor:
    """Token rows shaped like tokenized captions: start token, words, end token (the highest id)
    at varied positions, zero padding after it."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(count, 77, dtype=torch.long)
    ends = torch.randint(2, 77, (count,), generator=generator)
    ends[0] = 76  # one caption fills the context
    for row, end in enumerate(ends.tolist()):
        tokens[row, 0] = 49406
        tokens[row, 1:end] = torch.randint(1, 49000, (end - 1,), generator=generator)
        tokens[row, end] = 49407
    return tokens


def test_length_chunks_cover_the_batch_in_order_with_enough_rows():
    lengths = sorted([77, 60, 33, 20, 18, 15, 14, 12, 12, 11, 10, 9, 8, 8, 7, 5, 3, 2], reverse=True)
    chunks = length_chunks(lengths, 64)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all((stop - start) * lengths[start] >= 64 for start, stop in chunks)
    assert chunks[:2] == [(0, 1), (1, 3)]  # 77 alone; 60 needs a second caption to reach 64 rows
    assert length_chunks(lengths, 10_000) == [(0, len(lengths))]  # one chunk cut to the longest
    assert length_chunks([5, 5, 5], 1) == [(0, 1), (1, 2), (2, 3)]
    assert length_chunks([], 64) == []
    # A remainder too small for a chunk of its own joins the one before it.
    assert length_chunks([20, 20, 20, 2], 60) == [(0, 4)]


@pytest.mark.parametrize("chunk_tokens", [1, 64, 300, 100_000])
def test_text_chunks_by_length_give_the_full_context_features_and_gradients(chunk_tokens):
    torch.manual_seed(0)
    model = CLIP(MODELS["wit-tiny-32"])
    tokens = _captions(24, seed=1)

    def run(chunk: int):
        model.zero_grad()
        model.set_text_chunk_tokens(chunk)
        features = model.encode_text(tokens, normalize=False)
        (features * torch.linspace(-1, 1, features.numel()).view_as(features)).sum().backward()
        return features.detach(), {n: p.grad.clone() for n, p in model.text.named_parameters()}

    shapes = []
    model.text.transformer.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape[:2])))
    full, full_grads = run(0)
    assert shapes == [(24, 77)]
    shapes.clear()
    chunked, chunked_grads = run(chunk_tokens)
    assert torch.allclose(chunked, full, atol=1e-5, rtol=1e-4)
    for name, grad in full_grads.items():  # equal up to the order of float sums
        assert torch.linalg.norm(chunked_grads[name] - grad) <= 1e-5 * torch.linalg.norm(grad), name
    # The work done: every caption once, each chunk only as long as its longest caption.
    assert sum(rows for rows, _ in shapes) == 24
    assert shapes[0][1] == 77 and all(a[1] >= b[1] for a, b in zip(shapes, shapes[1:]))
    expected = length_chunks(sorted((tokens.argmax(-1) + 1).tolist(), reverse=True), chunk_tokens)
    assert len(shapes) == len(expected) and (len(expected) > 1) == (chunk_tokens < 24 * 77)


def test_compiles_as_one_graph_with_the_eager_features():
    """``torch.compile(fullgraph=True)`` traces the model without a break (the compiled text tower
    runs the full context: static shapes) and gives the eager, chunked model's features."""
    torch.manual_seed(0)
    model = CLIP(MODELS["wit-tiny-32"]).eval()
    images, tokens = torch.randn(4, 3, 32, 32), _captions(4, seed=3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        eager, traced = model(images, tokens), compiled(images, tokens)
    for a, b in zip(eager, traced):
        assert torch.allclose(a, b, atol=1e-5)


def test_temperature_init_and_clamp():
    model = CLIP(MODELS["wit-tiny-32"])
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    model.clamp_logit_scale_()
    assert model.logit_scale.exp().item() == pytest.approx(100.0)


def test_loss_equals_openclip_clip_loss():
    from open_clip.loss import ClipLoss as OpenClipLoss

    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(16, 64, dtype=torch.float64), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(16, 64, dtype=torch.float64), dim=-1)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    assert ClipLoss()(image, text, scale).item() == pytest.approx(OpenClipLoss()(image, text, scale).item(), abs=1e-6)


def _rank_gradients(rank: int, world_size: int, local_loss: bool):
    torch.manual_seed(0)
    image = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    text = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    half = slice(rank * 4, rank * 4 + 4)
    mine_image = image.detach()[half].clone().requires_grad_(True)
    mine_text = text.detach()[half].clone().requires_grad_(True)
    loss = ClipLoss(local_loss=local_loss, gather_with_grad=True)(
        torch.nn.functional.normalize(mine_image, dim=-1), torch.nn.functional.normalize(mine_text, dim=-1),
        torch.tensor(10.0, dtype=torch.float64))
    loss.backward()
    return loss.item(), mine_image.grad, mine_text.grad


@pytest.mark.parametrize("local_loss", [False, True])
def test_distributed_gradients_equal_one_process_with_the_whole_batch(ddp, local_loss):
    torch.manual_seed(0)
    image = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    text = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    loss = ClipLoss()(torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1),
                      torch.tensor(10.0, dtype=torch.float64))
    loss.backward()
    results = ddp(_rank_gradients, world_size=2, args=(local_loss,))
    # Each rank's gradient is world x the single-process one; DDP's averaging over ranks
    # (divide by world) then gives exactly the gradient of one process holding the whole batch.
    world = 2
    assert torch.allclose(torch.cat([r[1] for r in results]) / world, image.grad, atol=1e-12)
    assert torch.allclose(torch.cat([r[2] for r in results]) / world, text.grad, atol=1e-12)
    assert sum(r[0] for r in results) / world == pytest.approx(loss.item(), abs=1e-12)


def test_export_round_trip_loads_in_openclip_with_equal_embeddings(tmp_path):
    import open_clip

    torch.manual_seed(0)
    for name in ("wit-tiny-32", "wit-rn-tiny-64"):
        model = CLIP(MODELS[name]).eval()
        config_path, weights_path = export_openclip(model, tmp_path, name)
        cfg = CLIPConfig.load(config_path).to_json()
        theirs = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"])
        missing, unexpected = theirs.load_state_dict(torch.load(weights_path, weights_only=True), strict=False)
        assert unexpected == [] and all(k == "attn_mask" for k in missing), (missing, unexpected)
        theirs.eval()
        size = MODELS[name].vision.image_size
        images, tokens = torch.randn(2, 3, size, size), _captions(6, seed=2)
        with torch.no_grad():
            assert torch.allclose(model.encode_image(images), theirs.encode_image(images, normalize=True), atol=1e-5)
            assert torch.allclose(model.encode_text(tokens), theirs.encode_text(tokens, normalize=True), atol=1e-5)
        back = load_openclip_export(config_path, weights_path)
        for (k1, v1), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
            assert k1 == k2 and torch.equal(v1, v2)
        assert from_openclip_state_dict(theirs.state_dict()).keys() == model.state_dict().keys()
