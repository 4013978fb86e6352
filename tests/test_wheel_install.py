"""A plain install runs every command: our wheel in a fresh venv WITHOUT extras.

The wheel is built from the checkout and installed with ``--no-deps`` into a new venv; its
dependencies are the runtime closure of ``wit``'s requirements without extras (walked with
importlib.metadata over the dev venv's distributions, markers honoured), exposed file by file
from the dev venv through a ``.pth``: nothing is downloaded, and a package only a dev or gcp
extra brings in (open_clip, gcp-storage-emulator, pytest, hypothesis, pyahocorasick, ...) is NOT
importable there, so a stray import of one fails this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "wit", "query_list", "pipeline", "dedup", "trainer")
DEV_ONLY = ("open_clip", "gcp_storage_emulator", "pytest", "hypothesis", "ahocorasick", "importlinter", "clip_benchmark")

pytestmark = pytest.mark.slow


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_distributions() -> list[metadata.Distribution]:
    """Distributions installed in this venv's site-packages (not egg-info lying in the checkout)."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    return [d for d in metadata.distributions(path=[str(site)])]


def runtime_closure() -> dict[str, metadata.Distribution]:
    """Distributions our ``dependencies`` (pyproject.toml, no extras) need, recursively; extras a
    requirement names are followed for that requirement only, as pip does."""
    installed = {_key(d.metadata["Name"]): d for d in _site_distributions()}
    roots = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found: dict[str, metadata.Distribution] = {}
    todo, seen = [Requirement(r) for r in roots], set()
    while todo:
        requirement = todo.pop()
        name, extras = _key(requirement.name), frozenset(requirement.extras)
        marker = requirement.marker
        if (name, extras) in seen or (marker is not None and not marker.evaluate({"extra": ""})):
            continue
        seen.add((name, extras))
        dist = installed.get(name)
        if dist is None:
            continue  # not installed here: the test then fails on the import, naming it
        found[name] = dist
        for line in dist.requires or []:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append(Requirement(str(child).split(";")[0]))
    return found


def mirror(dists: dict[str, metadata.Distribution], target: Path) -> None:
    """Symlink the installed files of ``dists`` (and only theirs) into ``target``: a folder owned
    wholly by them is linked as one, a shared one (``google/``) is rebuilt and descended."""
    site = Path(sysconfig.get_paths()["purelib"])
    owners: dict[PurePosixPath, str] = {}
    for dist in _site_distributions():
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":
                owners[PurePosixPath(file)] = _key(dist.metadata["Name"])
    wanted = set(dists)
    under: dict[PurePosixPath, set[str]] = {}
    for path, owner in owners.items():
        for parent in list(path.parents)[:-1]:
            under.setdefault(parent, set()).add(owner)

    def place(relative: PurePosixPath) -> None:
        source, dest = site / relative, target / relative
        owned = under.get(relative, {owners.get(relative)})
        if not owned & wanted:
            return
        if owned <= wanted or source.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(source)
            return
        for child in sorted({p.relative_to(relative).parts[0] for p in owners if relative in p.parents}):
            place(relative / child)

    for top in sorted({PurePosixPath(p.parts[0]) for p in owners}):
        if top.name not in ("__pycache__",) and not top.name.startswith("__editable__"):
            place(top)


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 30)}


def _jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), colour)
    ImageDraw.Draw(image).ellipse((seed % 20, seed % 13, 30 + seed % 30, 30 + seed % 25), fill=(255 - seed % 200, 128, 64))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def write_shards(out: Path, shards: int, per_shard: int) -> Path:
    """Tiny webdataset shards of coloured squares captioned by colour, and their sizes.json."""
    from pipeline.shards import Sample, write_shard

    names, sizes = list(COLOURS), {}
    for shard in range(shards):
        samples = [Sample(key=f"{shard:05d}{i:04d}", url="https://example.com/x.jpg", status="success",
                          caption=f"a photo of a {names[i % len(names)]} square",
                          image=_jpeg(COLOURS[names[i % len(names)]], shard * per_shard + i)) for i in range(per_shard)]
        write_shard(str(out), shard, samples, "jpg")
        sizes[f"{shard:05d}.tar"] = per_shard
    (out / "sizes.json").write_text(json.dumps({**sizes, "__total__": sum(sizes.values())}))
    return out


