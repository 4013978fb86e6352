"""The shard contract (core.shards): the sample-key rule, streaming reads from paths and open
files, the error policies, and byte-stable writing."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import shards


@pytest.mark.parametrize("name, key, extension", [
    ("000000001.jpg", "000000001", "jpg"),
    ("000000001.seg.png", "000000001", "seg.png"),
    ("train/abc.json", "train/abc", "json"),
    ("a.b/c.d/e.f.txt", "a.b/c.d/e", "f.txt"),  # dots in folders do not end the key
    ("./x.jpg", "./x", "jpg"),
    ("noext", "noext", ""),
])
def test_sample_key_is_webdatasets_rule(name, key, extension):
    assert shards.split_member(name) == (key, extension)
    assert shards.sample_key(name) == key


def _tar(members: list[tuple[str, bytes]], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info in extra:
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_read_groups_consecutive_members_and_reports_what_it_drops(tmp_path):
    link = tarfile.TarInfo("evil.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    data = _tar([("a/1.jpg", b"i1"), ("a/1.txt", b"t1"), ("a/2.jpg", b"i2"), ("../up.txt", b"x")], [link])
    path = tmp_path / "00000.tar"
    path.write_bytes(data)
    for source in (str(path), io.BytesIO(data)):
        items = list(shards.read_tar(source))
        samples = [item for item in items if isinstance(item, shards.TarSample)]
        skipped = [item for item in items if isinstance(item, shards.TarSkipped)]
        assert [s.key for s in samples] == ["a/1", "a/2"]
        assert samples[0].by_extension() == {"jpg": b"i1", "txt": b"t1"}
        assert samples[0].image() == ("a/1.jpg", b"i1")
        assert sorted((s.name, s.reason) for s in skipped) == [("../up.txt", "not a plain relative name"),
                                                              ("evil.jpg", "symbolic link")]
    with pytest.raises(shards.ShardError, match="00000.tar.*symbolic link"):
        list(shards.read_tar(str(path), handler=shards.raise_problems))


def test_damaged_tail_keeps_what_was_read_then_reports_or_raises(tmp_path):
    data = _tar([(f"{i:03d}.jpg", bytes(700)) for i in range(4)])
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:2 * 1536 + 512 + 100])  # members take 512 + 1024 bytes: cut in the third one's data
    items = list(shards.read_tar(str(path)))
    assert [item.key for item in items if isinstance(item, shards.TarSample)] == ["000", "001"]
    assert isinstance(items[-1], shards.TarDamaged)
    with pytest.raises(shards.ShardError, match="cut.tar: damaged tar"):
        list(shards.read_tar(str(path), handler=shards.raise_problems))
    missing = list(shards.read_tar(str(tmp_path / "absent.tar")))
    assert len(missing) == 1 and isinstance(missing[0], shards.TarDamaged) and "absent.tar" in missing[0].error


member_names = st.lists(st.tuples(st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8})?", fullmatch=True),
                                  st.sampled_from(["jpg", "txt", "json", "seg.png"])),
                        min_size=1, max_size=12, unique=True)


@given(member_names, st.binary(max_size=64))
def test_write_then_read_round_trips_byte_stable(names, payload):
    members = sorted((f"{key}.{ext}", payload + key.encode()) for key, ext in names)
    data = shards.write_tar(members)
    assert shards.write_tar(members) == data  # fixed metadata: equal members, equal bytes
    samples = list(shards.read_tar(io.BytesIO(data)))
    assert all(isinstance(s, shards.TarSample) for s in samples)
    assert [m for s in samples for m in s.members] == members
    assert shards.samples_tar(samples) == data


def test_names_and_stats():
    names = shards.shard_names("gs://b/out", 3)
    assert names == {"tar": "gs://b/out/00003.tar", "parquet": "gs://b/out/00003.parquet",
                     "stats": "gs://b/out/00003_stats.json"}
    assert shards.shard_stem(names["tar"]) == "gs://b/out/00003"
    stats = shards.stats_of(3, [("success", ""), ("failed_to_download", "timeout: x"), ("success", "")], 10, 4)
    assert stats["successes"] == 2 and stats["count"] == 3
    assert stats["reasons"] == {"failed_to_download: timeout": 1}
