"""One pool of rank processes for the whole test session, behind ``tests.helpers.spawned_ranks``.

Each ``torch.multiprocessing.spawn`` of a multi-rank test paid a fresh interpreter per rank and
its imports (torch, transformers, the engine: ~7 s of a ~9 s job on the 2-core CI machine) for a
second of work. The pool starts its processes once, on first use, and each one runs jobs one
after another: ``target(rank, procs, init_file, out_prefix)``, the same call ``mp.spawn`` made.
A job's ranks are the pool's first ``procs`` processes, with the test's environment of the
moment (as a freshly spawned process would have it); each job joins its own process group
through its own init file and leaves none behind (a target's ``finally`` destroys it; the
worker does too, should a target not).

Any failure (a rank's exception, a rank that died, a job past its time limit) stops the whole
pool, so that no rank waits forever in a collective with a dead peer; the test gets every
rank's traceback, and the next job starts a fresh pool.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import time
import traceback

POOL_SIZE = 3  # the largest job of the suite; a larger one restarts the pool at its size
JOB_TIMEOUT_S = 600.0


def _serve(rank: int, jobs, results, warm: bool) -> None:
    """One rank of the pool: import what every target needs once (``warm``), then run jobs until
    ``None``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is pytest's to handle
    if warm:
        import transformers  # noqa: F401 - the targets' tiny models

        import engine.api  # noqa: F401

    while (job := jobs.get()) is not None:
        target, procs, init_file, out, environ = job
        os.environ.clear()  # the test's environment now, as a process spawned for it would have
        os.environ.update(environ)
        try:
            target(rank, procs, init_file, out)
            results.put((rank, None))
        except BaseException:  # noqa: BLE001 - reported to the test, which raises it
            results.put((rank, traceback.format_exc()))
        finally:
            dist = sys.modules.get("torch.distributed")
            if dist is not None and dist.is_initialized():
                dist.destroy_process_group()


class RankPool:
    def __init__(self, size: int, warm: bool = True):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.jobs = [context.Queue() for _ in range(size)]
        self.procs = [
            context.Process(target=_serve, args=(rank, self.jobs[rank], self.results, warm), daemon=True)
            for rank in range(size)
        ]
        for proc in self.procs:
            proc.start()

    @property
    def size(self) -> int:
        return len(self.procs)

    def alive(self) -> bool:
        return all(proc.is_alive() for proc in self.procs)

    def run(self, target, procs: int, init_file: str, out: str, timeout: float = JOB_TIMEOUT_S) -> None:
        """Run one job on ranks ``0 .. procs-1`` and wait for all; raise if any rank fails."""
        name = getattr(getattr(target, "func", target), "__name__", repr(target))
        for rank in range(procs):
            self.jobs[rank].put((target, procs, init_file, out, dict(os.environ)))
        errors: dict[int, str] = {}
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < procs:
            try:
                rank, error = self.results.get(timeout=0.5)
            except queue.Empty:
                dead = [r for r in range(procs) if r not in done and not self.procs[r].is_alive()]
                if dead:
                    codes = {r: self.procs[r].exitcode for r in dead}
                    raise RuntimeError(f"{name}: rank(s) died, exit codes {codes}; {errors}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: ranks {set(range(procs)) - done} timed out") from None
                continue
            done.add(rank)
            if error is not None:
                errors[rank] = error
                break  # the others may wait in a collective for this rank: stop them all
        if errors:
            text = "\n".join(f"--- rank {r} ---\n{tb}" for r, tb in sorted(errors.items()))
            raise RuntimeError(f"{name} failed:\n{text}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
        for proc in self.procs:
            proc.join(timeout=10)
        for q in [*self.jobs, self.results]:
            q.close()
            q.cancel_join_thread()


_pool: RankPool | None = None


def run_job(target, procs: int, init_file: str, out: str) -> None:
    """``target(rank, procs, init_file, out)`` on ``procs`` pooled ranks (see the module's doc)."""
    global _pool
    if _pool is not None and (_pool.size < procs or not _pool.alive()):
        _pool.close()
        _pool = None
    if _pool is None:
        _pool = RankPool(max(POOL_SIZE, procs))
    try:
        _pool.run(target, procs, init_file, out)
    except BaseException:  # a failed, hung or interrupted job: no rank of it is reused
        _pool.close()
        _pool = None
        raise


@atexit.register
def _close() -> None:
    if _pool is not None:
        _pool.close()
