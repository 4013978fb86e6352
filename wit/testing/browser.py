"""Headless Chromium for checking our HTML reports the way a person opens them.

Debian's ``chromium`` package, started with ``--headless --no-sandbox --disable-gpu`` and no
network: every host name resolves to nothing, so a report that reached for the internet would
show it. :func:`dump_dom` returns the document after its scripts ran and its images loaded;
:func:`screenshot` writes a PNG.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: Path, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="wit-chromium-") as profile:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--disable-extensions", "--disable-background-networking",
                   f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
                   "--virtual-time-budget=5000", *extra, page.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def dump_dom(page: Path, timeout: float = 120) -> str:
    return _run(page, ["--dump-dom"], timeout).stdout


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1600, timeout: float = 120) -> Path:
    _run(page, [f"--screenshot={png}", f"--window-size={width},{height}", "--hide-scrollbars"], timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png
