"""``wit doctor``: check that this machine can run every wit stage, and say how to fix it.

Each check returns a :class:`Check` with a status (``ok``, ``warn`` or ``fail``), what was found
and, when not ok, the fix. The command prints them as a table and exits 1 when any check failed.
Warnings (no GCS credentials on a laptop that only writes local paths, a version that differs
from the pin) do not fail the run; ``--strict`` makes them fail too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

OK, WARN, FAIL = "ok", "warn", "fail"

# distribution name -> module to import (an import proves more than metadata: torchvision's
# compiled operators, for one, fail only when imported next to a mismatched torch).
PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "apache-beam": "apache_beam",
    "img2dataset": "img2dataset",
    "webdataset": "webdataset",
    "imagededup": "imagededup",
    "gcsfs": "gcsfs",
    "pyarrow": "pyarrow",
    "ahocorasick-rs": "ahocorasick_rs",
}

INSTALL_FIX = "run `make install` (or `pip install -c constraints.txt .`) in the wit checkout"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class DoctorConfig:
    wordnet: str | None = None  # a WordNet folder to check instead of searching
    disk_path: str = "."  # where outputs will be written
    min_free_gb: float = 2.0  # below this the disk check fails
    warn_free_gb: float = 20.0  # below this it warns
    require_gcs: bool = False  # no credentials/emulator is a failure, not a warning
    strict: bool = False  # warnings fail too


def pinned_versions() -> dict[str, str]:
    """The exact pins (``name==version``) our own distribution declares."""
    pins: dict[str, str] = {}
    try:
        requirements = metadata.requires("wit") or []
    except metadata.PackageNotFoundError:
        return pins
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        spec = requirement.split(";")[0].strip()
        if "==" in spec:
            name, version = spec.split("==", 1)
            pins[name.split("[")[0].strip().lower()] = version.strip()
    return pins


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] == (3, 11):
        return Check("python", OK, f"{version} ({sys.executable})")
    return Check("python", WARN, f"{version}: the pinned dependency set is measured on Python 3.11",
                 "create the venv with python3.11 (`make install` uses python3)")


def check_package(dist: str, module: str, pins: dict[str, str]) -> Check:
    try:
        installed = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return Check(dist, FAIL, "not installed", INSTALL_FIX)
    try:
        importlib.import_module(module)
    except Exception as exc:  # an import that breaks is the finding, whatever it raised
        return Check(dist, FAIL, f"{installed} installed but `import {module}` fails: {exc}".strip(), INSTALL_FIX)
    pinned = pins.get(dist.lower())
    if pinned and pinned != installed:
        return Check(dist, WARN, f"{installed} (pinned {pinned})", INSTALL_FIX)
    return Check(dist, OK, installed)


def check_beam_runner() -> Check:
    """Run a three-element pipeline on the local options and see which runner ran it."""
    try:
        import apache_beam as beam

        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        from core.beam import local_options, make_pipeline

        pipeline = make_pipeline(local_options())
        _ = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2)
        result = pipeline.run()
        result.wait_until_finish()
        ran = type(pipeline.runner)
        qualified = f"{ran.__module__}.{ran.__name__}"
        pinned = isinstance(pipeline.runner, FnApiRunner)
    except Exception as exc:
        return Check("beam local runner", FAIL, f"a local pipeline failed: {exc}", INSTALL_FIX)
    if not pinned:
        return Check("beam local runner", FAIL, f"local runs use {qualified}, not the pinned FnApiRunner",
                     "build pipelines with core.beam.make_pipeline (it pins the FnApiRunner)")
    return Check("beam local runner", OK, qualified if ran is FnApiRunner else f"{qualified} (Beam's FnApiRunner)")


def check_wordnet(folder: str | None) -> Check:
    from query_list.wordnet import WordNetNotFound, find_wordnet_dir

    try:
        found = find_wordnet_dir(folder)
    except WordNetNotFound as exc:
        message = str(exc)
        detail, _, fix = message.partition("; ")
        return Check("wordnet", FAIL, detail, fix)
    return Check("wordnet", OK, str(found))


def check_vocabulary() -> Check:
    """CLIP's BPE merges ship inside the package (trainer/assets): a plain install trains with them."""
    from importlib import resources

    try:
        from trainer.steps import load_tokenizer

        path = resources.files("trainer") / "assets" / "bpe_simple_vocab_16e6.txt.gz"
        tokenizer = load_tokenizer(None)
    except Exception as exc:  # a missing or damaged file: the finding, whatever it raised
        return Check("clip vocabulary", FAIL, f"CLIP's BPE merges do not load: {exc}", INSTALL_FIX)
    return Check("clip vocabulary", OK, f"{tokenizer.vocab_size} tokens from {path}")


