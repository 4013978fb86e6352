"""The local Beam runner pin and the shared job plumbing.

Since Beam 2.68 the ``DirectRunner`` first tries the Prism runner, which downloads a Go
binary from the internet; that fails here and on air-gapped laptops. Every wit job therefore
builds its pipeline through :func:`make_pipeline`, which replaces a missing or ``DirectRunner``
runner with Beam's Python ``FnApiRunner`` (our :class:`core.beam_local.LocalRunner`, which starts
multi-process workers forked from a warm copy of the launcher) and leaves real remote runners
(Dataflow) alone. ``--direct_num_workers`` and ``--direct_running_mode`` keep working: the
FnApiRunner reads them. On a Beam release the local runner was not tested with, Beam's stock
FnApiRunner is used instead (:func:`local_runner_name`).
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.version import __version__ as BEAM_VERSION

log = logging.getLogger(__name__)

FN_API_RUNNER = "core.beam_local.LocalRunner"  # Beam's FnApiRunner, workers forked warm
STOCK_FN_API_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"  # the fallback

# Names that mean "run it here"; each of them is pinned to the FnApiRunner.
_LOCAL_RUNNER_NAMES = {"", "directrunner", "direct", "prismrunner", "prism", "fnapirunner", FN_API_RUNNER.lower(),
                       "apache_beam.runners.portability.fn_api_runner.fnapirunner"}


def is_local_runner(runner: str | None) -> bool:
    return (runner or "").strip().lower() in _LOCAL_RUNNER_NAMES


def pin_local_runner(options: PipelineOptions) -> PipelineOptions:
    """Point a local run at the Python FnApiRunner (in place); return the options."""
    standard = options.view_as(StandardOptions)
    if is_local_runner(standard.runner):
        standard.runner = local_runner_name()
    return options


# The Beam releases (major, minor; inclusive) whose internals core.beam_local's zygote was
# written and tested against: FnApiRunner.run_via_runner_api, the SUBPROCESS_SDK environment
# whose payload is the worker command naming sdk_worker_main, and sdk_worker_main.main reading
# its environment (docs/development.md). Outside them, or with WIT_LOCAL_RUNNER=stock, local runs use Beam's
# stock FnApiRunner (:func:`local_runner_name`): slower worker starts, same results.
TESTED_BEAM = ((2, 77), (2, 77))


def beam_version_tested(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed Beam) is in :data:`TESTED_BEAM`."""
    try:
        found = tuple(int(part) for part in (version or BEAM_VERSION).split(".")[:2])
    except ValueError:  # an unusual version string: do not guess
        return False
    return TESTED_BEAM[0] <= found <= TESTED_BEAM[1]


def zygote_supported() -> bool:
    """Our runner may be used: a tested Beam, and no ``WIT_LOCAL_RUNNER=stock``."""
    if os.environ.get("WIT_LOCAL_RUNNER", "").lower() == "stock":
        return False
    if not beam_version_tested():
        log.warning("apache-beam %s is outside the releases the local runner was tested with (%s to %s): "
                    "using Beam's stock FnApiRunner", BEAM_VERSION, *(".".join(map(str, v)) for v in TESTED_BEAM))
        return False
    return True


def local_runner_name() -> str:
    """Our :class:`core.beam_local.LocalRunner` on the Beam releases it was tested with, Beam's
    stock FnApiRunner otherwise or with ``WIT_LOCAL_RUNNER=stock`` (same flags, same results)."""
    return FN_API_RUNNER if zygote_supported() else STOCK_FN_API_RUNNER


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


def machine_cores() -> int:
    """The cores this process may run on (the affinity mask, as a container or taskset sets it)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def use_all_cores(options: PipelineOptions, beam_args: Sequence[str]) -> PipelineOptions:
    """A local job runs one worker process per core unless its flags say otherwise
    (``--direct_num_workers``, ``--direct_running_mode``): Beam's own default is one process,
    which leaves every other core idle. Remote runners are left alone."""
    if not is_local_runner(runner_name(options)):
        return options
    given = {arg.split("=", 1)[0] for arg in beam_args if arg.startswith("--")}
    direct = options.view_as(DirectOptions)
    cores = machine_cores()
    if "--direct_num_workers" not in given:
        direct.direct_num_workers = cores
    if "--direct_running_mode" not in given:
        direct.direct_running_mode = "multi_processing" if direct.direct_num_workers > 1 else "in_memory"
    return options


def default_experiment(options: PipelineOptions, name: str, value: object) -> PipelineOptions:
    """``--experiments name=value`` unless the flags already give ``name`` (any value)."""
    from apache_beam.options.pipeline_options import DebugOptions

    debug = options.view_as(DebugOptions)
    if debug.lookup_experiment(name) is None:
        debug.add_experiment(f"{name}={value}")
    return options


def runner_name(options: PipelineOptions) -> str:
    return options.view_as(StandardOptions).runner or ""


def worker_processes_per_machine(options: PipelineOptions) -> int:
    """How many SDK worker processes will share one machine's cores: the local runner's
    ``--direct_num_workers`` in multi_processing mode (one process otherwise); on Dataflow one per
    vCPU (returned as 0: the worker counts its own cores) unless
    ``--experiments=no_use_multiple_sdk_containers`` asks for one per machine."""
    if is_local_runner(runner_name(options)):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing":
            return max(1, direct.direct_num_workers or 1)
        return 1
    from apache_beam.options.pipeline_options import DebugOptions

    experiments = options.view_as(DebugOptions).experiments or []
    return 1 if "no_use_multiple_sdk_containers" in experiments else 0


def make_pipeline(options: PipelineOptions):
    """A ``beam.Pipeline`` on the pinned runner (local) or the runner the options name."""
    pin_local_runner(options)
    return beam.Pipeline(options=options)


# -- flags: ours vs Beam's ---------------------------------------------------------------------
def _beam_option_classes():
    seen, stack = [], list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return [cls for cls in seen if cls.__module__.startswith("apache_beam.")]


def unknown_beam_args(beam_args: Sequence[str]) -> list[str]:
    """The arguments in ``beam_args`` that no Beam option takes: unknown flags, and stray
    values (Beam would drop both silently)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in _beam_option_classes():
        cls._add_argparse_args(parser)  # noqa: SLF001
    _, unknown = parser.parse_known_args(list(beam_args))
    return unknown


