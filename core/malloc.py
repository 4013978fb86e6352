"""The memory allocator of a job's processes: jemalloc when the machine has it, for the jobs that
ask for it (the crawl, ``core.jobs.Job.jemalloc``).

A crawl worker's 128 download threads allocate and free buffers (TLS records, bodies, images)
all the time. glibc's malloc keeps what they free inside per-thread arenas, so a worker's
resident memory climbs with the urls it has done, well above the memory it uses (docs/crawl.md,
"Scale"); capping the arenas holds it lower but makes the threads wait on each other's locks.
jemalloc gives free pages back by itself: in the scale benchmark a worker stayed 70-120 MB lower
and flat over 100,000 urls, at no CPU cost that the benchmarks could see.

An allocator is chosen when a process starts, so the job's command chooses it for all of its
processes: its entry point (``wit crawl``, ``python -m pipeline.crawl``) calls
:func:`preload_jemalloc` before anything else, which, when ``libjemalloc.so.2`` is installed
(Debian: ``libjemalloc2``, which ``make install`` installs) and this process does not have it
yet, starts the same command again with the library preloaded (``LD_PRELOAD``; settings
:data:`SETTINGS`: jemalloc's :data:`CONF` and Arrow's buffers on it too, each unless the
environment gives its own): the launcher,
the zygote it forks and the Beam workers forked from that or started with its environment all
allocate with jemalloc. On Dataflow the SDK container preloads it (infra/dataflow/Dockerfile).
``WIT_MALLOC=glibc`` keeps the C library's malloc; without the library, or off Linux, the job
runs on the system's malloc (each worker's allocator is in the crawl report).
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import sys

ENV = "WIT_MALLOC"  # "jemalloc" (the default) or "glibc"
_TRIED = "WIT_MALLOC_PRELOADED"  # set on the restarted command: it restarts once at most
# jemalloc's settings unless the environment gives its own MALLOC_CONF: two arenas per process
# (its default is 4 per core, and Beam already runs one worker process per core), which held a
# crawl worker lowest at the CPU of glibc's malloc (docs/crawl.md, "Scale").
CONF = "narenas:2"
# What the restarted command's environment gets unless it gives its own: jemalloc's settings, and
# Arrow's buffers (the url list's decoded row groups, each shard's parquet) through the same
# allocator: pyarrow's default pool, its own mimalloc, kept 138 MB resident for a 56 MB decoded
# list where jemalloc kept 77 MB.
SETTINGS = {"MALLOC_CONF": CONF, "ARROW_DEFAULT_MEMORY_POOL": "system"}


def wanted() -> bool:
    """Whether the environment leaves jemalloc on (``WIT_MALLOC`` unset or ``jemalloc``)."""
    value = os.environ.get(ENV, "jemalloc").strip().lower()
    if value not in ("jemalloc", "glibc"):
        raise SystemExit(f"{ENV}={value!r}: use jemalloc (the default) or glibc")
    return value == "jemalloc"


def library() -> str | None:
    """The loader's name for jemalloc when this machine has it (``ldconfig``'s cache), else None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("jemalloc")
    return name if name and name.startswith("libjemalloc.so") else None


@functools.cache
def allocator() -> str:
    """The allocator this process runs on: ``jemalloc`` when the library is mapped, else
    ``system`` (glibc's malloc on Linux). Fixed when the process starts (a fork keeps it), so read
    once: the crawl reports it with every shard."""
    return "jemalloc" if _mapped("libjemalloc") else "system"


def _mapped(name: str) -> bool:
    try:
        with open("/proc/self/maps") as handle:
            return any(name in line for line in handle)
    except OSError:
        return False


def restart_command(environ: dict[str, str]) -> tuple[list[str], dict[str, str]] | None:
    """The command line and environment that start this process again with jemalloc preloaded,
    or None when it needs no restart (turned off, already loaded, restarted once already, no
    library, no original command line)."""
    if not wanted() or environ.get(_TRIED) or allocator() == "jemalloc":
        return None
    name = library()
    argv = list(getattr(sys, "orig_argv", []))
    if name is None or not argv or not sys.executable:
        return None
    preload = " ".join(part for part in (name, environ.get("LD_PRELOAD", "")) if part)
    return argv, {**SETTINGS, **environ, "LD_PRELOAD": preload, _TRIED: "1"}


def preload_jemalloc() -> None:
    """Start this command again with jemalloc preloaded when it needs it (see the module); returns
    only when it does not. Only for a process's entry point: it replaces the whole process."""
    command = restart_command(dict(os.environ))
    if command is None:
        return
    argv, environ = command
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environ)


def preload_for(module: str) -> None:
    """``python -m MODULE``'s first step: :func:`preload_jemalloc` when the job registry
    (core.jobs) says the job of ``module`` runs on jemalloc."""
    from core.jobs import by_module

    if by_module(module).jemalloc:
        preload_jemalloc()


@functools.cache
def glibc():
    """The C library when the process allocates with glibc (its malloc tuning calls), else None."""
    if allocator() != "system":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(count: int = 2) -> None:
    """Ask glibc to create no arena beyond ``count`` in this process. By default every thread
    that allocates may get its own (up to 8 per core), each holding freed memory of its own; with
    the limit, the download threads share the arenas that exist (the threads started before the
    crawl's ``setup`` have made several). Nothing to do under jemalloc or another C library."""
    if glibc() is not None:
        glibc().mallopt(-8, count)  # M_ARENA_MAX


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``). glibc keeps what a
    thread frees inside its heap, so without this a worker's resident memory follows the highest
    point its download threads' buffers ever reached together. jemalloc returns free pages by
    itself (after 10 s unused), so this does nothing under it."""
    if glibc() is not None:
        glibc().malloc_trim(0)
