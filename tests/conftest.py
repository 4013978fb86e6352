"""Fixtures for the real components every stage is tested against.

- ``fake_web``: a loopback HTTP server with fault modes (:mod:`wit.testing.fakeweb`).
- ``gcs`` / ``gcs_bucket``: the GCS emulator (one per session) and a fresh ``gs://`` prefix.
- ``beam_options``: local pipeline options with Beam's Python FnApiRunner pinned.
- ``shared_data``: the real public data folder; skips when absent, fails under ``CI=true``;
  ``photos``: 60 real JPEG photos from it.
- ``ddp``: run a module-level function in 2 gloo processes and get each rank's result.

Every connection this process makes is kept on loopback (:mod:`wit.testing.loopback`).
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("WIT_QUIET", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from wit.testing import ddp as ddp_module  # noqa: E402
from wit.testing.fakeweb import FakeWeb  # noqa: E402
from wit.testing.gcs import GCSEmulator  # noqa: E402
from wit.testing.loopback import guard  # noqa: E402
from wit.testing.shared_data import in_ci, shared_data_dir  # noqa: E402


guard()


def present(found, message: str, kind: str):
    """``found`` when it is not None; else a skip on a user's machine, a failure in CI."""
    if found is None:
        if in_ci():
            pytest.fail(f"{message} (CI=true: {kind} tests must not skip)")
        pytest.skip(message)
    return found


def require_shared_data():
    """The shared data folder; a skip on a user's machine without it, a failure in CI."""
    return present(shared_data_dir(), "real data folder not found: set WIT_SHARED_DATA or place it at ../shared/data",
                   "data-backed")


def require_chromium() -> None:
    """Headless Chromium for the HTML reports; a skip on a user's machine without it, a failure in CI."""
    from wit.testing import browser

    present(browser.find_chromium(), "chromium not installed (apt-get install chromium)", "browser")


def require_jemalloc() -> str:
    """jemalloc's library, which the crawl runs on; a skip on a user's machine without it, a failure in CI."""
    from core.malloc import library

    return present(library(), "jemalloc not installed (apt-get install libjemalloc2)", "allocator")


@pytest.fixture
def shared_data():
    return require_shared_data()


@pytest.fixture(scope="session")
def photos() -> list[bytes]:
    """60 real JPEG photos (ImageNet sample) from the shared data folder, as bytes."""
    folder = require_shared_data() / "images/photos/imagenet_sample"
    return [p.read_bytes() for p in sorted(folder.glob("*.JPEG"))[:60]]


@pytest.fixture
def fake_web(tmp_path):
    with FakeWeb(root=tmp_path / "www") as web:
        (tmp_path / "www").mkdir(exist_ok=True)
        yield web


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with GCSEmulator(log_path=log) as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs):
    """A fresh bucket on the session's emulator; returns ``gs://NAME``."""
    return gcs.create_bucket(f"wit-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def beam_options():
    from core.beam import local_options

    return local_options()


@pytest.fixture
def ddp():
    return ddp_module.run_distributed
