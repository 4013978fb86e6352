"""infra/: every Beam job translated for Dataflow (Beam's dry run), scripts, manifests, the scale model."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from core.config import parse_config
from core.jobs import JOBS
from tests.conftest import require_shared_data
from wit.testing.shared_data import in_ci
from wit.testing.dockerfile import instructions

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW = ["--runner", "DataflowRunner", "--project", "wit-dry-run", "--region", "us-central1",
            "--temp_location", "gs://wit-dry-run/tmp", "--dry_run=True", "--no_auth",
            "--setup_file", str(ROOT / "setup.py")]


def job_inputs(tmp: Path) -> dict[str, list[str]]:
    """Minimal real inputs for each job's graph construction (the jobs plan from their inputs)."""
    data = require_shared_data()
    from dedup import quality, store
    from pipeline import shards

    pq.write_table(pa.table({"url": ["https://example.com/a.jpg"], "caption": ["a cat"]}), tmp / "urls.parquet")
    photos = sorted((data / "images/photos/imagenet_sample").glob("*.JPEG"))[:2]
    store.save(quality.index_photos("eval", photos), str(tmp / "index"))
    shards.write_shard(str(tmp / "shards"), 0, [shards.Sample(key="000000000", url="u", caption="c", status="success",
                                                              image=photos[0].read_bytes())], "jpg")
    (tmp / "queries").mkdir()
    (tmp / "queries" / "metadata.json").write_text(json.dumps(["cat", "red car"]))
    wiki = data / "wiki/xml/wikibrain_en_test.xml"
    return {
        "query_list.build": ["--wiki", str(wiki), "--out", "gs://wit-dry-run/queries", "--no-wordnet"],
        "pipeline.curate": ["--pool", str(data / "captions/cc3m/*.tsv"), "--queries",
                            str(tmp / "queries" / "metadata.json"), "--out", "gs://wit-dry-run/curated"],
        "pipeline.crawl": ["--urls", str(tmp / "urls.parquet"), "--out", "gs://wit-dry-run/shards",
                           "--eval-index", str(tmp / "index")],
        "dedup.index": ["--name", "eval", "--images", str(photos[0].parent / "*.JPEG"), "--out",
                        "gs://wit-dry-run/index"],
        "dedup.audit": ["--shards", str(tmp / "shards" / "*.tar"), "--index", str(tmp / "index"),
                        "--out", "gs://wit-dry-run/audit", "--write-clean", "gs://wit-dry-run/clean"],
    }


# job -> (steps that must exist, (fan-out step, the Reshuffle right after it) pairs)
EXPECTED = {
    "query_list.build": (["ListWikiFiles", "Read/PlanWork", "Read/ReadPages", "CountNgrams", "ScoreBigrams/TopByPmi",
                          "Entries/JoinParts", "Write"],
                         [("Read/PlanWork", "Read/SpreadWork")]),
    "pipeline.curate": (["ListPool", "ReadCandidates/ReadClean", "MergeAndMatch/MergeDuplicates", "MergeAndMatch/Match",
                         "CountAndBalance/Balance", "WriteUrls/Write", "WriteRejects/Write", "Report"],
                        [("ListPool", "SpreadFiles"), ("MergeAndMatch/BatchPairs", "MergeAndMatch/SpreadBatches")]),
    "pipeline.crawl": (["Shards", "CrawlShards/CrawlShard", "SettleRepeats/DropRepeats", "TopHosts/TopHosts",
                        "CollectStats", "Finish", "LoadEvalIndexes"],
                       [("Shards", "CrawlShards/SpreadShards")]),
    "dedup.index": (["Images", "DescribeImages/Describe", "Collect", "Write"], [("Images", "DescribeImages/Spread")]),
    "dedup.audit": (["Shards", "AuditShards/AuditShard", "LoadIndexes", "CollectResults", "Finish"],
                    [("Shards", "AuditShards/SpreadShards")]),
}


