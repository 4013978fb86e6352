"""The local runner: Beam's FnApiRunner, its worker processes forked from a warm zygote.

With ``--direct_running_mode multi_processing`` the FnApiRunner starts each SDK worker as
``python -m apache_beam.runners.worker.sdk_worker_main``: a fresh interpreter that imports Beam
and then the job's modules again before it takes its first element (seconds of CPU per worker:
figures in docs/development.md), paid by every worker of every local run after the launcher has
paid it once. :class:`LocalRunner` starts them warm instead: just before the run, while the launcher
has imported Beam and the job and has no thread and no gRPC object yet, it forks a *zygote*.
The zygote imports the worker entry point and waits on a Unix socket; the command Beam runs for
each worker is a small client (``python -I -S``, a few milliseconds) that hands the zygote its
environment (control and logging addresses, pipeline options, worker id) and waits; the zygote
forks a worker from itself, which runs Beam's ``sdk_worker_main.main`` with that environment, and
returns the worker's exit code to the client. Nothing else changes: the workers speak to the
runner over gRPC exactly as Beam's own would.

Nothing is left behind: a client that goes away (Beam kills it) takes its worker with it, and the
zygote kills its workers and exits when the launcher closes its lifeline (after the run, or when
the launcher dies). Whenever the zygote cannot be used (not multi_processing; no ``fork`` or
no process file descriptors, which need Linux 5.3; Python threads already running in the
launcher, which forking could catch holding a lock; or a client that cannot reach the zygote)
workers start the way Beam starts them; so they do with ``WIT_FORK_WORKERS=0``. On a Beam release
outside ``core.beam.TESTED_BEAM`` the runner is not used at all (``core.beam.zygote_supported``). The native
threads the imports leave (the BLAS pool, pyarrow's jemalloc) have their own fork handlers, as
they must for ``multiprocessing``'s fork.

Forked or not, the workers get the job's pipeline options, as Dataflow's do
(:meth:`LocalRunner.hand_options_to_workers`); Beam's FnApiRunner gives its workers none.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from core.beam import beam_version_tested

log = logging.getLogger(__name__)

BEAM_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"

# The worker command Beam runs: hand our environment to the zygote, wait for the worker's exit
# code, exit with it. When the zygote cannot be reached, become Beam's own worker instead.
CLIENT = f"""
import os, socket, sys
path = sys.argv[1]
try:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(path)
except OSError:
    os.execv(sys.executable, [sys.executable, "-m", "{BEAM_WORKER_MODULE}"])
import json
conn.sendall(json.dumps(dict(os.environ)).encode() + b"\\n")
reply = b""
while True:
    chunk = conn.recv(64)
    if not chunk:
        break
    reply += chunk
sys.exit(int(reply) if reply.strip().lstrip(b"-").isdigit() else 70)
"""


class LocalRunner(FnApiRunner):
    """The FnApiRunner, with multi-process workers forked from a zygote (see the module)."""

    def run_via_runner_api(self, pipeline_proto, options):
        self.hand_options_to_workers(options)
        zygote = None
        if (options.view_as(DirectOptions).direct_running_mode == "multi_processing"
                and os.environ.get("WIT_FORK_WORKERS", "1") not in ("0", "false") and beam_version_tested()):
            zygote = Zygote.start()
        if zygote is not None:
            replaced = 0
            for environment in pipeline_proto.components.environments.values():
                if environment.urn == python_urns.SUBPROCESS_SDK and BEAM_WORKER_MODULE.encode() in environment.payload:
                    environment.payload = zygote.command().encode()
                    replaced += 1
            if not replaced:  # Beam starts its workers some other way: leave them to it
                log.debug("no worker command names %s: workers start as Beam starts them", BEAM_WORKER_MODULE)
                zygote.stop()
                zygote = None
        try:
            return super().run_via_runner_api(pipeline_proto, options)
        finally:
            if zygote is not None:
                zygote.stop()

    def hand_options_to_workers(self, options) -> None:
        """Beam's FnApiRunner starts its subprocess workers with no pipeline options
        (``PIPELINE_OPTIONS={}``), so a worker-side flag (``--experiments
        data_buffer_time_limit_ms=...``, ``--max_cache_memory_usage_mb``) did nothing locally.
        Dataflow and Beam's portable runners give every worker the job's options: so do we."""
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
        self._provision_info.provision_info.pipeline_options.CopyFrom(encoded)  # as the portable runners encode them


class Zygote:
    """A forked copy of the launcher that forks Beam workers on request."""

    def __init__(self, pid: int, folder: str, lifeline: int) -> None:
        self.pid, self.folder, self.lifeline = pid, folder, lifeline

    @property
    def path(self) -> str:
        return os.path.join(self.folder, "zygote.sock")

    def command(self) -> str:
        return f"{shlex.quote(sys.executable)} -I -S -c {shlex.quote(CLIENT)} {shlex.quote(self.path)}"

    @classmethod
    def start(cls) -> "Zygote | None":
        """Fork the zygote now, or None (workers then start as Beam starts them)."""
        if not (hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and _pidfds_work()) or threading.active_count() > 1:
            log.debug("workers start as fresh interpreters (no fork or pidfd here, or the launcher runs threads)")
            return None
        folder = tempfile.mkdtemp(prefix="wit-zygote-")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(os.path.join(folder, "zygote.sock"))
        listener.listen(64)
        lifeline_read, lifeline_write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the zygote: never returns
            code = 0
            try:
                os.close(lifeline_write)
                _serve(listener, lifeline_read)
            except BaseException:  # noqa: BLE001 - report, then leave without running the launcher's code
                import traceback

                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        listener.close()
        os.close(lifeline_read)
        return cls(pid, folder, lifeline_write)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the lifeline (the zygote kills any worker left and exits) and reap it."""
        os.close(self.lifeline)
        deadline = time.monotonic() + timeout
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.005)
        shutil.rmtree(self.folder, ignore_errors=True)


