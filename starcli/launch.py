"""Run an engine request: in this process for one rank, as a supervised torchrun job for several.

The torchrun job gets a private temp dir (request file, event file, torchrun's own logs), a free
rendezvous port (``--standalone``) and our pid so its ranks exit if we die. Events are read back
from the JSON-lines file as the ranks append them. Any failure or Ctrl-C tears the whole job down;
a second Ctrl-C (or SIGTERM) during that teardown waits for it to finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import engine.errors as engine_errors
from engine import Engine, Event, Failure, Progress, Request
from engine.events import Started, event_from_dict

POLL_S = 0.02
_TIMEOUT = re.compile(r"timed? ?out|timeout", re.IGNORECASE)
TERM_GRACE_S = 3.0
FAILURE_GRACE_S = 2.0
_HELD = (signal.SIGINT, signal.SIGTERM)  # during teardown: acted on once it is done
# A SIGKILL that nobody sent is most often the kernel's out-of-memory killer.
_OOM_KILLER_NOTE = (
    "; if memory ran out (the OOM killer sends SIGKILL), try a smaller --block-size or a shorter input"
)


class LaunchError(Exception):
    """A runtime failure of the job (a rank died, the model failed to load): exit code 1."""


class RankOutOfMemory(LaunchError):
    """A rank could not allocate memory; the message names the ways out."""

    def __init__(self, rank: int, phase: str):
        if phase in ("load", "startup"):  # every rank holds the whole model: more ranks do not help
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


def load_tokenizer(model: str | None):
    """The model's tokenizer without its weights (exact token counts before anything heavy)."""
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


def collective_timeout() -> float:
    """Seconds a rank waits in a collective before the job is declared stuck
    (``STARCLI_TIMEOUT``, default 300: long phase-1 blocks on slow CPUs must fit inside)."""
    value = os.environ.get("STARCLI_TIMEOUT", "300")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise engine_errors.BadSettingError(
            f"STARCLI_TIMEOUT must be a positive number of seconds (got {value!r})"
        )
    return seconds


def run_request(
    request: Request, *, model: str | None, nproc: int = 1, device: str = "cpu", verbose: bool = False
) -> Iterator[Event]:
    """Yield the job's events (load progress first). Raises EngineError subclasses for bad
    requests, LaunchError for runtime failures, KeyboardInterrupt once every worker is gone."""
    device = resolve_device(device)
    if nproc < 1:
        raise engine_errors.BadSettingError(f"--nproc must be at least 1 (got {nproc})")
    if device == "cuda":
        import torch

        visible = torch.cuda.device_count()
        if nproc > visible:
            raise engine_errors.BadSettingError(
                f"--nproc {nproc} needs {nproc} GPUs but {visible} are visible; lower --nproc"
            )
    if nproc == 1:
        yield from _run_in_process(request, model, device)
    else:
        yield from _run_torchrun(request, model, nproc, device, verbose, collective_timeout())


def _run_in_process(request: Request, model: str | None, device: str) -> Iterator[Event]:
    from engine.models import load_model

    started = time.perf_counter()
    try:
        loaded = load_model(model, device)
    except engine_errors.ModelLoadError as exc:
        raise LaunchError(str(exc)) from exc
    load_s = time.perf_counter() - started
    yield Progress(stage="load", done=1, total=1, rank=0)
    yield from Engine(loaded.model, loaded.tokenizer, load_s=load_s).run(request)


