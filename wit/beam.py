"""The local Beam runner pin and the shared job plumbing.

Since Beam 2.68 the ``DirectRunner`` first tries the Prism runner, which downloads a Go
binary from the internet; that fails here and on air-gapped laptops. Every wit job therefore
builds its pipeline through :func:`make_pipeline`, which replaces a missing or ``DirectRunner``
runner with Beam's Python ``FnApiRunner`` and leaves real remote runners (Dataflow) alone.
``--direct_num_workers`` and ``--direct_running_mode`` keep working: the FnApiRunner reads them.
"""

from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

FN_API_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"

# Names that mean "run it here"; each of them is pinned to the FnApiRunner.
_LOCAL_RUNNER_NAMES = {"", "directrunner", "direct", "prismrunner", "prism", "fnapirunner", FN_API_RUNNER.lower()}


def is_local_runner(runner: str | None) -> bool:
    return (runner or "").strip().lower() in _LOCAL_RUNNER_NAMES


def pin_local_runner(options: PipelineOptions) -> PipelineOptions:
    """Point a local run at the Python FnApiRunner (in place); return the options."""
    standard = options.view_as(StandardOptions)
    if is_local_runner(standard.runner):
        standard.runner = FN_API_RUNNER
    return options


def pipeline_options(beam_args: Sequence[str] | None = None, **overrides) -> PipelineOptions:
    """Beam options from the flags our own parser did not consume, local runner pinned."""
    options = PipelineOptions(list(beam_args or []), **overrides)
    return pin_local_runner(options)


def local_options(num_workers: int = 1, running_mode: str = "in_memory", **overrides) -> PipelineOptions:
    """Options for a local run (tests, the demo, benchmarks) on the pinned runner."""
    options = pipeline_options([], **overrides)
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = num_workers
    direct.direct_running_mode = running_mode
    return options


def runner_name(options: PipelineOptions) -> str:
    return options.view_as(StandardOptions).runner or ""


def make_pipeline(options: PipelineOptions):
    """A ``beam.Pipeline`` on the pinned runner (local) or the runner the options name."""
    import apache_beam as beam

    pin_local_runner(options)
    return beam.Pipeline(options=options)
