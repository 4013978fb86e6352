"""Which tar members a shard read back may keep (core.shards.member_problem), and the crawl's
cross-shard rewrite (pipeline.exact_duplicates) on a shard holding members no shard should."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from core import shards as shard_format
from pipeline import exact_duplicates, shards


def _info(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("name, problem", [
    ("000000001.jpg", ""), ("part/000000001.json", ""), ("./000000001.txt", ""), ("é/photo.jpg", ""),
    ("../../x.jpg", "not a plain relative name"), ("part/../../x.jpg", "not a plain relative name"),
    ("..", "not a plain relative name"), ("part//x.jpg", "not a plain relative name"),
    ("part/.", "not a plain relative name"), ("/abs.jpg", "absolute name"), ("", "empty name"),
    ("..\\..\\x.jpg", "backslash in name"), ("x\x00.jpg", "control character in name"),
    ("x\n.jpg", "control character in name"), ("x" * 97 + ".jpg", "name too long"),
])
def test_member_names_kept_only_when_plain_and_relative(name, problem):
    assert shard_format.member_problem(_info(name)) == problem


@pytest.mark.parametrize("kind, problem", [
    (tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"), (tarfile.DIRTYPE, "directory"),
    (tarfile.CHRTYPE, "device"), (tarfile.BLKTYPE, "device"), (tarfile.FIFOTYPE, "fifo"),
    (tarfile.AREGTYPE, ""), (tarfile.CONTTYPE, ""),
])
def test_only_regular_files_are_kept(kind, problem):
    assert shard_format.member_problem(_info("000000001.jpg", kind, "000000000.jpg")) == problem


def _hostile_shard(out, keys: list[str]) -> None:
    """A crawl shard (real writer) with members no shard should hold added among its own: names
    that climb out or are absolute, a symbolic link, a hard link, a directory."""
    samples = [shards.Sample(key=key, url=f"https://example.com/{key}.jpg", caption=f"caption {key}",
                             status="success", image=f"image {key}".encode(), sha256=key) for key in keys]
    shards.write_shard(str(out), 0, samples, "jpg")
    path = out / "00000.tar"
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for index, (info, data) in enumerate(members):
            tar.addfile(info, io.BytesIO(data))
            if index == 2:  # between two samples, not only at the end
                tar.addfile(_info("../../x.jpg", tarfile.REGTYPE), io.BytesIO(b""))
        tar.addfile(_info("/abs.jpg"), io.BytesIO(b""))
        tar.addfile(_info("link.jpg", tarfile.SYMTYPE, "/etc/passwd"))
        tar.addfile(_info("hard.jpg", tarfile.LNKTYPE, f"{keys[0]}.jpg"))
        tar.addfile(_info("part", tarfile.DIRTYPE))


def test_cross_shard_rewrite_drops_and_counts_unsafe_members(tmp_path):
    """The crawl's rewrite of a shard holding a repeat from another shard keeps its plain members
    (minus the repeat), drops the others without failing on the link, counts them in the shard's
    stats, and what it writes extracts inside its folder only."""
    out = tmp_path / "out"
    keys = ["000000000", "000000001", "000000002"]
    _hostile_shard(out, keys)
    stats = exact_duplicates.drop_repeats(str(out), 0, {"000000001": "000990000"})
    assert stats["dropped_members"] == 5
    assert json.loads((out / "00000_stats.json").read_text())["dropped_members"] == 5
    assert stats["successes"] == 2 and stats["status"]["duplicate"] == 1
    with tarfile.open(out / "00000.tar") as tar:
        members = tar.getmembers()
        assert all(member.isreg() for member in members)
        assert [member.name for member in members] == [f"{key}.{ext}" for key in ("000000000", "000000002")
                                                       for ext in ("jpg", "txt", "json")]
        tar.extractall(tmp_path / "extracted")
    assert sorted(p.name for p in (tmp_path / "extracted").iterdir()) == sorted(m.name for m in members)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extracted", "out"]  # nothing landed beside them


def test_filter_tar_leaves_a_clean_shard_as_it_was(tmp_path):
    """A shard the crawl wrote has nothing to drop: the rewrite keeps every member, bytes and all."""
    samples = [shards.Sample(key=f"00000000{i}", url="u", caption="c", status="success", image=b"x" * i)
               for i in range(1, 4)]
    data = shards.build_tar(samples, "jpg")
    rewritten, image_bytes, dropped = exact_duplicates.filter_tar(data, set())
    assert (rewritten, image_bytes, dropped) == (data, 6, 0)
