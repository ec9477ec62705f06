"""Drive the real ``starcli`` command as a subprocess and watch it from outside, for fault tests.

Each ``CliJob`` gets a private ``TMPDIR`` (where the launcher puts its per-run directory), so the
test can follow a torchrun job's events as its ranks write them, find every process of the job
(all of them name that directory in their arguments) and check that nothing is left behind.
stderr can go to a pseudo-terminal, to see the progress display's stages as a person would.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from tests.procs import job_ranks, processes_mentioning

REPO = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).resolve().parent / "faults"  # sitecustomize.py: fault injection on request


def cli_env(tmpdir: Path, **extra: str) -> dict[str, str]:
    """A plain environment: no colour forcing, no user config, one thread per process, the
    fault-injection hooks importable, and ``TMPDIR`` private to the run."""
    dropped = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("STARCLI_")}
    if os.environ.get("STARCLI_CACHE"):
        env["STARCLI_CACHE"] = os.environ["STARCLI_CACHE"]
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TERM"] = "xterm-256color"
    env["STARCLI_CONFIG"] = os.devnull
    env["TMPDIR"] = str(tmpdir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


class CliJob:
    """``python -m starcli ARGS`` with stdout (and stderr, or a pty for it) read in the background."""

    def __init__(
        self,
        tmpdir: Path,
        *args: str,
        tty_stderr: bool = False,
        stdout_limit: int | None = None,
        cwd: Path = REPO,
        **env: str,
    ):
        """``stdout_limit``: read that many bytes of stdout, then close the pipe (``| head -c N``)."""
        self.tmpdir = tmpdir
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.stdout = bytearray()
        self.stderr = bytearray()
        primary = secondary = None
        if tty_stderr:
            primary, secondary = pty.openpty()
            termios.tcsetwinsize(secondary, (24, 120))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "starcli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary if tty_stderr else subprocess.PIPE,
            env=cli_env(tmpdir, **env),
            cwd=cwd,
        )
        self.pid = self.proc.pid
        if secondary is not None:
            os.close(secondary)
        self._readers = [
            threading.Thread(target=self._drain_stdout, args=(stdout_limit,), daemon=True),
            threading.Thread(
                target=self._drain,
                args=(primary if tty_stderr else self.proc.stderr.fileno(), self.stderr),
                daemon=True,
            ),
        ]
        self._primary = primary
        for reader in self._readers:
            reader.start()

    def _drain_stdout(self, limit: int | None) -> None:
        self._drain(self.proc.stdout.fileno(), self.stdout, limit)
        if limit is not None:
            del self.stdout[limit:]
            self.proc.stdout.close()

    @staticmethod
    def _drain(fd: int, sink: bytearray, limit: int | None = None) -> None:
        while limit is None or len(sink) < limit:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536 if limit is None else limit - len(sink))
            except OSError:  # a pty reads EIO once its other end is closed
                return
            if not chunk:
                return
            sink.extend(chunk)

    # --- watching ---------------------------------------------------------------------------
    def events(self) -> list[dict]:
        """The torchrun job's events so far (complete lines of its events file)."""
        found = []
        for path in self.tmpdir.glob("starcli-run-*/events.jsonl"):
            try:
                lines = path.read_bytes().split(b"\n")[:-1]
            except OSError:
                continue
            found += [json.loads(line) for line in lines if line.strip()]
        return found

    def wait_for(self, condition, what: str, timeout: float = 240.0) -> None:
        """Poll ``condition()`` until true; fail if the command exits or time runs out first."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) before {what}: {self.stderr.decode()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def wait_for_event(self, predicate, what: str) -> None:
        self.wait_for(lambda: any(predicate(e) for e in self.events()), what)

    def rank_pid(self, rank: int) -> int:
        return job_ranks(self.pid)[rank]

    # --- the end ------------------------------------------------------------------------------
    def finish(self, timeout: float = 120.0) -> int:
        """Wait for the command to exit and its output to be read; returns the exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for reader in self._readers:
            reader.join(timeout=10)
        if self._primary is not None:
            os.close(self._primary)
        print(f"exit {code}; stdout ends {bytes(self.stdout[-60:])!r}; Error lines: {self.error_lines()}")
        return code

    def leftovers(self, grace: float = 5.0) -> tuple[list[int], list[str]]:
        """Processes of the job still alive and files left in its TMPDIR, after ``grace`` seconds."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not processes_mentioning(str(self.tmpdir)) and not any(self.tmpdir.iterdir()):
                break
            time.sleep(0.1)
        return processes_mentioning(str(self.tmpdir)), sorted(p.name for p in self.tmpdir.iterdir())

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.decode(errors="replace").splitlines() if "Error:" in line]