def split_args(parser, argv: Sequence[str] | None):
    """Parse our flags with ``parser``; return ``(args, beam_args)``; anything neither ours nor
    Beam's is an error. ``parser`` must not take abbreviations (``allow_abbrev=False``): with
    ``parse_known_args`` a prefix such as ``--cap`` would silently become ``--caption-col``."""
    if parser.allow_abbrev:
        raise ValueError(f"{parser.prog}: build the parser with allow_abbrev=False")
    args, beam_args = parser.parse_known_args(None if argv is None else list(argv))
    unknown = unknown_beam_args(beam_args)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args, beam_args


# -- shared transforms -------------------------------------------------------------------------
class MergeCounts(beam.CombineFn):
    """Sums ``{key: count}`` dictionaries. Jobs count locally (per bundle or batch) and send a
    few dictionaries instead of one element per key: Beam's cost is per element."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, accumulator: dict, counts: dict) -> dict:
        get = accumulator.get
        for key, count in counts.items():
            accumulator[key] = get(key, 0) + count
        return accumulator

    def merge_accumulators(self, accumulators) -> dict:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            self.add_input(merged, other)
        return merged

    def extract_output(self, accumulator: dict) -> dict:
        return accumulator


def windowed(value):
    """Wrap a value emitted from ``finish_bundle`` (global window)."""
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


def run_job(argv, *, prog: str, doc: str, config: type, build_pipeline) -> object:
    """The one way a wit Beam job starts: our flags (generated from the job's ``config`` class,
    :mod:`core.config`) parsed strictly (unknown ones are errors), the rest handed to Beam with
    the local runner pinned (one worker process per core unless the flags say otherwise), the
    graph built, run to the end. Returns the job's config (for the caller's closing log line)."""
    import argparse

    from core import config as flags

    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    flags.add_arguments(parser, config)
    args, beam_args = split_args(parser, argv)
    try:
        job_config = flags.config_from_args(config, args)
    except ValueError as exc:
        parser.error(str(exc))
    return run_config(job_config, build_pipeline, beam_args)


def run_config(job_config, build_pipeline, beam_args: Sequence[str] = ()) -> object:
    """A job run from its config built in code (tests, the demo): Beam's flags as ``run_job``
    takes them, the local runner pinned with one worker process per core unless they say
    otherwise, the graph built and run to the end. Returns ``job_config``."""
    unknown = unknown_beam_args(beam_args)
    if unknown:
        raise ValueError(f"unrecognized Beam arguments: {' '.join(unknown)}")
    pipeline = make_pipeline(use_all_cores(pipeline_options(beam_args), beam_args))
    build_pipeline(pipeline, job_config)
    freeze_long_lived()
    pipeline.run().wait_until_finish()
    return job_config


def freeze_long_lived() -> None:
    """Take every object alive now (mostly the imported modules: Beam alone brings a few hundred
    thousand) out of the cyclic garbage collector's view, for the rest of the process.

    Called by the launcher before the run and by workers' DoFns in ``setup()``. Full collections
    during the job stop walking those objects, and so does the collection at interpreter exit,
    which the local runner pays once per worker, one worker after the other (figures in
    docs/development.md). Reference counting still frees frozen objects;
    only cycles among them (none to speak of in imported modules) are never collected."""
    import gc

    gc.freeze()


def job_main(module: str) -> None:
    """``python -m <job module>``: logging set up, then the job run through its importable module,
    not ``__main__``: worker processes (multi_processing, Dataflow) unpickle our DoFns and
    records by module path."""
    import importlib
    import sys

    from core.logs import setup_logging

    setup_logging()
    sys.exit(importlib.import_module(module).run())
