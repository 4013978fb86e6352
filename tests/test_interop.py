"""`wit import` / `wit export`: OpenAI's and OpenCLIP's checkpoints in, OpenCLIP's format out.

Sources are randomly initialised OpenCLIP models built here (nothing can be downloaded); the
OpenAI layout is the state dict of OpenCLIP's ``-quickgelu`` variants, which keep OpenAI's names.
Numeric equality (1e-5) is checked on a representative set (a ResNet and ViTs of both patch
sizes: RN50, ViT-B-32, ViT-B-16; a test file of under two minutes on two busy cores); the
architecture read from the shapes and the key/shape mapping on all nine of the paper's
architectures, built on the meta device (the large ones take minutes to fill with numbers on two
cores).
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile

import pytest
import torch

from trainer.config import MODELS
from trainer.interop import (export_openclip, from_openclip_state_dict, import_model, infer_config,
                             load_openclip_export)
from trainer.models import CLIP
from wit.cli import main as wit

PAPER = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"]
# Features compared numerically in `make test`: one ResNet and two ViTs (the mapping is shape
# generic; every architecture's keys and shapes are checked below). WIT_INTEROP_NUMERIC=all
# compares all nine (about 2.5 minutes on 2 cores; all nine equal to 1e-5 when last run).
NUMERIC = PAPER if os.environ.get("WIT_INTEROP_NUMERIC") == "all" else ["RN50", "ViT-B-32", "ViT-B-16"]


def openclip_model(name: str, seed: int = 0):
    """A random OpenCLIP model in eval mode, its batch norms given non-trivial statistics (a fresh
    ResNet's last batch norm of each block is zero, which would hide a wrong mapping there)."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def features(model, image_size: int, tokenizer_name: str):
    import open_clip

    torch.manual_seed(1)
    image = torch.randn(1, 3, image_size, image_size)
    tokens = open_clip.get_tokenizer(tokenizer_name)(["a photo of a cat", "a diagram of two dogs on a sofa"])
    with torch.no_grad():
        return model.encode_image(image, normalize=True), model.encode_text(tokens, normalize=True)


@pytest.mark.parametrize("name", NUMERIC)
def test_openai_layout_imports_with_equal_features(name, tmp_path):
    source = openclip_model(f"{name}-quickgelu")
    path = tmp_path / "openai.pt"
    state = {key: value.half() if value.is_floating_point() else value for key, value in source.state_dict().items()}
    source.load_state_dict({k: v.float() for k, v in state.items()})  # as OpenAI ships it: fp16 weights
    torch.save({**state, "input_resolution": torch.tensor(MODELS[name].vision.image_size),
                "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}, path)
    model = import_model("openai", str(path))
    assert model.config.quick_gelu and model.config.vision == MODELS[name].vision
    size = model.config.vision.image_size  # 224, or 288 / 384 / 448 / 336 for RN50x4 / x16 / x64 and ViT-L-14-336
    ours, theirs = features(model, size, name), features(source, size, name)
    assert torch.allclose(ours[0], theirs[0], atol=1e-5) and torch.allclose(ours[1], theirs[1], atol=1e-5)
    # and out again: OpenCLIP loads the export and gives the same features
    import open_clip

    config_path, weights_path = export_openclip(model, tmp_path / "export", f"wit-{name}")
    open_clip.add_model_config(str(config_path))
    again, _, preprocess = open_clip.create_model_and_transforms(f"wit-{name}", pretrained=str(weights_path))
    back = features(again.eval(), model.config.vision.image_size, name)
    assert torch.allclose(back[0], theirs[0], atol=1e-5) and torch.allclose(back[1], theirs[1], atol=1e-5)


@pytest.mark.parametrize("name", PAPER)
def test_architecture_from_the_shapes_and_key_mapping_of_every_paper_model(name):
    import open_clip

    source = open_clip.create_model(f"{name}-quickgelu", device="meta")
    state = source.state_dict()
    config = infer_config(state, quick_gelu=True)
    assert config.vision == MODELS[name].vision and config.text == MODELS[name].text
    assert config.embed_dim == MODELS[name].embed_dim
    with torch.device("meta"):
        ours = CLIP(config).state_dict()
    mapped = from_openclip_state_dict(state)
    assert mapped.keys() == ours.keys()
    assert all(mapped[key].shape == ours[key].shape for key in ours)


def test_openclip_training_checkpoint_imports_without_quickgelu(tmp_path):
    import open_clip

    torch.manual_seed(0)
    config = MODELS["wit-tiny-32"].to_json()  # a small OpenCLIP model: any architecture will do here
    source = open_clip.model.CLIP(embed_dim=config["embed_dim"], vision_cfg=config["vision_cfg"],
                                  text_cfg=config["text_cfg"]).eval()
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               path)
    # heads are not in the shapes either (OpenAI's rule, width / 64, is not this model's): --model names it
    assert wit(["import", "--from", "open_clip", str(path), str(tmp_path / "model"), "--model", "wit-tiny-32"]) == 0
    from trainer.checkpoint import load_model

    model, tokenizer = load_model(tmp_path / "model")
    assert not model.config.quick_gelu and tokenizer.vocab_size == 49408
    assert model.config.vision == MODELS["wit-tiny-32"].vision and model.config.text == MODELS["wit-tiny-32"].text
    ours, theirs = features(model, 32, "ViT-B-32"), features(source, 32, "ViT-B-32")
    assert torch.allclose(ours[0], theirs[0], atol=1e-5) and torch.allclose(ours[1], theirs[1], atol=1e-5)
    # the activation is not in the shapes: read as QuickGELU the features differ
    wrong = import_model("open_clip", str(path), MODELS["wit-tiny-32"], quick_gelu=True)
    assert not torch.allclose(features(wrong, 32, "ViT-B-32")[0], theirs[0], atol=1e-3)


def test_wit_export_of_a_model_folder_loads_in_openclip(tmp_path, capsys):
    import open_clip

    from trainer.checkpoint import save_model
    from trainer.steps import load_tokenizer

    torch.manual_seed(0)
    model = CLIP(MODELS["wit-tiny-32"]).eval()
    save_model(tmp_path / "model", model, load_tokenizer(None))
    assert wit(["export", "--format", "open_clip", str(tmp_path / "model"), str(tmp_path / "out"),
                "--name", "wit-tiny-export"]) == 0
    assert "create_model_and_transforms('wit-tiny-export'" in capsys.readouterr().out
    open_clip.add_model_config(str(tmp_path / "out" / "wit-tiny-export.json"))
    theirs, _, _ = open_clip.create_model_and_transforms("wit-tiny-export",
                                                         pretrained=str(tmp_path / "out" / "wit-tiny-export.pt"))
    ours, back = features(model, 32, "ViT-B-32"), features(theirs.eval(), 32, "ViT-B-32")
    assert torch.allclose(ours[0], back[0], atol=1e-5) and torch.allclose(ours[1], back[1], atol=1e-5)
    again = load_openclip_export(tmp_path / "out" / "wit-tiny-export.json", tmp_path / "out" / "wit-tiny-export.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_bad_inputs_are_clear_errors(tmp_path, caplog):
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated, and still how OpenAI's files are made
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    (tmp_path / "jit.pt").write_bytes(buffer.getvalue())
    assert zipfile.is_zipfile(tmp_path / "jit.pt")
    assert wit(["import", "--from", "openai", str(tmp_path / "jit.pt"), str(tmp_path / "m")]) == 2
    assert "TorchScript archive" in caplog.text and "torch.jit.load" in caplog.text
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: cannot import as an openai CLIP model: .*no text_projection"):
        import_model("openai", str(tmp_path / "other.pt"))
    assert wit(["export", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "no such model folder, checkpoint file or run folder" in caplog.text
