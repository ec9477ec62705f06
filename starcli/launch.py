"""Run an engine request: in this process for one rank, as a supervised torchrun job for several.

The torchrun job gets a private temp dir (request file, event file, torchrun's own logs), a free
rendezvous port (``--standalone``) and our pid so its ranks exit if we die. On several machines
(``Nodes``) the same command runs on each: every node's torchrun joins the c10d rendezvous at one
endpoint, every node tokenizes its own sources (the ranks check that all read the same), and the
node whose ranks include the query host (the last rank) gets the answer's events. Events are read back
from the JSON-lines file as the ranks append them. Any failure or Ctrl-C tears the whole job down;
a second Ctrl-C (or SIGTERM) during that teardown waits for it to finish.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import engine.errors as engine_errors
from engine.request import Request

if TYPE_CHECKING:  # the engine imports torch and transformers' model code: the ranks' business
    from engine.api import Engine
from engine.events import (
    Event,
    Failure,
    Joined,
    Loaded,
    Progress,
    Started,
    Stats,
    event_from_dict,
    phase_after,
)
from engine.settings import DEFAULT_COLLECTIVE_TIMEOUT_S
from starcli.interrupts import held_signals

POLL_S = 0.02
_TIMEOUT = re.compile(r"timed? ?out|timeout", re.IGNORECASE)
# How gloo and NCCL say that a peer went away (its process died, or its machine or network did).
_PEER_LOST = re.compile(r"connection (closed|reset)|broken pipe|by peer|remote process exited", re.IGNORECASE)
TERM_GRACE_S = 3.0
FAILURE_GRACE_S = 2.0
END_GRACE_S = 10.0  # a conversation's ranks exit on their own once told it has ended
# A SIGKILL that nobody sent is most often the kernel's out-of-memory killer.
_OOM_KILLER_NOTE = (
    "; if memory ran out (the OOM killer sends SIGKILL), try a smaller --block-size or a shorter input"
)


@dataclass(frozen=True)
class Nodes:
    """The machines of a job: one (``torchrun --standalone``), or ``count`` joined by torchrun's c10d
    rendezvous at ``endpoint`` (``HOST:PORT``) under ``job_id``, the same command on each."""

    count: int = 1
    endpoint: str | None = None
    job_id: str = "starcli"


ONE_NODE = Nodes()


class LaunchError(engine_errors.RankError):
    """A runtime failure of the job (a rank died, the model failed to load): exit code 1."""


class RankOutOfMemory(LaunchError):
    """A rank could not allocate memory; the message names the ways out."""

    def __init__(self, rank: int, phase: str):
        if phase in ("model load", "startup"):  # every rank holds the whole model: more ranks do not help
            super().__init__(
                f"rank {rank} ran out of memory loading the model; use a smaller model (--model) "
                "or a device with more memory"
            )
        else:
            super().__init__(
                f"rank {rank} ran out of memory during {phase}; "
                "try a smaller --block-size, more --nproc, or a shorter input"
            )


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when a GPU is visible, else CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise engine_errors.BadSettingError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def default_nproc(device: str) -> int:
    """Every visible GPU on CUDA, one rank on CPU."""
    if resolve_device(device) == "cuda":
        import torch

        return max(1, torch.cuda.device_count())
    return 1


@functools.lru_cache(maxsize=2)
def load_tokenizer(model: str | None):
    """The model's tokenizer without its weights (exact token counts before anything heavy);
    loaded once per process (the in-process rank uses it too)."""
    from transformers import AutoTokenizer

    from engine.models import resolve_model_path

    path = resolve_model_path(model)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached yet: a hub id the user asked for
        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001
            raise engine_errors.ModelLoadError(f"could not load the tokenizer of {model!r}: {exc}") from exc


def run_request(
    request: Request, *, model: str | None, verbose: bool = False, nodes: Nodes = ONE_NODE
) -> Iterator[Event]:
    """Yield the job's events as they happen (each rank's ``Started`` and ``Loaded`` first) for a
    request carrying its run plan. Raises EngineError subclasses for bad requests, LaunchError for
    runtime failures, KeyboardInterrupt once every worker is gone. On several ``nodes`` this
    node's ranks' events only: the answer's where the query host is among them."""
    _check_plan(request, nodes)
    if request.plan.world_size == 1:
        yield from InProcessSession(request, model).start()
    else:
        job = TorchrunJob(request, model, verbose, nodes=nodes)
        try:
            yield from job.events()
        finally:
            job.close()


def start_session(request: Request, *, model: str | None, verbose: bool = False):
    """A conversation over one encoding (``starcli chat``): ``start()`` yields the request's events
    (load, encode, its queries' answers), ``ask()`` those of one more query, ``close()`` ends it;
    with several ranks they stay up between queries."""
    _check_plan(request)
    if request.plan.world_size == 1:
        return InProcessSession(request, model)
    return TorchrunSession(request, model, verbose)


