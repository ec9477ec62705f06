"""The launcher: device/nproc resolution, and errors raised inside torchrun ranks coming back
as the same engine exceptions (so the CLI maps them to the same exit codes)."""

from __future__ import annotations

import pytest

from engine import Request, RunSettings, make_run_plan
from engine.errors import BadSettingError, EmptyInputError
from starcli.launch import default_nproc, resolve_device, run_request
from tests.helpers import star_plan


def test_cpu_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert default_nproc("cpu") == 1
    with pytest.raises(BadSettingError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_nproc_must_be_positive():
    with pytest.raises(BadSettingError, match="at least 1"):
        make_run_plan(RunSettings(), 1, 1, 0)


def test_bad_request_in_ranks_comes_back_as_the_engine_error(default_model):
    plan = star_plan(3, None, world=2, max_tokens=4, query_tokens=1)
    request = Request([1, 2, 3], [[]], plan=plan)
    with pytest.raises(EmptyInputError, match="query is empty"):
        list(run_request(request, model=None))


def test_teardown_holds_ctrl_c_until_it_is_done():
    """A second Ctrl-C during a job's teardown waits for it, then interrupts as usual."""
    import os
    import signal

    from starcli.interrupts import held_signals

    finished = False
    with pytest.raises(KeyboardInterrupt):
        with held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            finished = True
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