def _run_torchrun(
    request: Request, model: str | None, nproc: int, device: str, verbose: bool, timeout: float
) -> Iterator[Event]:
    workdir = Path(tempfile.mkdtemp(prefix="starcli-run-"))
    request_path, events_path = workdir / "request.json", workdir / "events.jsonl"
    request_path.write_text(request.to_json())
    events_path.touch()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        "--monitor-interval=0.1",
        f"--log-dir={workdir / 'torchrun'}",  # else it leaves a torchelastic_* dir in $TMPDIR per run
        "-m",
        "engine",
        "--request",
        str(request_path),
        "--events",
        str(events_path),
        "--device",
        device,
        "--timeout",
        str(timeout),
        "--launcher-pid",
        str(os.getpid()),
    ]
    if model:
        cmd += ["--model", model]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(_threads_per_rank(nproc))))
    stderr_path = workdir / "stderr.log"
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stderr_file,
            stderr=stderr_file,
            env=env,
            start_new_session=True,
        )
    pids: set[int] = set()
    phases: dict[int, str] = {}
    failure: Failure | None = None
    try:
        failed_at: list[float] = []

        def give_up() -> bool:  # torchrun waits 30 s for stuck ranks; we wait FAILURE_GRACE_S
            return bool(failed_at) and time.monotonic() - failed_at[0] > FAILURE_GRACE_S

        for event in _follow(events_path, proc, give_up):
            if isinstance(event, Started):
                pids.add(event.pid)
                phases[event.rank] = "startup"
                continue
            if isinstance(event, Failure):
                failure = failure or event
                failed_at.append(time.monotonic())
                continue
            _note_phase(event, phases)
            yield event
        _stop(proc, pids)
        code = proc.wait()
        if code == 0 and failure is None:
            return
        log = stderr_path.read_text(errors="replace")
        if verbose:
            sys.stderr.write(log)
        if failure is not None and (_TIMEOUT.search(failure.message) or _engine_error(failure)):
            _raise_failure(failure)  # a bad request, or a stuck rank the others timed out on
        # torchrun tears the survivors down with SIGTERM; any other signal death is the cause
        killed = [(rank, exit) for rank, exit in _failed_ranks(log) if exit < 0 and exit != -signal.SIGTERM]
        if killed:  # a rank that died by a signal is the cause; the others' errors are its echo
            rank, exit = killed[0]
            raise LaunchError(
                f"rank {rank} was killed by signal {_signal_name(-exit)} during "
                f"{phases.get(rank, 'startup')}{_OOM_KILLER_NOTE if -exit == signal.SIGKILL else ''}; "
                "rerun with --verbose for the ranks' logs"
            )
        if failure is not None:
            _raise_failure(failure)
        failed = _failed_ranks(log)
        where = (
            f"rank {failed[0][0]} exited with code {failed[0][1]}"
            if failed
            else f"torchrun exited with code {code}"
        )
        phase = phases.get(failed[0][0], "startup") if failed else "startup"
        raise LaunchError(f"{where} during {phase}; rerun with --verbose for the ranks' logs")
    finally:
        with _signals_held():
            _stop(proc, pids)
            shutil.rmtree(workdir, ignore_errors=True)


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


def _note_phase(event: Event, phases: dict[int, str]) -> None:
    if isinstance(event, Progress):
        phases[event.rank] = "model load" if event.stage == "load" else "phase 1"
    elif event.kind == "query_started":
        for rank in phases:
            phases[rank] = "phase 2"
    elif event.kind == "token":
        for rank in phases:
            phases[rank] = "decode"


def _engine_error(failure: Failure) -> engine_errors.EngineError | None:
    """The request error a rank reported, rebuilt as the same exception class."""
    cls = getattr(engine_errors, failure.error_type, None)
    if not (isinstance(cls, type) and issubclass(cls, engine_errors.EngineError)):
        return None
    if cls is engine_errors.ModelLoadError:
        return None  # a runtime failure (exit 1), not a bad request
    error = cls.__new__(cls)
    Exception.__init__(error, failure.message)
    return error


def _raise_failure(failure: Failure) -> None:
    error = _engine_error(failure)
    if error is not None:
        raise error
    if failure.error_type == "OutOfMemoryError":  # how engine.worker reports any allocation failure
        raise RankOutOfMemory(failure.rank, failure.phase)
    if _TIMEOUT.search(failure.message):
        raise LaunchError(
            f"rank {failure.rank} gave up waiting for the other ranks during {failure.phase} "
            f"(a rank stopped responding; collective timeout {os.environ.get('STARCLI_TIMEOUT', '300')} s)"
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


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM back while the job is torn down (a few seconds at most), then act
    on them: an impatient second Ctrl-C must not leave ranks or the temp dir behind."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread, where signals are delivered anyway
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum)) for sig in _HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for sig in dict.fromkeys(held):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)  # default_int_handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)


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
