"""``wit demo``: the whole chain on a generated local world, in one command, offline.

    wit demo [--out out/demo] [--fast] [--data ../shared/data]

1. a world (:mod:`wit.demo_world`): a Wikipedia-format dump, page views, a web of rendered scenes
   served on loopback by the test web server, a WARC capture of it, held-out evaluation scenes;
2. ``wit queries`` -> ``wit curate`` (the WARC) -> ``wit dedup index`` (the evaluation scenes) ->
   ``wit crawl --eval-index`` into a bucket of a local GCS emulator (when ``gcp-storage-emulator``
   is installed, the dev extra; else a local folder ``OUT/bucket`` stands in, said in the log and
   the report; ``--storage`` picks) -> ``wit dedup audit --write-clean``;
3. ``wit train``: 2 processes (torchrun, gloo) streaming the clean shards from the bucket, then
   zero-shot classification of the held-out scenes;
4. ``OUT/report.html`` linking every stage's report, and a summary on the console.

A failing stage is named with the command that re-runs it alone and the log (``OUT/demo.log``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.reports import AuditFigures, CrawlFigures, CurationFigures, QueryListFigures
from wit.demo_world import WorldConfig

log = logging.getLogger("wit.demo")
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "an image of a {}.", "a {}."]


@dataclass
class DemoConfig:
    out: Path
    fast: bool = False
    world: WorldConfig = field(default_factory=WorldConfig)
    epochs: int = 30
    batch_size: int = 32
    model: str = "wit-tiny-32"
    data: Path | None = None  # real inputs in the shared-data layout instead of a generated world
    storage: str = "auto"  # "emulator" (gs:// on a local GCS emulator), "local" (a folder), or whichever is installed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="where the world, outputs and report go")
    parser.add_argument("--fast", action="store_true", help="the same stages at CI sizes (under 5 minutes)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="real inputs in ../shared/data's layout (Wikipedia dumps, CIFAR-10 photos) instead of "
                             "the generated world")
    parser.add_argument("--storage", choices=("auto", "emulator", "local"), default="auto",
                        help="where the shards go: a bucket of a local GCS emulator (needs the dev extra), a local "
                             "folder standing in for it, or auto: the emulator when installed")


class StageFailed(RuntimeError):
    pass


@contextmanager
def bucket_storage(choice: str, out: Path):
    """Yields ``(bucket, note)``: a ``gs://`` bucket on a local GCS emulator, or a local folder
    standing in for it when the emulator is not installed (a plain ``pip install``)."""
    from wit.testing.gcs import GCSEmulator, emulator_command

    if choice != "local":
        try:
            emulator_command()
        except FileNotFoundError:
            if choice == "emulator":
                raise StageFailed("--storage emulator: gcp-storage-emulator is not installed; "
                                  "install it with: pip install -c constraints.txt '.[dev]'") from None
        else:
            with GCSEmulator(log_path=out / "gcs-emulator.log") as gcs:
                yield gcs.create_bucket("wit-demo"), "a gs:// bucket on a local GCS emulator"
            return
    folder = out / "bucket"
    shutil.rmtree(folder, ignore_errors=True)  # empty each run, as the emulator's in-memory bucket is
    folder.mkdir(parents=True)
    note = (f"a local folder ({folder}) standing in for the bucket" +
            ("" if choice == "local" else ": gcp-storage-emulator is not installed (pip install '.[dev]' adds it)"))
    yield str(folder), note


class Demo:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.out = config.out
        self.results: dict[str, dict] = {}
        self.commands: dict[str, str] = {}
        self.started = time.monotonic()
        self.storage = ""

    # -- plumbing ------------------------------------------------------------------------------
    def stage(self, number: int, name: str, command: str, fn):
        self.commands[name] = command
        began = time.monotonic()
        print(f"[{number}/8] {name} ...", flush=True)
        try:
            result = fn() or {}
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            log.error("stage %s failed:\n%s", name, traceback.format_exc())
            raise StageFailed(f"stage {number} ({name}) failed: {exc}\n  re-run it alone: {command}\n"
                              f"  log: {self.out / 'demo.log'}") from exc
        result["seconds"] = round(time.monotonic() - began, 1)
        self.results[name] = result
        print(f"[{number}/8] {name} done in {result['seconds']:.0f}s", flush=True)
        return result

    # -- the chain -----------------------------------------------------------------------------
    def run(self) -> dict:
        from wit import demo_world
        from wit.testing.fakeweb import FakeWeb

        out, world_dir = self.out, self.out / "world"
        built: dict = {}

        def make_world():
            if self.config.data is not None:
                built.update(demo_world.build_from_data(world_dir, self.config.data, self.config.world))
            else:
                built.update(demo_world.build(world_dir, self.config.world))
            return {"pages": len(built["pages"]), "images": built["images"],
                    "planted_eval_copies": len(built["planted_eval_copies"]), "classes": len(built["classes"])}
        self.stage(1, "world", "wit demo (the world is regenerated each run)", make_world)
        manifest = built
        with FakeWeb(root=world_dir / "www") as web, bucket_storage(self.config.storage, out) as (bucket, note):
            self.storage = note
            log.info("shards go to %s", note)
            print(f"      storage: {note}", flush=True)
            base = web.url("/")
            warc = demo_world.write_warc(world_dir, base, manifest["pages"])
            self._queries(world_dir)
            self._curate(warc)
            self._index(world_dir)
            self._crawl(bucket)
            self._audit(bucket)
            self._train(bucket)
        self._evaluate(world_dir)
        return self._report(manifest)

    def _job(self, number: int, name: str, command: tuple[str, ...], job_config, figures) -> None:
        """A Beam stage: its config built here, run as ``wit ...`` would run it, shown as the
        command line a user would type for the same config."""
        from core.jobs import by_command

        job = by_command(*command)

        def go():
            job.run_config(job_config)
            return figures()
        self.stage(number, name, job.command_line(job_config), go)

    def _queries(self, world: Path) -> None:
        from query_list.build import QueryListConfig

        pageviews = [str(world / "pageviews" / "*.gz")] if list((world / "pageviews").glob("*.gz")) else []
        job_config = QueryListConfig(wiki=[str(world / "wiki" / "*.xml*")], out=str(self.out / "queries"),
                                     pageviews=pageviews, use_wordnet=_wordnet_available(), min_count=5,
                                     bigram_min_count=5, title_min_views=50, target_size=5000, count_shards=4)

        def figures():
            found = QueryListFigures.read(str(self.out / "queries" / QueryListFigures.FILE))
            parts = {name: part.get("kept") for name, part in found.parts.items()}
            return {"queries": found.queries, "by_source": parts, "wordnet": job_config.use_wordnet}
        self._job(2, "queries", ("queries",), job_config, figures)

    def _curate(self, warc: Path) -> None:
        from pipeline.candidates import ReaderConfig
        from pipeline.curate import CurateConfig

        job_config = CurateConfig(pool=[str(warc)], reader=ReaderConfig(pool_format="warc"),
                                  queries=str(self.out / "queries" / "metadata.json"), out=str(self.out / "curated"),
                                  max_per_query=400, url_shards=2)

        def figures():
            found = CurationFigures.read(str(self.out / "curated" / CurationFigures.FILE))
            return {"pool": found.pool_size, "kept": found.kept_pairs}
        self._job(3, "curate", ("curate",), job_config, figures)

    def _index(self, world: Path) -> None:
        from dedup.index import IndexConfig

        job_config = IndexConfig(name="demo-eval", images=[str(world / "eval")], labels=str(world / "eval" / "labels.tsv"),
                                 out=str(self.out / "dedup" / "index"))
        self._job(4, "dedup index", ("dedup", "index"), job_config, lambda: {"index": job_config.out})

    def _crawl(self, bucket: str) -> None:
        from pipeline.crawl import CrawlConfig
        from pipeline.fetch import FetchConfig
        from pipeline.images import ImageConfig

        job_config = CrawlConfig(urls=[str(self.out / "curated" / "urls" / "*.parquet")], out=f"{bucket}/shards",
                                 image=ImageConfig(image_size=96), shard_size=250, threads=16,
                                 fetch=FetchConfig(per_host=32, allow_networks=("127.0.0.0/8",), timeout=10.0),
                                 eval_indexes=[str(self.out / "dedup" / "index")])

        def figures():
            report = _read_json(f"{bucket}/shards/{CrawlFigures.FILE}")
            CrawlFigures.check(report, f"{bucket}/shards/{CrawlFigures.FILE}")
            _copy(f"{bucket}/shards/crawl_report.html", self.out / "reports" / "crawl_report.html")
            return {"status": report["status"], "success_ratio": report["success_ratio"]}
        self._job(5, "crawl", ("crawl",), job_config, figures)

    def _audit(self, bucket: str) -> None:
        from dedup.audit import AuditConfig

        job_config = AuditConfig(shards=[f"{bucket}/shards/*.tar"], indexes=[str(self.out / "dedup" / "index")],
                                 out=str(self.out / "dedup" / "audit"), write_clean=f"{bucket}/shards-clean")

        def figures():
            report = json.loads((self.out / "dedup" / "audit" / AuditFigures.FILE).read_text())
            AuditFigures.check(report, str(self.out / "dedup" / "audit" / AuditFigures.FILE))
            return {"pool": report["pool"], "eval_sets": {k: {x: v[x] for x in ("all", "overlap", "clean",
                                                                                  "contamination_pct")}
                                                          for k, v in report["eval_sets"].items()}}
        self._job(6, "dedup audit", ("dedup", "audit"), job_config, figures)

    def _train(self, bucket: str) -> None:
        argv = ["--train-data", f"{bucket}/shards-clean/sizes.json", "--model", self.config.model,
                "--batch-size", str(self.config.batch_size), "--epochs", str(self.config.epochs), "--lr", "2e-3",
                "--warmup", "20", "--weight-decay", "0.1", "--workers", "1", "--log-every", "10",
                "--save-every", "100000", "--augment", "strong", "--out", str(self.out / "run")]
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "trainer.train", *argv]

        def go():
            shutil.rmtree(self.out / "run", ignore_errors=True)  # each demo trains from scratch
            with open(self.out / "train.log", "w") as handle:
                child = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", "WIT_PROGRESS": "0"},
                                         stdout=handle, stderr=subprocess.STDOUT)
                returncode = follow_training(child, self.out / "run" / "metrics.jsonl")
            if returncode != 0:
                raise RuntimeError(f"torchrun exited {returncode}; see {self.out / 'train.log'}")
            metrics = [json.loads(line) for line in (self.out / "run" / "metrics.jsonl").read_text().splitlines()]
            return {"steps": metrics[-1]["step"], "final_loss": metrics[-1].get("loss"),
                    "samples_per_s": metrics[-1].get("samples_per_s")}
        self.stage(7, "train", "torchrun --nproc_per_node 2 -m trainer.train " + " ".join(argv), go)

    def _evaluate(self, world: Path) -> None:
        import yaml

        from trainer.evaluation.suite import SuiteConfig, run_suite

        classnames = json.loads((world / "eval" / "classnames.json").read_text())
        tasks = self.out / "eval" / "tasks.yaml"

        def go():  # the evaluation suite's code path, on one task: the held-out scenes
            tasks.parent.mkdir(parents=True, exist_ok=True)
            task = {"name": "scenes", "reader": "labels_tsv", "path": str(world / "eval"), "classnames": classnames,
                    "templates": TEMPLATES, "probes": []}
            tasks.write_text(yaml.safe_dump({"tasks": [task]}))
            results = run_suite(SuiteConfig(str(self.out / "run" / "model"), str(tasks), str(self.out / "eval")))
            record = results["tasks"][0]
            result = {"n": record["data"]["n"], **record["scores"], "chance": 1 / len(classnames),
                      "templates": record["templates"], "report": str(self.out / "eval" / "report.html")}
            (self.out / "zeroshot.json").write_text(json.dumps(result, indent=2))
            return result
        self.stage(8, "zero-shot", f"wit eval suite --checkpoint {self.out / 'run' / 'model'} --tasks {tasks} "
                                   f"--out {self.out / 'eval'}", go)

    def _report(self, manifest: dict) -> dict:
        from wit.demo_report import render

        summary = {"out": str(self.out), "seconds": round(time.monotonic() - self.started, 1), "storage": self.storage,
                   "stages": self.results, "commands": self.commands, "world": {
                       "pages": len(manifest["pages"]), "images": manifest["images"],
                       "planted_eval_copies": len(manifest["planted_eval_copies"])}}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (self.out / "report.html").write_text(render(summary, self.out))
        return summary


def follow_training(child: subprocess.Popen, metrics: Path, every: float = 1.0, line_every: float = 30.0) -> int:
    """Wait for the training processes, showing their progress from ``metrics.jsonl``: a bar on a
    terminal, a line every ``line_every`` seconds otherwise (CI logs). Returns the exit code."""
    from core.logs import progress_enabled

    bar, last_line, shown, printed = None, time.monotonic(), None, None
    while True:
        returncode = child.poll()
        record = last_metrics(metrics)
        if record is not None and "total_steps" in record:
            if progress_enabled():
                if bar is None:
                    from tqdm import tqdm

                    bar = tqdm(total=record["total_steps"], desc="      train", unit="step")
                if record != shown:
                    bar.n = record["step"]
                    bar.set_postfix(loss=record["loss"])
            elif record != printed and (time.monotonic() - last_line >= line_every or returncode is not None):
                print(f"      train: step {record['step']}/{record['total_steps']}, loss {record['loss']:.3f}, "
                      f"{record.get('samples_per_s') or 0:.0f} samples/s", flush=True)
                last_line, printed = time.monotonic(), record
            shown = record
        if returncode is not None:
            if bar is not None:
                bar.close()
            return returncode
        time.sleep(every)


def last_metrics(path: Path) -> dict | None:
    """The last training record of a metrics.jsonl (zero-shot lines skipped), or None."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if "loss" in record:
            return record
    return None


