"""Atomic writes to local paths and gs:// objects."""

from __future__ import annotations

import fsspec

from core.storage import join, write_bytes_atomic, write_text_atomic


def test_local_write_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "folder" / "file.json"
    write_text_atomic(str(target), "[1]")
    write_text_atomic(str(target), "[1, 2]")  # a retried bundle rewrites in place
    assert target.read_text() == "[1, 2]"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_gcs_write(gcs_bucket):
    path = join(gcs_bucket, "a/b", "c.bin")
    write_bytes_atomic(path, b"\x00\x01" * 1000)
    with fsspec.open(path, "rb") as handle:
        assert handle.read() == b"\x00\x01" * 1000
    fs, _ = fsspec.core.url_to_fs(gcs_bucket)
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(join(gcs_bucket, "a/b"))] == ["c.bin"]


def test_join():
    assert join("gs://b/", "/x/", "y.json") == "gs://b/x/y.json"
    assert join("/tmp/out", "m.json") == "/tmp/out/m.json"