def check_chromium() -> Check:
    from wit.testing.browser import find_chromium

    found = find_chromium()
    if found:
        return Check("chromium", OK, found)
    return Check("chromium", WARN, "no headless Chromium: reports still write, their browser tests cannot run",
                 "apt-get install chromium")


def check_jemalloc() -> Check:
    from core.malloc import library

    found = library()
    if found:
        return Check("jemalloc", OK, f"{found}: the crawl's allocator")
    return Check("jemalloc", WARN, "no jemalloc: the crawl runs on the system's malloc, its workers' memory climbs "
                 "with the urls done (docs/crawl.md, 'Scale')", "apt-get install libjemalloc2")


def _emulator_reachable(host: str) -> tuple[bool, str]:
    url = host if "://" in host else f"http://{host}"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/storage/v1/b", timeout=3) as response:
            return True, f"emulator at {url} answers (HTTP {response.status})"
    except urllib.error.HTTPError as exc:  # it answered: reachable, even if it dislikes the path
        return True, f"emulator at {url} answers (HTTP {exc.code})"
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        return False, f"STORAGE_EMULATOR_HOST={host} is set but unreachable: {getattr(exc, 'reason', exc)}"


def check_gcs(require: bool) -> Check:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        ok, detail = _emulator_reachable(host)
        if ok and os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "").lower() != "false":
            return Check("gcs", WARN, detail + "; GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is not 'false'",
                         "export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false (else gcsfs waits 60 s per call on a gRPC probe)")
        return Check("gcs", OK if ok else FAIL, detail,
                     "" if ok else "start it: `gcp-storage-emulator start --host=127.0.0.1 --port=PORT --in-memory`, or unset STORAGE_EMULATOR_HOST")
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        if Path(explicit).is_file():
            return Check("gcs", OK, f"credentials file {explicit}")
        return Check("gcs", FAIL, f"GOOGLE_APPLICATION_CREDENTIALS={explicit} does not exist",
                     "point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file, or unset it")
    config_dir = Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
    adc = config_dir / "application_default_credentials.json"
    if adc.is_file():
        return Check("gcs", OK, f"application default credentials {adc}")
    status = FAIL if require else WARN
    return Check("gcs", status, "no GCS credentials and no emulator (local paths still work)",
                 "`gcloud auth application-default login`, or set STORAGE_EMULATOR_HOST for a local emulator")


def check_disk(path: str, min_free_gb: float, warn_free_gb: float) -> Check:
    target = Path(path)
    while not target.exists() and target != target.parent:
        target = target.parent
    free_gb = shutil.disk_usage(target).free / 1e9
    detail = f"{free_gb:.1f} GB free at {Path(path).resolve()}"
    if free_gb < min_free_gb:
        return Check("disk", FAIL, detail, f"free space below {min_free_gb:g} GB: clean up or write outputs elsewhere")
    if free_gb < warn_free_gb:
        return Check("disk", WARN, detail, f"less than {warn_free_gb:g} GB free: a crawl or training run may fill it")
    return Check("disk", OK, detail)


def run_checks(config: DoctorConfig) -> list[Check]:
    pins = pinned_versions()
    steps: list[Callable[[], Check]] = [check_python]
    steps += [lambda d=dist, m=module: check_package(d, m, pins) for dist, module in PACKAGES.items()]
    steps += [
        check_beam_runner,
        lambda: check_wordnet(config.wordnet),
        check_vocabulary,
        check_chromium,
        check_jemalloc,
        lambda: check_gcs(config.require_gcs),
        lambda: check_disk(config.disk_path, config.min_free_gb, config.warn_free_gb),
    ]
    return [step() for step in steps]


def format_table(checks: list[Check]) -> str:
    name_width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{name_width}}  status  detail", f"{'-' * name_width}  ------  ------"]
    lines += [f"{c.name:<{name_width}}  {c.status.upper():<6}  {c.detail}" for c in checks]
    fixes = [c for c in checks if c.status != OK and c.fix]
    if fixes:
        lines += ["", "to fix:"]
        lines += [f"  {c.name}: {c.fix}" for c in fixes]
    return "\n".join(lines)


def exit_code(checks: list[Check], strict: bool) -> int:
    bad = {FAIL, WARN} if strict else {FAIL}
    return 1 if any(c.status in bad for c in checks) else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wordnet", help="check this WordNet folder instead of searching the usual places")
    parser.add_argument("--disk-path", default=".", help="where outputs will be written (free-space check)")
    parser.add_argument("--min-free-gb", type=float, default=DoctorConfig.min_free_gb)
    parser.add_argument("--require-gcs", action="store_true", help="fail (not warn) without GCS credentials")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def main(args: argparse.Namespace) -> int:
    config = DoctorConfig(wordnet=args.wordnet, disk_path=args.disk_path, min_free_gb=args.min_free_gb,
                          require_gcs=args.require_gcs, strict=args.strict)
    checks = run_checks(config)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(format_table(checks))
    return exit_code(checks, config.strict)
