"""Flex Template entry point: ``WIT_JOB`` (queries, curate, crawl, dedup_index, dedup_audit:
the template names of the registry, core.jobs) names the job. Dataflow passes every template
parameter as ``--name=value`` with the metadata's underscore names (the metadata is generated
from the job's config: ``python -m wit.generated``); the job's own flags are hyphenated
(``--max-per-query``), Beam's are not (``--temp_location``). :func:`translate` maps the first
onto the job's flags, turns ``true`` / ``false`` of a switch into its presence or absence, and
leaves Beam's flags alone."""

from __future__ import annotations

import argparse
import os
import sys

from core import config
from core.jobs import JOBS as REGISTRY, by_template

JOBS = {job.template: job.module for job in REGISTRY}


def job_flags(config_class: type) -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    config.add_arguments(parser, config_class)
    return {flag: action for action in parser._actions for flag in action.option_strings}  # noqa: SLF001


def translate(argv: list[str], flags: dict[str, argparse.Action]) -> list[str]:
    out = []
    for arg in argv:
        name, has_value, value = arg.partition("=")
        hyphenated = "--" + name[2:].replace("_", "-") if name.startswith("--") else name
        if hyphenated not in flags:
            out.append(arg)
            continue
        if flags[hyphenated].nargs == 0:  # a switch: true/false from the template form
            if not has_value or value.lower() in ("1", "true", "yes"):
                out.append(hyphenated)
            continue
        out.append(f"{hyphenated}={value}" if has_value else hyphenated)
    return out


if __name__ == "__main__":
    from core.logs import setup_logging

    setup_logging()
    job = by_template(os.environ["WIT_JOB"])
    sys.exit(job.load().run(translate(sys.argv[1:], job_flags(job.config_class()))))
