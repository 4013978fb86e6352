"""Tokenizers: CLIP's vocabulary gives OpenCLIP's ids; our own vocabulary trains and round-trips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline import candidates
from trainer.tokenizer import Tokenizer


def real_captions(data: Path) -> list[str]:
    rows = list(candidates.read(str(data / "captions/cc3m/Validation_GCC-1.1.0-Validation.tsv"), candidates.ReaderConfig()))
    rows += list(candidates.read(str(data / "captions/img2dataset/test_10000.parquet"),
                                 candidates.ReaderConfig(url_col="URL", caption_col="TEXT")))
    return [r.caption for r in rows if isinstance(r, candidates.Raw) and isinstance(r.caption, str)]


def test_clip_vocabulary_gives_openclip_ids_on_real_captions(shared_data):
    from open_clip.tokenizer import SimpleTokenizer

    captions = real_captions(shared_data)
    assert len(captions) > 25_000
    ours = Tokenizer.from_clip_bpe(shared_data / "misc/clip_bpe/bpe_simple_vocab_16e6.txt.gz")
    theirs = SimpleTokenizer()
    assert ours.vocab_size == 49408 and ours.eot_token_id == 49407 and ours.sot_token_id == 49406
    assert torch.equal(ours(captions), theirs(captions))
    long = "a photo of " + "very " * 200 + "long caption"
    assert torch.equal(ours(long), theirs(long)) and ours(long)[0, -1].item() == 49407


def test_trained_vocabulary_round_trips_and_saves(shared_data, tmp_path):
    captions = real_captions(shared_data)[:5000]
    tokenizer = Tokenizer.train(captions, vocab_size=3000)
    assert tokenizer.vocab_size == 3000 and tokenizer.eot_token_id == 2999
    batch = tokenizer(["A Dog on the beach!", "two cats"])
    assert batch.shape == (2, 77) and batch[0, 0].item() == tokenizer.sot_token_id
    assert batch[0].argmax().item() == (batch[0] != 0).sum().item() - 1  # pooling finds the end token
    assert tokenizer.decode(batch[0].tolist()) == "a dog on the beach !"
    loaded = Tokenizer.load(tokenizer.save(tmp_path / "tok"))
    assert torch.equal(loaded(captions[:100]), tokenizer(captions[:100]))


def test_cli_trains_from_text_files(tmp_path):
    (tmp_path / "captions.txt").write_text("\n".join(f"a red car number {i} on a sunny road" for i in range(300)))
    result = subprocess.run([str(Path(sys.executable).with_name("wit")), "tokenizer", "train", "--captions",
                             str(tmp_path / "captions.txt"), "--out", str(tmp_path / "tok"), "--vocab-size", "600"],
                            capture_output=True, text=True, env={**os.environ, "WIT_QUIET": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    tokenizer = Tokenizer.load(tmp_path / "tok")
    assert "red car" in tokenizer.decode(tokenizer("a red car")[0].tolist())


def test_the_default_vocabulary_ships_in_the_package_and_gives_openclip_ids():
    """`load_tokenizer(None)` reads trainer/assets (no OpenCLIP needed at run time)."""
    import hashlib
    from importlib import resources

    from open_clip.tokenizer import SimpleTokenizer

    from trainer.steps import load_tokenizer

    shipped = resources.files("trainer") / "assets" / "bpe_simple_vocab_16e6.txt.gz"
    theirs = resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    assert hashlib.sha256(shipped.read_bytes()).digest() == hashlib.sha256(theirs.read_bytes()).digest()
    ours = load_tokenizer(None)
    texts = ["A dog &amp; a cat on the beach!", "über café 東京 2024", "it's the end", ""]
    assert ours.vocab_size == 49408 and torch.equal(ours(texts), SimpleTokenizer()(texts))