def _check_plan(request: Request, nodes: Nodes = ONE_NODE) -> None:
    plan = request.plan
    if plan is None:
        raise engine_errors.BadSettingError(
            "run_request needs a request with its run plan (engine.make_run_plan)"
        )
    if plan.world_size % nodes.count:
        raise engine_errors.BadSettingError(
            f"{plan.world_size} ranks do not split evenly over {nodes.count} nodes"
        )
    if plan.device == "cuda":
        import torch

        visible = torch.cuda.device_count()
        if plan.world_size // nodes.count > visible:
            wanted = plan.world_size // nodes.count
            raise engine_errors.BadSettingError(
                f"--nproc {wanted} needs {wanted} GPUs but {visible} are visible; lower --nproc"
            )


class InProcessSession:
    """One rank in this process: the model and the encoded context stay in memory between queries."""

    def __init__(self, request: Request, model: str | None):
        self.request, self.model = request, model
        self.engine: Engine | None = None

    def start(self) -> Iterator[Event]:
        yield Started(rank=0, pid=os.getpid(), world_size=1)  # the same stream as a torchrun job's
        with held_signals():  # the engine's imports and the weights: Ctrl-C acts once they are in
            self.engine = self._load()
        yield Loaded(rank=0, seconds=self.engine.load_s)
        yield from self.engine.run(self.request)

    def _load(self) -> Engine:
        from engine.api import Engine
        from engine.models import load_model

        plan = self.request.plan
        started = time.perf_counter()
        try:  # the tokenizer the CLI counted with, not loaded twice
            loaded = load_model(self.model, plan.device, plan.dtype, tokenizer=load_tokenizer(self.model))
        except engine_errors.ModelLoadError as exc:
            raise LaunchError(str(exc)) from exc
        return Engine(loaded.model, loaded.tokenizer, load_s=time.perf_counter() - started)

    def ask(self, query: list[int], index: int, follow_up: bool) -> Iterator[Event]:
        yield from self.engine.answer(self.engine.encoded, query, index, follow_up=follow_up)

    def close(self, graceful: bool = True) -> None:
        self.engine = None


class TorchrunSession:
    """Several ranks kept up between queries: each query is a line appended to a file every rank
    follows (``python -m engine --queries``); an end line lets them exit on their own."""

    def __init__(self, request: Request, model: str | None, verbose: bool):
        self.request = request
        self.job = TorchrunJob(request, model, verbose, conversation=True)
        self.events = self.job.events()

    def _one_answer(self) -> Iterator[Event]:
        for event in self.events:
            yield event
            if isinstance(event, Stats):
                return
        raise LaunchError("the ranks stopped before answering; rerun with --verbose")

    def start(self) -> Iterator[Event]:
        for _ in self.request.queries:
            yield from self._one_answer()

    def ask(self, query: list[int], index: int, follow_up: bool) -> Iterator[Event]:
        self.job.send({"query": query, "index": index, "follow_up": follow_up})
        yield from self._one_answer()

    def close(self, graceful: bool = True) -> None:
        """Ask the ranks to finish and give them a moment to exit cleanly (``graceful``: the
        conversation ended; otherwise, as after Ctrl-C or a failure, they are stopped at once),
        then tear down the rest."""
        try:
            self.job.send({"end": True})
            if graceful:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.job.proc.wait(timeout=END_GRACE_S)
        finally:
            self.events.close()
            self.job.close()


