"""Byte-level BPE tokenizers for the text tower, built on the ``tokenizers`` library.

Two sources:

- :meth:`Tokenizer.from_clip_bpe`: CLIP's own merges file (``bpe_simple_vocab_16e6.txt.gz``, shipped
  in ``trainer/assets`` with its MIT licence, the default of ``load_tokenizer``): the same token ids OpenCLIP gives (tested on
  real captions), through the Rust implementation;
- :meth:`Tokenizer.train`: a vocabulary learned from our own captions (``wit tokenizer train``).

Both clean text as CLIP does (ftfy, HTML entities unescaped twice, whitespace collapsed,
lower-cased), pre-tokenise with CLIP's pattern, mark word ends with ``</w>``, and frame each
text as ``<start_of_text> ... <end_of_text>`` in a context of 77. The end token always has the
highest id, so the text tower's argmax pooling finds it.

    wit tokenizer train --captions 'out/shards/*.tar' --out out/tokenizer [--vocab-size 49408]
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

SOT, EOT = "<start_of_text>", "<end_of_text>"
CONTEXT_LENGTH = 77
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_MERGES = 49152 - 256 - 2


def clean_text(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


class Tokenizer:
    def __init__(self, backend: HFTokenizer, context_length: int = CONTEXT_LENGTH) -> None:
        self.backend = backend
        self.context_length = context_length
        self.sot_token_id = backend.token_to_id(SOT)
        self.eot_token_id = backend.token_to_id(EOT)
        if self.eot_token_id != backend.get_vocab_size() - 1:
            raise ValueError("the end token must have the highest id (the text tower pools at argmax)")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_clip_bpe(cls, path: str | Path, context_length: int = CONTEXT_LENGTH) -> "Tokenizer":
        lines = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:CLIP_MERGES + 1]]
        alphabet = list(bytes_to_unicode().values())
        vocab_list = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [SOT, EOT]
        vocab = {token: index for index, token in enumerate(vocab_list)}
        backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False))
        backend.pre_tokenizer = _pre_tokenizer()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
        backend.add_special_tokens([SOT, EOT])
        return cls(backend, context_length)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 49408, min_frequency: int = 2,
              context_length: int = CONTEXT_LENGTH) -> "Tokenizer":
        from tokenizers import trainers

        backend = HFTokenizer(models.BPE(end_of_word_suffix="</w>"))
        backend.pre_tokenizer = _pre_tokenizer()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 2, min_frequency=min_frequency,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>",
                                      show_progress=False)
        backend.train_from_iterator((clean_text(t) for t in texts), trainer=trainer)
        backend.add_special_tokens([SOT, EOT])  # appended last: the end token gets the highest id
        return cls(backend, context_length)

    # -- use --------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.backend.encode(clean_text(text), add_special_tokens=False).ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        encodings = self.backend.encode_batch([clean_text(t) for t in texts], add_special_tokens=False)
        result = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, encoding in enumerate(encodings):
            ids = [self.sot_token_id] + encoding.ids + [self.eot_token_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_token_id
            result[row, : len(ids)] = torch.tensor(ids)
        return result

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([i for i in ids if i not in (0, self.sot_token_id, self.eot_token_id)])

    # -- files ------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({"context_length": self.context_length}) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        folder = Path(folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        return cls(HFTokenizer.from_file(str(folder / "tokenizer.json")), config["context_length"])


def iter_captions(patterns: Sequence[str], caption_col: str = "caption") -> Iterator[str]:
    """Captions from webdataset shards (``.txt`` members), parquet url lists, or text files."""
    import tarfile

    import fsspec
    import pyarrow.parquet as pq

    for pattern in patterns:
        for handle_file in fsspec.open_files(pattern, "rb"):
            name = handle_file.path
            with handle_file as handle:
                if name.endswith(".tar"):
                    with tarfile.open(fileobj=handle, mode="r|") as tar:
                        for member in tar:
                            if member.name.endswith(".txt"):
                                yield tar.extractfile(member).read().decode("utf-8", errors="replace")
                elif name.endswith(".parquet"):
                    yield from (c for c in pq.read_table(handle, columns=[caption_col]).column(0).to_pylist() if c)
                else:
                    for line in handle:
                        text = line.decode("utf-8", errors="replace").strip()
                        if text:
                            yield text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    train = sub.add_parser("train", help="learn a byte-level BPE vocabulary from captions", allow_abbrev=False)
    train.add_argument("--captions", action="append", required=True, metavar="GLOB",
                       help="webdataset shards, parquet url lists (--caption-col) or text files; repeatable")
    train.add_argument("--caption-col", default="caption")
    train.add_argument("--out", required=True, help="folder for tokenizer.json and tokenizer_config.json")
    train.add_argument("--vocab-size", type=int, default=49408, help="tokens in all (49,408 = 256 bytes x 2 + merges + 2)")
    train.add_argument("--min-frequency", type=int, default=2)


def main(args: argparse.Namespace) -> int:
    tokenizer = Tokenizer.train(iter_captions(args.captions, args.caption_col), args.vocab_size, args.min_frequency)
    folder = tokenizer.save(args.out)
    print(f"wrote {folder}/tokenizer.json: {tokenizer.vocab_size} tokens")
    return 0
