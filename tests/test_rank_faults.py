"""A rank killed mid-phase-1 or mid-decode: the launcher names the rank and the phase, fails
within seconds, and leaves no process of the job behind."""

from __future__ import annotations

import os
import signal
import time

import pytest

from engine import GenerationSettings, Progress, Request, Token
from starcli.launch import LaunchError, run_request
from tests.procs import any_job_process, job_ranks


def _kill_rank_when(request, rank, predicate):
    pid_killed = None
    started = None
    with pytest.raises(LaunchError) as failure:
        for event in run_request(request, model=None, nproc=2, device="cpu"):
            if pid_killed is None and predicate(event):
                pid_killed = job_ranks(os.getpid())[rank]
                os.kill(pid_killed, signal.SIGKILL)
                started = time.monotonic()
    assert pid_killed is not None, "the job finished before the fault could be injected"
    elapsed = time.monotonic() - started
    return str(failure.value), elapsed


def _no_job_left():
    deadline = time.monotonic() + 5
    while any_job_process(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return any_job_process(os.getpid()) == []


def test_rank_killed_during_phase_1(default_model):
    request = Request(
        list(range(100, 6100)), [[5, 6, 7]], block_size=128, generation=GenerationSettings(max_tokens=4)
    )
    message, elapsed = _kill_rank_when(
        request, 1, lambda e: isinstance(e, Progress) and e.stage == "phase1" and e.rank == 1
    )
    assert "rank 1" in message and "phase 1" in message
    assert elapsed < 15
    assert _no_job_left()


def test_rank_killed_during_decode(default_model):
    request = Request(
        list(range(100, 400)),
        [[5, 6, 7]],
        block_size=64,
        generation=GenerationSettings(max_tokens=400, stop=[]),
    )
    message, elapsed = _kill_rank_when(request, 0, lambda e: isinstance(e, Token))
    assert "killed by signal 9" in message
    assert "rank 0" in message and "decode" in message
    assert elapsed < 15
    assert _no_job_left()


def test_stuck_rank_cannot_hang_the_job(default_model, monkeypatch):
    """A rank frozen by SIGSTOP: the others' collectives time out and the job ends."""
    monkeypatch.setenv("STARCLI_TIMEOUT", "4")
    request = Request(
        list(range(100, 400)), [[5, 6, 7]], block_size=64, generation=GenerationSettings(max_tokens=400)
    )
    stopped = None
    started = time.monotonic()
    with pytest.raises(LaunchError, match="stopped responding"):
        for event in run_request(request, model=None, nproc=2, device="cpu"):
            if stopped is None and isinstance(event, Token):
                stopped = job_ranks(os.getpid())[0]
                os.kill(stopped, signal.SIGSTOP)
                started = time.monotonic()
    assert time.monotonic() - started < 30
    assert _no_job_left()


def test_two_jobs_at_once_share_nothing(default_model, tmp_path, monkeypatch):
    """Concurrent runs get their own rendezvous port and temp dir, and clean both up."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    request = Request(
        list(range(100, 300)), [[5, 6, 7]], block_size=64, generation=GenerationSettings(max_tokens=8)
    )

    def answer():
        events = list(run_request(request, model=None, nproc=2, device="cpu"))
        return [e.token_id for e in events if isinstance(e, Token)]

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: answer(), range(2))
    assert first == second and first
    assert list(tmp_path.iterdir()) == []
    assert _no_job_left()
