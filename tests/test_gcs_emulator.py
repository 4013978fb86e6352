"""The GCS emulator fixture: gs:// through gcsfs, for real."""

from __future__ import annotations

import hashlib
import os

import fsspec


def test_50mb_round_trip_is_byte_exact(gcs, gcs_bucket):
    payload = os.urandom(50 * 1024 * 1024)
    path = f"{gcs_bucket}/round/trip.bin"
    with fsspec.open(path, "wb") as handle:
        handle.write(payload)
    fs = gcs.filesystem()
    assert fs.size(path) == len(payload)
    with fsspec.open(path, "rb") as handle:
        back = handle.read()
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_environment_points_at_the_emulator(gcs):
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs.endpoint
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"


def test_listing_and_ranged_reads(gcs_bucket):
    fs, _ = fsspec.core.url_to_fs(gcs_bucket)
    for index in range(3):
        with fsspec.open(f"{gcs_bucket}/shards/{index:05d}.tar", "wb") as handle:
            handle.write(bytes([index]) * 1000)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{gcs_bucket}/shards"))
    assert names == ["00000.tar", "00001.tar", "00002.tar"]
    with fsspec.open(f"{gcs_bucket}/shards/00002.tar", "rb") as handle:
        handle.seek(990)
        assert handle.read() == b"\x02" * 10