class TorchrunJob:
    """One torchrun job for a request: started on creation, followed by ``events()``, its outcome
    turned into one error by ``raise_outcome()``, torn down (every process, the temp dir) by
    ``close()``."""

    def __init__(
        self,
        request: Request,
        model: str | None,
        verbose: bool,
        conversation: bool = False,
        nodes: Nodes = ONE_NODE,
    ):
        self.plan, self.verbose, self.nodes = request.plan, verbose, nodes
        self.node: int | None = None  # this machine's node number, once its first rank is up
        self.hosts: list[str] = []  # every rank's machine, once the ranks have joined
        self.workdir = Path(tempfile.mkdtemp(prefix="starcli-run-"))
        self.request_path, self.events_path = self.workdir / "request.json", self.workdir / "events.jsonl"
        self.stderr_path = self.workdir / "stderr.log"
        self.queries_path = self.workdir / "queries.jsonl" if conversation else None
        self.request_path.write_text(request.to_json())
        self.events_path.touch()
        if self.queries_path is not None:
            self.queries_path.touch()
        self.pids: set[int] = set()
        self.phases: dict[int, str] = {}
        self.failure: Failure | None = None
        self.failed_at: float | None = None
        with open(self.stderr_path, "wb") as stderr_file:
            self.proc = subprocess.Popen(
                self._command(model),
                stdin=subprocess.DEVNULL,
                stdout=stderr_file,
                stderr=stderr_file,
                env=self._environment(),
                start_new_session=True,
            )

    def _command(self, model: str | None) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *self._rendezvous(),
            f"--nproc-per-node={self.plan.world_size // self.nodes.count}",
            "--max-restarts=0",
            "--monitor-interval=0.1",
            f"--log-dir={self.workdir / 'torchrun'}",  # else a torchelastic_* dir is left in $TMPDIR per run
            "-m",
            "engine",
            "--request",
            str(self.request_path),
            "--events",
            str(self.events_path),
            "--launcher-pid",
            str(os.getpid()),
        ]
        if self.queries_path is not None:
            cmd += ["--queries", str(self.queries_path)]
        return cmd + (["--model", model] if model else [])

    def _rendezvous(self) -> list[str]:
        """One node: a private rendezvous on a free port. Several: c10d at the shared endpoint,
        where every node must arrive within the collective timeout (not torchrun's 600 s)."""
        if self.nodes.count == 1:
            return ["--standalone"]
        wait_s = max(1, round(self.plan.options.collective_timeout_s))
        return [
            f"--nnodes={self.nodes.count}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={self.nodes.endpoint}",
            f"--rdzv-id={self.nodes.job_id}",
            f"--rdzv-conf=join_timeout={wait_s},read_timeout={wait_s}",
        ]

    def node_ranks(self, node: int) -> range:
        """The global ranks on ``node``: torchrun numbers each node's ranks after the lower nodes'."""
        per_node = self.plan.world_size // self.nodes.count
        return range(node * per_node, (node + 1) * per_node)

    def send(self, message: dict) -> None:
        """Append one line for the ranks of a conversation (one write: they never see half)."""
        fd = os.open(self.queries_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, (json.dumps(message) + "\n").encode())
        finally:
            os.close(fd)

    def _environment(self) -> dict[str, str]:
        threads = os.environ.get("OMP_NUM_THREADS", str(_threads_per_rank(self.plan.world_size)))
        return dict(os.environ, OMP_NUM_THREADS=threads)

    def events(self) -> Iterator[Event]:
        """The ranks' events as they arrive; at the end, raise the job's failure if it had one."""
        for event in _follow(self.events_path, self.proc, self._give_up):
            if isinstance(event, Failure):
                self.failure = self.failure or event
                self.failed_at = self.failed_at or time.monotonic()
                continue
            if isinstance(event, Started):
                self.pids.add(event.pid)
                self.node = event.node
                self.phases[event.rank] = "startup"
            elif isinstance(event, Joined):
                self.hosts = event.hosts
                continue  # the launcher's business, not the display's
            else:
                self._note_phase(event)
            yield event
        _stop(self.proc, self.pids)
        if self.proc.wait() != 0 or self.failure is not None:
            self.raise_outcome()

    def _give_up(self) -> bool:
        """torchrun waits 30 s for stuck ranks after a failure; we wait ``FAILURE_GRACE_S``."""
        return self.failed_at is not None and time.monotonic() - self.failed_at > FAILURE_GRACE_S

    def _note_phase(self, event: Event) -> None:
        if isinstance(event, (Loaded, Progress)):
            self.phases[event.rank] = phase_after(event, "")
        elif event.kind in ("query_started", "token"):
            for rank in self.phases:
                self.phases[rank] = phase_after(event, self.phases[rank])

    def raise_outcome(self) -> None:
        """The one error that says what went wrong: a bad request, a stuck rank, a rank killed by a
        signal (the others' errors are its echo), a rank's own failure, or torchrun's exit code."""
        log = self.stderr_path.read_text(errors="replace")
        if self.verbose:
            sys.stderr.write(log)
        failure = self.failure
        timeout_s = self.plan.options.collective_timeout_s
        if self.nodes.count > 1:
            self._raise_node_fault(log, failure, timeout_s)
        if failure is not None and (_TIMEOUT.search(failure.message) or _request_error(failure)):
            _raise_failure(failure, timeout_s)
        # torchrun tears the survivors down with SIGTERM; any other signal death is the cause
        killed = [(rank, exit) for rank, exit in _failed_ranks(log) if exit < 0 and exit != -signal.SIGTERM]
        if killed:
            rank, exit = killed[0]
            raise LaunchError(
                f"rank {rank} was killed by signal {_signal_name(-exit)} during "
                f"{self.phases.get(rank, 'startup')}{_OOM_KILLER_NOTE if -exit == signal.SIGKILL else ''}; "
                "rerun with --verbose for the ranks' logs"
            )
        if failure is not None:
            _raise_failure(failure, timeout_s)
        failed = _failed_ranks(log)
        if failed:
            rank, code = failed[0]
            where, phase = f"rank {rank} exited with code {code}", self.phases.get(rank, "startup")
        else:
            where, phase = f"torchrun exited with code {self.proc.returncode}", "startup"
        raise LaunchError(f"{where} during {phase}; rerun with --verbose for the ranks' logs")

    def _raise_node_fault(self, log: str, failure: Failure | None, timeout_s: float) -> None:
        """Across machines: a node that never joined the rendezvous, or one that this node's ranks
        lost (died, or its network failed), named by its node number and ranks."""
        if self.node is None:  # no rank of this node started: the rendezvous did not complete
            if "RendezvousTimeoutError" in log:
                raise LaunchError(
                    f"not every one of the {self.nodes.count} nodes joined the rendezvous at "
                    f"{self.nodes.endpoint} (id {self.nodes.job_id!r}) within {timeout_s:g} s; start "
                    "the same command on every node, and check that they reach that port"
                )
            if "RendezvousConnectionError" in log or "RendezvousError" in log:
                raise LaunchError(
                    f"could not reach the rendezvous at {self.nodes.endpoint}; check the host, that "
                    "the port is open, and that the node at that address has started"
                )
            return
        if failure is not None and _request_error(failure):
            return
        if failure is not None:  # this node's own failure speaks for itself, unless it is the other's echo
            lost = bool(_TIMEOUT.search(failure.message) or _PEER_LOST.search(failure.message))
        else:  # torchrun lost the store at the endpoint: the node holding it went away
            lost = "RendezvousConnectionError" in log and bool(self.phases)
        if not lost:
            return
        rank = failure.rank if failure is not None else min(self.phases)
        phase = failure.phase if failure is not None else self.phases[rank]
        others = [node for node in range(self.nodes.count) if node != self.node]
        if len(others) == 1:
            ranks = self.node_ranks(others[0])
            span = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"
            host = f"{self.hosts[ranks[0]]}, " if self.hosts else ""
            lost = f"node {others[0]} ({host}{span})"
        else:
            lost = "another node (one of nodes " + ", ".join(map(str, others)) + ")"
        raise LaunchError(
            f"rank {rank} on node {self.node} lost contact with {lost} during {phase}: "
            f"it stopped or its network failed (collective timeout {timeout_s:g} s); "
            "see that node's own error, or rerun with --verbose"
        )

    def close(self) -> None:
        with held_signals():  # a second Ctrl-C must not leave ranks or the temp dir behind
            _stop(self.proc, self.pids)
            shutil.rmtree(self.workdir, ignore_errors=True)