def write_classes(out: Path, per_class: int) -> tuple[Path, Path, Path]:
    """An evaluation folder: images, labels.tsv (file, label) and classnames.json."""
    out.mkdir(parents=True)
    rows = ["file\tlabel"]
    for name, colour in COLOURS.items():
        for i in range(per_class):
            (out / f"{name}_{i}.jpg").write_bytes(_jpeg(colour, 100 + i))
            rows.append(f"{name}_{i}.jpg\t{name}")
    (out / "labels.tsv").write_text("\n".join(rows) + "\n")
    (out / "classnames.json").write_text(json.dumps(list(COLOURS)))
    return out, out / "labels.tsv", out / "classnames.json"


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (work / "dist").glob("wit-*.whl")
    venv = work / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    closure = runtime_closure()
    mirror(closure, work / "runtime")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "wit_runtime.pth").write_text(f"import site; site.addsitedir({str(work / 'runtime')!r})\n")
    return venv


def wit(venv: Path, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(WIT_QUIET="1", OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return subprocess.run([str(venv / "bin" / "wit"), *args], cwd=cwd or venv.parent, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_closure_is_the_runtime_set_only():
    closure = runtime_closure()
    assert {"torch", "apache-beam", "webdataset", "tokenizers"} <= set(closure)
    assert not {"open-clip-torch", "gcp-storage-emulator", "pytest", "hypothesis", "pyahocorasick"} & set(closure)


def test_dev_packages_are_not_importable_but_ours_are(fresh_venv):
    python = fresh_venv / "bin" / "python"
    modules = DEV_ONLY + PACKAGES + ("torch", "apache_beam")
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
             f"for m in {modules!r}" "}))")
    done = subprocess.run([str(python), "-c", probe], cwd=fresh_venv.parent, capture_output=True, text=True, timeout=120)
    found = json.loads(done.stdout)
    assert not any(found[m] for m in DEV_ONLY), found
    assert all(found[m] for m in modules if m not in DEV_ONLY), found
    where = subprocess.run([str(python), "-c", "import trainer; print(trainer.__file__)"], cwd=fresh_venv.parent,
                           capture_output=True, text=True, timeout=120).stdout
    assert str(fresh_venv) in where  # the wheel's copy, not the checkout's
    assets = Path(where.strip()).parent / "assets"
    assert (assets / "bpe_simple_vocab_16e6.txt.gz").is_file()  # CLIP's vocabulary ships in the wheel,
    assert "Permission is hereby granted" in (assets / "LICENSE.open_clip.txt").read_text()  # with its licence
    lines = json.loads((assets.parent / "evaluation" / "testbed_fits.json").read_text())  # effective robustness's lines
    assert {"imagenetv2", "imagenet_sketch", "imagenet-r", "imagenet-a", "objectnet", "average"} <= set(lines)


def test_version_doctor_train_and_eval_from_the_wheel(fresh_venv, tmp_path):
    version = wit(fresh_venv, "--version")
    assert version.returncode == 0 and version.stdout.startswith("wit "), version.stderr
    doctor = wit(fresh_venv, "doctor", "--json", "--disk-path", str(tmp_path), "--min-free-gb", "0.1")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 0, doctor.stdout
    assert checks["torch"]["status"] == "ok" and checks["clip vocabulary"]["status"] == "ok", checks

    shards = write_shards(tmp_path / "shards", shards=2, per_shard=16)
    train = wit(fresh_venv, "train", "--train-data", str(shards / "sizes.json"), "--out", str(tmp_path / "run"),
                "--model", "wit-tiny-32", "--steps", "3", "--batch-size", "8", "--workers", "0", "--warmup", "1")
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.pt").is_file()

    images, labels, classnames = write_classes(tmp_path / "eval", per_class=3)
    result = tmp_path / "zeroshot.json"
    zeroshot = wit(fresh_venv, "eval", "zeroshot", "--checkpoint", str(tmp_path / "run" / "model"), "--images",
                   str(images), "--labels", str(labels), "--classnames", str(classnames), "--out", str(result))
    assert zeroshot.returncode == 0, zeroshot.stderr[-3000:]
    report = json.loads(result.read_text())
    assert report["n"] == 3 * len(json.loads(classnames.read_text())) and 0.0 <= report["top1"] <= 1.0
