"""Ctrl-C held back while libraries import and weights load (``starcli.interrupts``).

A ``KeyboardInterrupt`` raised inside ``exec`` of a string (every dataclass definition runs one,
so importing torch and transformers is full of them) is marked unhandled by CPython even when the
CLI catches it; under ``python -m`` the process then killed itself with SIGINT (status -2) after
its clean exit 130, as ``test_faults_cli`` saw once during "Loading weights"."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.clijob import REPO

HIT_IN_EXEC = """
import signal, sys
from starcli.interrupts import held_signals
done = False
try:
    with HOLD:
        exec("import signal; signal.raise_signal(signal.SIGINT)")  # Ctrl-C inside library code
        done = True
except KeyboardInterrupt:
    sys.exit(130 if done and signal.getsignal(signal.SIGINT) is signal.default_int_handler else 1)
"""


def run_module(tmp_path, hold: str) -> tuple[int, str]:
    """The script as ``python -m`` runs it (as the tests run ``python -m starcli``)."""
    (tmp_path / "hit_in_exec.py").write_text(HIT_IN_EXEC.replace("HOLD", hold))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, "-m", "hit_in_exec"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    return run.returncode, run.stderr


def test_ctrl_c_in_library_code_is_raised_after_the_block_and_the_exit_stays_130(tmp_path):
    assert run_module(tmp_path, "held_signals()") == (130, "")


def test_without_the_hold_cpython_turns_the_caught_interrupt_into_death_by_sigint(tmp_path):
    """Why the hold exists (CPython 3.11's behaviour: if a later one drops it, so can this test)."""
    assert run_module(tmp_path, "open(__file__)")[0] == -2
