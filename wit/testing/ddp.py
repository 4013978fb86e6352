"""Run a function in N real ``torch.distributed`` processes (gloo on CPU) and collect results.

``run_distributed(fn, world_size=2, args=(...))`` spawns the processes, joins them into one
process group over loopback TCP, calls ``fn(rank, world_size, *args)`` in each and returns the
results ordered by rank. A failure in any rank raises with that rank's traceback; a hang ends
at ``timeout`` with every process killed. ``fn`` must be importable by module path (defined at
module level), as ``spawn`` requires.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import time
import traceback
from datetime import timedelta
from typing import Any, Callable

from wit.testing import free_port


def _worker(rank: int, world_size: int, port: int, backend: str, fn: Callable, args: tuple,
            results: "mp.Queue") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    try:
        import torch.distributed as dist

        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=120))
        try:
            value = fn(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        # Plain pickle (tensors serialise their data) so nothing depends on shared memory that
        # dies with this process.
        results.put((rank, True, pickle.dumps(value)))
    except BaseException:
        results.put((rank, False, traceback.format_exc()))


def run_distributed(fn: Callable[..., Any], world_size: int = 2, args: tuple = (), timeout: float = 300.0,
                    backend: str = "gloo") -> list[Any]:
    context = mp.get_context("spawn")
    results: mp.Queue = context.Queue()
    port = free_port()
    processes = [context.Process(target=_worker, args=(rank, world_size, port, backend, fn, args, results), daemon=True)
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(collected) + len(errors) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"distributed run did not finish within {timeout:g} s "
                                   f"(results from ranks {sorted(collected)})")
            try:
                rank, ok, payload = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    time.sleep(0.5)  # let a dying rank's message arrive
                    if results.empty():
                        codes = {i: p.exitcode for i, p in enumerate(processes)}
                        raise RuntimeError(f"a rank died without reporting (exit codes {codes})")
                continue
            if ok:
                collected[rank] = pickle.loads(payload)
            else:
                errors.append((rank, payload))
                # The first report may be a peer's "connection reset" caused by the real
                # failure: give the other ranks a moment to report theirs, then stop them.
                grace = time.monotonic() + 5.0
                while len(collected) + len(errors) < world_size and time.monotonic() < grace:
                    try:
                        rank, ok, payload = results.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if not ok:
                        errors.append((rank, payload))
                break
        if errors:
            raise RuntimeError("\n".join(f"rank {rank} failed:\n{trace}" for rank, trace in sorted(errors)))
    finally:
        for process in processes:
            process.join(timeout=10 if not errors else 0.1)
            if process.is_alive():
                process.kill()
                process.join()
    return [collected[rank] for rank in range(world_size)]