def _pidfds_work() -> bool:
    """Process file descriptors (Linux 5.3+): how the zygote hears of a worker's exit at once."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def _serve(listener: socket.socket, lifeline: int) -> None:
    """The zygote's loop: a worker per client; a client gone kills its worker; lifeline EOF ends all."""
    import importlib
    import selectors

    from core.beam import freeze_long_lived

    importlib.import_module(BEAM_WORKER_MODULE)  # warm, once for all workers
    freeze_long_lived()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which ends us
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("accept", None))
    selector.register(lifeline, selectors.EVENT_READ, ("lifeline", None))
    workers: dict[int, tuple[socket.socket, int]] = {}  # pid -> (client connection, pidfd)
    while True:
        for key, _ in selector.select():
            kind, pid = key.data
            if kind == "accept":
                conn, _ = listener.accept()
                environ = _read_request(conn)
                if environ is None:
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:  # the worker: none of the zygote's descriptors
                    selector.close()
                    listener.close()
                    os.close(lifeline)
                    for other, pidfd in workers.values():
                        other.close()
                        os.close(pidfd)
                    conn.close()
                    _run_worker(environ)  # never returns
                pidfd = os.pidfd_open(pid)
                workers[pid] = (conn, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, ("exited", pid))
                selector.register(conn, selectors.EVENT_READ, ("client", pid))
            elif kind == "exited":
                conn, pidfd = workers.pop(pid)
                _, status = os.waitpid(pid, 0)
                selector.unregister(pidfd)
                os.close(pidfd)
                if conn.fileno() in selector.get_map():
                    selector.unregister(conn)
                try:
                    conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
                except OSError:
                    pass
                conn.close()
            elif kind == "client":  # the client said nothing more: it is gone, its worker goes too
                _kill(pid)
                selector.unregister(key.fileobj)
            else:  # the launcher closed the lifeline
                for pid in list(workers):
                    _kill(pid)
                for pid, (conn, pidfd) in workers.items():
                    os.waitpid(pid, 0)
                    conn.close()
                return


def _read_request(conn: socket.socket) -> dict | None:
    """The client's environment (one JSON line), or None when it sends no such line in time."""
    conn.settimeout(30)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                return None
            data += chunk
        environ = json.loads(data)
    except (OSError, ValueError):
        return None
    conn.settimeout(None)
    return environ if isinstance(environ, dict) else None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run_worker(environ: dict) -> None:
    """In a freshly forked worker: Beam's worker main with the client's environment, then exit
    at once (the launcher's atexit handlers and finalisers are not ours to run)."""
    code = 0
    try:
        os.environ.clear()
        os.environ.update(environ)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        root = logging.getLogger()
        for handler in list(root.handlers):  # the launcher's console handler: Beam sends worker logs to the runner
            root.removeHandler(handler)
        sys.modules[BEAM_WORKER_MODULE].main(sys.argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - Beam's main logged it
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