class DryRuns(dict):
    argv: dict[str, list[str]]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Each job built for DataflowRunner and translated with --dry_run: (pipeline proto, job options)."""
    from core.beam import make_pipeline, pipeline_options

    tmp = tmp_path_factory.mktemp("dry")
    results = DryRuns()
    results.argv = job_inputs(tmp)
    jobs = {job.module: job for job in JOBS}
    for name, argv in results.argv.items():
        module = importlib.import_module(name)
        config = parse_config(jobs[name].config_class(), argv)
        pipeline = make_pipeline(pipeline_options(DATAFLOW))
        module.build_pipeline(pipeline, config)
        result = pipeline.run()
        results[name] = (result.job, pipeline.to_runner_api(), pipeline.options.get_all_options(drop_default=True))
    return results


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_job_translates_for_dataflow(name, dry_runs):
    job, proto, options = dry_runs[name]
    assert options["runner"] == "DataflowRunner" and str(options["dry_run"]) == "True" and job.proto.name
    transforms = proto.components.transforms
    by_name = {t.unique_name: t for t in transforms.values()}
    steps, breaks = EXPECTED[name]
    missing = [step for step in steps if step not in by_name]
    assert not missing, f"{name}: missing steps {missing}"
    assert not any("GroupIntoBatches" in t.unique_name or "group_into_batches" in t.spec.urn
                   for t in transforms.values())
    producers: dict[str, set] = {}  # a PCollection -> the transforms (leaf and composites) giving it
    for t in transforms.values():
        for output in t.outputs.values():
            producers.setdefault(output, set()).add(t.unique_name)
    for fan_out, reshuffle in breaks:
        assert reshuffle in by_name, f"{name}: no Reshuffle {reshuffle}"
        assert any(sub.startswith(f"{reshuffle}/") and "ReshufflePerKey" in sub for sub in by_name), reshuffle
        inputs = {producer for pc in by_name[reshuffle].inputs.values() for producer in producers.get(pc, ())}
        assert fan_out in inputs, f"{name}: {reshuffle} reads {inputs}, not {fan_out}'s output"
    # our flags stay ours: no job registers them in Beam's global option parser (the jobs'
    # options reach Beam only as the flags our parser leaves over)
    from apache_beam.options.pipeline_options import PipelineOptions

    module = importlib.import_module(name)
    assert not [c for c in vars(module).values()
                if isinstance(c, type) and issubclass(c, PipelineOptions) and c is not PipelineOptions]


def test_flex_template_parameters_are_job_flags():
    sys.path.insert(0, str(ROOT / "infra/dataflow/flex"))
    import launch

    assert launch.JOBS == {job.template: job.module for job in JOBS}
    for job in JOBS:
        meta = json.loads((ROOT / f"infra/dataflow/flex/{job.template}.metadata.json").read_text())
        flags = launch.job_flags(job.config_class())
        for parameter in meta["parameters"]:
            assert "--" + parameter["name"].replace("_", "-") in flags, (job, parameter["name"])
            assert {"name", "label", "helpText"} <= set(parameter)
    flags = launch.job_flags(JOBS[1].config_class())
    assert launch.translate(["--max_per_query=200", "--english_only=false", "--temp_location=gs://b/t",
                             "--pool=gs://b/x"], flags) == ["--max-per-query=200", "--temp_location=gs://b/t",
                                                            "--pool=gs://b/x"]
    assert launch.translate(["--english_only=true"], flags) == ["--english-only"]


def _scripts() -> list[Path]:
    return sorted(ROOT.glob("infra/**/*.sh")) + sorted(ROOT.glob("infra/**/*.sbatch")) + [ROOT / ".ci/run"]


def test_shell_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        if in_ci():
            pytest.fail("shellcheck not installed (apt-get install shellcheck)")
        pytest.skip("shellcheck not installed")
    scripts = _scripts()
    assert len(scripts) >= 9
    done = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]


def test_yaml_parses_and_the_jobset_wires_restarts_to_resume():
    documents = list(yaml.safe_load_all((ROOT / "infra/trainer/gke-jobset.yaml").read_text()))
    assert len(documents) == 1 and documents[0]["kind"] == "JobSet"
    pod = documents[0]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--resume=latest" in container["args"] and any(a.startswith("--max-restarts") for a in container["args"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert any(v["emptyDir"].get("medium") == "Memory" for v in pod["volumes"])
    assert pod["serviceAccountName"] and "cloud.google.com/gke-accelerator" in pod["nodeSelector"]
    sbatch = (ROOT / "infra/trainer/train.sbatch").read_text()
    assert "--resume latest" in sbatch and "--max-restarts" in sbatch and "--signal=B:TERM" in sbatch
    for path in ROOT.glob("**/*.y*ml"):
        if ".venv" not in path.parts:
            list(yaml.safe_load_all(path.read_text()))


def test_dockerfiles_use_the_pinned_versions():
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', (ROOT / "pyproject.toml").read_text()))
    sdk = (ROOT / "infra/dataflow/Dockerfile").read_text()
    assert re.search(r"^FROM apache/beam_python3\.11_sdk:(\S+)$", sdk, re.M).group(1) == pins["apache-beam"]
    trainer = (ROOT / "infra/trainer/Dockerfile").read_text()
    for text in (sdk, trainer, (ROOT / "infra/dataflow/flex/Dockerfile").read_text()):
        assert "-c constraints.txt" in text and "COPY pyproject.toml setup.py constraints.txt" in text
        assert len(re.findall(r"^FROM ", text, re.M)) == 1
    assert "whl/cu" in trainer and "python:3.11" in trainer
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"].startswith(">=3.11")


# Images that keep root on purpose; infra/README.md ("Containers and their users") says why.
ROOT_IMAGES = {"infra/dataflow/Dockerfile", "infra/dataflow/flex/Dockerfile"}


def _dockerfiles() -> list[Path]:
    return sorted({*ROOT.glob("*Dockerfile*"), *ROOT.glob("infra/**/*Dockerfile*")})



def _users(path: Path) -> list[str]:
    """The USER of each point the image's user changes; a FROM resets it to the base image's (unknown:
    taken as root), so the last entry is the user the entrypoint runs as."""
    users = []
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            users.append("root")
        elif keyword == "USER":
            users.append(arguments.split(":")[0])
    return users


def _env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, arguments in instructions(path):
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def test_every_image_runs_as_an_unprivileged_user_or_says_why_not():
    names = {str(path.relative_to(ROOT)): path for path in _dockerfiles()}
    assert {"infra/trainer/Dockerfile", *ROOT_IMAGES} <= set(names)
    readme = (ROOT / "infra/README.md").read_text()
    assert "\n## Containers and their users\n" in readme
    section = readme.split("\n## Containers and their users\n", 1)[1].split("\n## ", 1)[0]
    for name, path in names.items():
        user = _users(path)[-1]
        if name in ROOT_IMAGES:  # root by an explicit, explained choice, never by omission
            assert [k for k, a in instructions(path) if k == "USER"] and user == "root", name
            assert f"`{name.removeprefix('infra/')}`" in section, f"{name}: not explained in infra/README.md"
        else:
            assert user not in ("root", "0"), f"{name}: its entrypoint runs as root (no USER after the last FROM)"


def test_the_trainer_image_user_has_a_writable_home_and_matches_the_jobset():
    path = ROOT / "infra/trainer/Dockerfile"
    text, user, env = path.read_text(), _users(path)[-1], _env(path)
    assert user.isdigit() and int(user) > 0  # numeric: Kubernetes can verify runAsNonRoot against it
    assert re.search(rf"useradd [^&]*--uid {user}\b", text), "the USER uid is not created in the image"
    home = env["HOME"]
    assert all(env[key].startswith(home + "/") for key in ("XDG_CACHE_HOME", "TORCH_HOME", "TRITON_CACHE_DIR"))
    assert re.search(rf"chown -R \S+ {re.escape(home)}\b", text), "the home and caches are not the user's"
    jobset = yaml.safe_load((ROOT / "infra/trainer/gke-jobset.yaml").read_text())
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert {c["securityContext"]["runAsUser"] for c in pod["containers"]} == {int(user)}


def _pod_specs(node):
    """Every pod spec (a mapping with a list of containers) anywhere inside a manifest."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from _pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _pod_specs(item)


