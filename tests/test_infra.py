"""infra/: every Beam job translated for Dataflow (Beam's dry run), scripts, manifests, the scale model."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import require_shared_data
from wit.testing.shared_data import in_ci

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
    "query_list.build": (["ListWikiFiles", "PlanWork", "ReadPages", "CountNgrams", "TopByPmi"],
                         [("PlanWork", "SpreadWork")]),
    "pipeline.curate": (["ListPool", "ReadClean", "MergeDuplicates", "Match", "Balance", "WriteUrls", "Report"],
                        [("ListPool", "SpreadFiles"), ("BatchPairs", "SpreadBatches")]),
    "pipeline.crawl": (["Shards", "CrawlShard", "CollectStats", "Finish", "LoadEvalIndexes"],
                       [("Shards", "SpreadShards")]),
    "dedup.index": (["Images", "Describe", "Collect", "Write"], [("Images", "Spread")]),
    "dedup.audit": (["Shards", "AuditShard", "LoadIndexes", "CollectResults", "Finish"],
                    [("Shards", "SpreadShards")]),
}


class DryRuns(dict):
    argv: dict[str, list[str]]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Each job built for DataflowRunner and translated with --dry_run: (pipeline proto, job options)."""
    from wit.beam import make_pipeline, pipeline_options

    tmp = tmp_path_factory.mktemp("dry")
    results = DryRuns()
    results.argv = job_inputs(tmp)
    for name, argv in results.argv.items():
        module = importlib.import_module(name)
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        config = module.config_from_args(parser.parse_args(argv))
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
    producers = {output: t.unique_name for t in transforms.values() for output in t.outputs.values()}
    for fan_out, reshuffle in breaks:
        assert reshuffle in by_name, f"{name}: no Reshuffle {reshuffle}"
        assert any(sub.startswith(f"{reshuffle}/") and "ReshufflePerKey" in sub for sub in by_name), reshuffle
        inputs = {producers.get(pc, "").split("/")[0] for pc in by_name[reshuffle].inputs.values()}
        assert fan_out in inputs, f"{name}: {reshuffle} reads {inputs}, not {fan_out}'s output"
    # the options the job declares are Beam options too: the same flags parse through
    # PipelineOptions (what Dataflow and Flex Templates carry) to the same values
    from apache_beam.options.pipeline_options import PipelineOptions

    module = importlib.import_module(name)
    option_classes = [c for c in vars(module).values()
                      if isinstance(c, type) and issubclass(c, PipelineOptions) and c is not PipelineOptions]
    assert len(option_classes) == 1, option_classes
    argv = dry_runs.argv[name]
    ours = vars(_parser(name).parse_args(argv))
    beams = PipelineOptions(argv).view_as(option_classes[0]).get_all_options()
    assert {key: beams[key] for key in ours} == ours


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    importlib.import_module(name).add_arguments(parser)
    return parser


def test_flex_template_parameters_are_job_flags():
    sys.path.insert(0, str(ROOT / "infra/dataflow/flex"))
    import launch

    for job, module_name in launch.JOBS.items():
        meta = json.loads((ROOT / f"infra/dataflow/flex/{job}.metadata.json").read_text())
        flags = launch.job_flags(importlib.import_module(module_name))
        for parameter in meta["parameters"]:
            assert "--" + parameter["name"].replace("_", "-") in flags, (job, parameter["name"])
            assert {"name", "label", "helpText"} <= set(parameter)
    flags = launch.job_flags(importlib.import_module("pipeline.curate"))
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


def test_scale_model_is_stable_and_matches_a_hand_calculation():
    run = [sys.executable, str(ROOT / "infra/scale.py")]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert first == subprocess.run(run, capture_output=True, text=True, check=True).stdout
    data = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout)
    rows = {(r["stage"], r["quantity"]): r["value"] for r in data["rows"]}
    # by hand: 400M pairs / 0.6 success = 666.7M urls; / 63.9 urls/s/core / 3600 = 2,898 core-hours
    assert rows[("crawl", "worker core-hours")] == pytest.approx(400e6 / 0.6 / 63.9 / 3600)
    assert round(rows[("crawl", "worker core-hours")]) == 2898
    # and its cost: 2,898 core-h on n2-highcpu-8 = 362.3 VM-h x (8 x 0.056 + 8 x 0.003557) USD
    assert rows[("crawl", "Dataflow cost")] == pytest.approx(2898.08 / 8 * (8 * 0.056 + 8 * 0.003557), rel=1e-4)
    assert all(item["source"].split(":")[0] in ("measured", "cited", "assumed") for item in data["inputs"].values())
    assert (ROOT / "docs/scale.md").read_text().count("| crawl | worker core-hours | 2,898 |") == 1