def _wordnet_available() -> bool:
    from query_list.wordnet import WordNetNotFound, find_wordnet_dir

    try:
        find_wordnet_dir(None)
        return True
    except WordNetNotFound:
        return False


def _read_json(path: str) -> dict:
    import fsspec

    with fsspec.open(path, "rt") as handle:
        return json.load(handle)


def _copy(source: str, target: Path) -> None:
    import fsspec

    target.parent.mkdir(parents=True, exist_ok=True)
    with fsspec.open(source, "rb") as handle:
        target.write_bytes(handle.read())


def summary_text(summary: dict) -> str:
    stages = summary["stages"]
    zs = stages.get("zero-shot", {})
    audit = next(iter(stages.get("dedup audit", {}).get("eval_sets", {}).values()), {})
    crawl = stages.get("crawl", {})
    lines = [
        f"wit demo finished in {summary['seconds'] / 60:.1f} min; report: {Path(summary['out']) / 'report.html'}",
        f"  storage    {summary.get('storage') or 'not recorded'}",
        f"  world      {summary['world']['pages']} pages, {summary['world']['images']} images "
        f"({summary['world']['planted_eval_copies']} edited copies of evaluation scenes planted)",
        f"  queries    {stages.get('queries', {}).get('queries')} ({stages.get('queries', {}).get('by_source')})",
        f"  curate     {stages.get('curate', {}).get('pool')} candidate pairs -> {stages.get('curate', {}).get('kept')} kept",
        f"  crawl      {crawl.get('status', {}).get('success')} images, "
        f"{crawl.get('status', {}).get('eval_duplicate')} evaluation duplicates dropped",
        f"  audit      contamination left {audit.get('contamination_pct')}% of {audit.get('all')} evaluation images",
        f"  train      {stages.get('train', {}).get('steps')} steps, final loss {stages.get('train', {}).get('final_loss')}",
        f"  zero-shot  top-1 {zs.get('top1', 0):.3f} on {zs.get('n')} held-out scenes (chance {zs.get('chance', 0):.3f})",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    data = Path(args.data) if args.data else None
    if args.fast:
        world = WorldConfig(pages=20, images_per_page=16, eval_per_class=4, eval_copies=6, web_per_class=40)
        config = DemoConfig(out, fast=True, world=world, epochs=args.epochs or 12, data=data, storage=args.storage)
    else:
        world = WorldConfig(eval_per_class=100 if data else 8)
        config = DemoConfig(out, world=world, epochs=args.epochs or 30, data=data, storage=args.storage)
    try:
        summary = Demo(config).run()
    except StageFailed as exc:
        print(f"\nwit demo: {exc}", file=sys.stderr)
        return 1
    print("\n" + summary_text(summary))
    return 0