def test_every_kubernetes_container_runs_unprivileged():
    checked = []
    for path in sorted(ROOT.glob("infra/**/*.y*ml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not (isinstance(document, dict) and "apiVersion" in document and "kind" in document):
                continue
            for pod in _pod_specs(document):
                inherited = {key: value for key, value in (pod.get("securityContext") or {}).items()
                             if key in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")}
                for container in pod["containers"] + pod.get("initContainers", []):
                    own = container.get("securityContext") or {}
                    context, where = {**inherited, **own}, f"{path.relative_to(ROOT)}: {container['name']}"
                    assert context.get("runAsNonRoot") is True, where
                    assert isinstance(context.get("runAsUser"), int) and context["runAsUser"] > 0, where
                    assert own.get("allowPrivilegeEscalation") is False and not own.get("privileged"), where
                    assert own.get("capabilities", {}).get("drop") == ["ALL"], where
                    assert not own.get("capabilities", {}).get("add"), where
                    assert (context.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
                    checked.append(where)
    assert checked, "no Kubernetes container found under infra/"


def test_the_slurm_script_refuses_to_train_as_root(tmp_path):
    (tmp_path / "id").write_text("#!/bin/sh\necho 0\n")  # whoever runs the tests: the script sees root
    (tmp_path / "id").chmod(0o755)
    done = subprocess.run(["bash", str(ROOT / "infra/trainer/train.sbatch"), "gs://b/shards", "gs://b/run"],
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "refusing to train as root" in done.stderr, done.stderr


def test_scale_model_is_stable_and_matches_a_hand_calculation():
    run = [sys.executable, str(ROOT / "infra/scale.py")]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert first == subprocess.run(run, capture_output=True, text=True, check=True).stdout
    data = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout)
    rows = {(r["stage"], r["quantity"]): r["value"] for r in data["rows"]}
    # by hand: 400M pairs / 0.6 success = 666.7M urls; / 165 urls/s/core / 3600 = 1,122 core-hours
    assert rows[("crawl", "worker core-hours")] == pytest.approx(400e6 / 0.6 / 165 / 3600)
    assert round(rows[("crawl", "worker core-hours")]) == 1122
    # and its cost: 1,122.3 core-h on n2-highcpu-8 = 140.3 VM-h x (8 x 0.056 + 8 x 0.003557) USD
    assert rows[("crawl", "Dataflow cost")] == pytest.approx(1122.334 / 8 * (8 * 0.056 + 8 * 0.003557), rel=1e-4)
    assert all(item["source"].split(":")[0] in ("measured", "cited", "assumed") for item in data["inputs"].values())
    assert (ROOT / "docs/scale.md").read_text().count("| crawl | worker core-hours | 1,122 |") == 1
