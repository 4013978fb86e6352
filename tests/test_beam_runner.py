"""Local Beam runs use the Python FnApiRunner, never Prism (which downloads a binary)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from wit.beam import FN_API_RUNNER, make_pipeline, pipeline_options


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
    from wit.beam import local_options

    pipeline = make_pipeline(local_options(num_workers=2, running_mode="multi_threading"))
    result = pipeline | beam.Create(list(range(100))) | beam.Map(lambda x: x % 3) | beam.combiners.Count.PerElement()
    assert_that(result, equal_to([(0, 34), (1, 33), (2, 33)]))
    pipeline.run().wait_until_finish()
    assert isinstance(pipeline.runner, FnApiRunner)


def test_worker_processes_per_machine():
    from wit.beam import local_options, worker_processes_per_machine

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

    from wit.beam import freeze_long_lived

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