def _follow(path: Path, proc: subprocess.Popen, give_up: Callable[[], bool]) -> Iterator[Event]:
    """Tail the event file until the job exits (or ``give_up()``), then drain what is left."""
    buffer = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read()
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield event_from_dict(json.loads(line))
                continue
            if proc.poll() is not None or give_up():
                rest = handle.read()
                if not rest:
                    return
                buffer += rest
                continue
            time.sleep(POLL_S)


def _request_error(failure: Failure) -> engine_errors.StarcliError | None:
    """The request error a rank reported (exit 2), rebuilt as the same class; ``None`` otherwise."""
    error = engine_errors.error_from_name(failure.error_type, failure.message)
    return error if isinstance(error, engine_errors.EngineError) else None


def _raise_failure(failure: Failure, timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> None:
    if (error := _request_error(failure)) is not None:
        raise error
    if failure.error_type == engine_errors.OutOfMemoryError.__name__:  # any allocation failure
        raise RankOutOfMemory(failure.rank, failure.phase)
    if _TIMEOUT.search(failure.message):
        raise LaunchError(
            f"rank {failure.rank} gave up waiting for the other ranks during {failure.phase} "
            f"(a rank stopped responding; collective timeout {timeout_s:g} s)"
        )
    raise LaunchError(f"rank {failure.rank} failed during {failure.phase}: {failure.message}")


def _signal_name(number: int) -> str:
    """``9 (SIGKILL)``."""
    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)


def _failed_ranks(log: str) -> list[tuple[int, int]]:
    """``(rank, exit code)`` of every failure in torchrun's summary, root cause first."""
    summary = log[log.find("Root Cause") :] + log[log.find("Failures:") :] if "Root Cause" in log else ""
    seen: dict[int, int] = {}
    for rank, code in re.findall(r"rank\s*:\s*(\d+)[^\n]*\n(?:[^\n]*\n)*?\s*exitcode\s*:\s*(-?\d+)", summary):
        seen.setdefault(int(rank), int(code))
    return list(seen.items())


def _stop(proc: subprocess.Popen, pids: set[int]) -> None:
    """SIGTERM torchrun (it stops its workers), then SIGKILL anything of the job still alive."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    for pid in [proc.pid, *pids]:
        try:
            os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.wait()


def _threads_per_rank(nproc: int) -> int:
    return max(1, (os.cpu_count() or 1) // nproc)
