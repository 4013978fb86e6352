"""Local Beam runs use the Python FnApiRunner, never Prism (which downloads a binary)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from core.beam import FN_API_RUNNER, make_pipeline, pipeline_options


def test_fixture_runs_on_fn_api_runner(beam_options):
    pipeline = make_pipeline(beam_options)
    result = pipeline | beam.Create(range(10)) | beam.CombineGlobally(sum)
    assert_that(result, equal_to([45]))
    pipeline.run().wait_until_finish()
    assert isinstance(pipeline.runner, FnApiRunner)


def test_direct_runner_flag_is_pinned_too():
    for argv in ([], ["--runner=DirectRunner"], ["--runner=PrismRunner"]):
        options = pipeline_options(argv)
        assert options.view_as(StandardOptions).runner == FN_API_RUNNER


def test_remote_runner_is_left_alone():
    options = pipeline_options(["--runner=DataflowRunner", "--project=p", "--region=us-central1"])
    assert options.view_as(StandardOptions).runner == "DataflowRunner"


def test_two_workers_multi_threading():
    from core.beam import local_options

    pipeline = make_pipeline(local_options(num_workers=2, running_mode="multi_threading"))
    result = pipeline | beam.Create(list(range(100))) | beam.Map(lambda x: x % 3) | beam.combiners.Count.PerElement()
    assert_that(result, equal_to([(0, 34), (1, 33), (2, 33)]))
    pipeline.run().wait_until_finish()
    assert isinstance(pipeline.runner, FnApiRunner)


def test_worker_processes_per_machine():
    from core.beam import local_options, worker_processes_per_machine

    assert worker_processes_per_machine(local_options(num_workers=2, running_mode="multi_processing")) == 2
    assert worker_processes_per_machine(local_options(num_workers=2, running_mode="multi_threading")) == 1
    assert worker_processes_per_machine(local_options()) == 1
    dataflow = ["--runner=DataflowRunner", "--project=p", "--region=us-central1"]
    assert worker_processes_per_machine(pipeline_options(dataflow)) == 0  # one per vCPU
    assert worker_processes_per_machine(pipeline_options(dataflow + ["--experiments=no_use_multiple_sdk_containers"])) == 1


def test_run_job_freezes_the_imported_objects_out_of_the_collector():
    """The launcher freezes what it holds before the run (full collections, and the one at exit,
    stop walking Beam's modules); frozen objects still die by reference counting."""
    import gc

    from core.beam import freeze_long_lived

    gc.unfreeze()
    before = gc.get_freeze_count()
    try:
        freeze_long_lived()
        frozen = gc.get_freeze_count()
        assert frozen > before + 10_000  # pytest, Beam, this suite: hundreds of thousands of objects
        tracked = {id(o) for o in gc.get_objects()}
        assert id(beam.Map) not in tracked  # the frozen generation is outside the collector's lists
    finally:
        gc.unfreeze()


# -- multi-process workers forked from the zygote (core.beam_local) ----------------------------------
JOB = """
import json, os, sys, threading, time
import apache_beam as beam
from core.beam import local_options, make_pipeline

LAUNCHER_TOKEN = "launcher-state"  # a forked worker sees the launcher's objects; a fresh interpreter does not
mode, out = sys.argv[1], sys.argv[2]
if mode == "threads":  # a thread in the launcher: forking is unsafe, workers start as Beam starts them
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()

def visit(x):
    if mode == "fail":
        raise ValueError("boom in a worker")
    if mode == "hang":
        open(os.path.join(out, f"{os.getpid()}.pid"), "w").write(str(os.getppid()))
        time.sleep(600)
    return (x % 4, (os.getpid(), os.getppid(), getattr(sys.modules["__main__"], "LAUNCHER_TOKEN", None)))

pipeline = make_pipeline(local_options(num_workers=2, running_mode="multi_processing"))
_ = (pipeline | beam.Create(list(range(40))) | beam.Reshuffle() | beam.Map(visit) | beam.GroupByKey()
     | beam.Map(lambda kv: (kv[0], sorted(set(kv[1])))) | beam.combiners.ToList()
     | beam.Map(lambda rows: open(os.path.join(out, "result.json"), "w").write(json.dumps(rows))))
try:
    pipeline.run().wait_until_finish()
    error = None
except Exception as exc:
    error = repr(exc)
try:
    os.waitpid(-1, os.WNOHANG)
    children_left = True
except ChildProcessError:
    children_left = False
zygotes = [n for n in os.listdir(os.environ.get("TMPDIR", "/tmp")) if n.startswith("wit-zygote-")]
json.dump({"launcher": os.getpid(), "error": error, "children_left": children_left, "zygote_dirs": zygotes},
          open(os.path.join(out, "launcher.json"), "w"))
"""


def run_job_script(tmp_path, mode: str, timeout: float = 240, **env) -> tuple[dict, list]:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run([sys.executable, str(script), mode, str(tmp_path)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "TMPDIR": str(tmp), "WIT_QUIET": "1", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = json.loads((tmp_path / "launcher.json").read_text())
    rows = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else []
    return launcher, rows


def test_multi_process_workers_are_forked_from_the_warm_launcher(tmp_path):
    launcher, rows = run_job_script(tmp_path, "ok")
    assert launcher["error"] is None and sorted(key for key, _ in rows) == [0, 1, 2, 3]
    workers = {tuple(w[:2]) for _, seen in rows for w in seen}
    assert all(token == "launcher-state" for _, seen in rows for *_, token in seen)  # the launcher's objects
    parents = {parent for _, parent in workers}
    assert len(parents) == 1 and launcher["launcher"] not in parents  # one zygote forked them all
    assert not launcher["children_left"] and launcher["zygote_dirs"] == []  # zygote reaped, socket folder gone


def test_workers_start_as_fresh_interpreters_when_the_launcher_runs_threads_or_when_asked(tmp_path):
    for case, mode, env in (("threads", "threads", {}), ("asked", "ok", {"WIT_FORK_WORKERS": "0"})):
        (tmp_path / case).mkdir()
        launcher, rows = run_job_script(tmp_path / case, mode, **env)
        assert launcher["error"] is None and sorted(key for key, _ in rows) == [0, 1, 2, 3]
        assert all(token is None for _, seen in rows for *_, token in seen), case  # Beam's own worker start
        assert not launcher["children_left"]


def test_a_failing_worker_fails_the_job_and_leaves_no_process(tmp_path):
    launcher, rows = run_job_script(tmp_path, "fail")
    assert "boom in a worker" in launcher["error"] and rows == []
    assert not launcher["children_left"] and launcher["zygote_dirs"] == []


def test_a_killed_launcher_takes_its_zygote_and_workers_with_it(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    job = subprocess.Popen([sys.executable, str(script), "hang", str(tmp_path)], env={**os.environ, "WIT_QUIET": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        zygote = int(next(tmp_path.glob("*.pid")).read_text())
        assert len(workers) == 2 and all(alive(pid) for pid in [*workers, zygote])
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in [*workers, zygote]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in [*workers, zygote])


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_command_becomes_beams_own_worker_when_the_zygote_is_gone(tmp_path):
    from core.beam_local import CLIENT

    result = subprocess.run([sys.executable, "-I", "-S", "-c", CLIENT, str(tmp_path / "no-such.sock")],
                            capture_output=True, text=True, timeout=120, env={**os.environ})
    assert result.returncode != 0 and "sdk_worker_main" in result.stderr  # exec'd Beam's worker, which needs a runner


def test_local_jobs_use_every_core_unless_told_otherwise():
    from core.beam import machine_cores, use_all_cores

    cores = machine_cores()
    direct = use_all_cores(pipeline_options([]), []).view_as(DirectOptions)
    assert direct.direct_num_workers == cores
    assert direct.direct_running_mode == ("multi_processing" if cores > 1 else "in_memory")
    told = ["--direct_num_workers", "1"]
    direct = use_all_cores(pipeline_options(told), told).view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (1, "in_memory")
    told = ["--direct_running_mode=multi_threading"]
    direct = use_all_cores(pipeline_options(told), told).view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (cores, "multi_threading")
    dataflow = ["--runner=DataflowRunner", "--project=p", "--region=us-central1"]
    assert use_all_cores(pipeline_options(dataflow), dataflow).view_as(DirectOptions).direct_num_workers == 1


def test_an_untested_beam_release_falls_back_to_the_stock_runner_and_a_job_runs(monkeypatch, caplog):
    """The zygote binds us to Beam internals of the releases in TESTED_BEAM; on any other release
    local runs take Beam's own FnApiRunner, which still runs multi-process jobs."""
    import core.beam
    from core.beam import STOCK_FN_API_RUNNER, beam_version_tested, local_options

    assert beam_version_tested()  # the pinned release is a tested one
    assert not beam_version_tested("2.99.0") and not beam_version_tested("3.0.0")
    assert not beam_version_tested("2.66.1") and not beam_version_tested("unknown")
    monkeypatch.setattr(core.beam, "BEAM_VERSION", "2.99.0")
    options = local_options(num_workers=2, running_mode="multi_processing")
    assert options.view_as(StandardOptions).runner == STOCK_FN_API_RUNNER
    assert "outside the releases the local runner was tested with" in caplog.text
    pipeline = make_pipeline(options)
    result = pipeline | beam.Create(list(range(40))) | beam.Map(lambda x: (x % 2, x)) | beam.CombinePerKey(sum)
    assert_that(result, equal_to([(0, 380), (1, 400)]))
    pipeline.run().wait_until_finish()
    assert type(pipeline.runner) is FnApiRunner  # Beam's own, not core.beam_local.LocalRunner


def test_wit_local_runner_stock_asks_for_the_stock_runner(monkeypatch):
    from core.beam import STOCK_FN_API_RUNNER

    monkeypatch.setenv("WIT_LOCAL_RUNNER", "stock")
    assert pipeline_options([]).view_as(StandardOptions).runner == STOCK_FN_API_RUNNER
    monkeypatch.delenv("WIT_LOCAL_RUNNER")
    assert pipeline_options([]).view_as(StandardOptions).runner == FN_API_RUNNER


def test_local_workers_get_the_jobs_options_as_dataflow_workers_do():
    """Beam's FnApiRunner starts its subprocess workers with no options at all, so a worker-side
    flag such as ``--experiments data_buffer_time_limit_ms=1000`` did nothing locally; ours hands
    every worker the job's options (what the worker reads: ``PIPELINE_OPTIONS``)."""
    from apache_beam.options.pipeline_options import DebugOptions

    from core.beam import local_options

    def seen_by_worker(_):
        given = json.loads(os.environ.get("PIPELINE_OPTIONS", "{}"))
        return given.get("beam:option:experiments:v1", []), given.get("beam:option:job_name:v1"), os.getpid()

    # two workers: an integer option (direct_num_workers) must reach them in a form they parse
    options = local_options(num_workers=2, running_mode="multi_processing", job_name="options-reach-workers")
    options.view_as(DebugOptions).experiments = ["data_buffer_time_limit_ms=1000"]
    pipeline = make_pipeline(options)
    seen = pipeline | beam.Create([0, 1]) | beam.Reshuffle() | beam.Map(seen_by_worker)
    launcher = os.getpid()

    def check(rows):
        assert len(rows) == 2, rows
        for experiments, job_name, worker in rows:
            assert "data_buffer_time_limit_ms=1000" in experiments and job_name == "options-reach-workers", rows
            assert worker != launcher  # a worker process, not the launcher's in-memory one

    assert_that(seen, check)
    pipeline.run().wait_until_finish()


def test_an_experiment_is_added_unless_the_flags_give_it():
    from apache_beam.options.pipeline_options import DebugOptions

    from core.beam import default_experiment

    options = default_experiment(pipeline_options(["--experiments=beam_fn_api"]), "data_buffer_time_limit_ms", 1000)
    assert options.view_as(DebugOptions).experiments == ["beam_fn_api", "data_buffer_time_limit_ms=1000"]
    told = pipeline_options(["--experiments=data_buffer_time_limit_ms=50"])
    assert default_experiment(told, "data_buffer_time_limit_ms", 1000).view_as(DebugOptions).experiments == [
        "data_buffer_time_limit_ms=50"]
