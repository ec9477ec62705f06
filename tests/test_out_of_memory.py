"""Out of memory (issue 5): on one rank in the CLI's own process, in a torchrun rank, on CPU and
on a GPU, an allocation failure ends as exit 1 and one ``Error:`` line with the ways out.

On CPU the failure is real: a forward pass asks torch for more memory than any machine has, and
torch's CPU allocator raises (a plain ``RuntimeError``, not ``torch.OutOfMemoryError``). A GPU's
failure is ``torch.OutOfMemoryError``, raised here as CUDA raises it. Through real ranks:
tests/test_faults_cli.py::test_rank_out_of_memory_names_the_ways_out.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from engine import Failure, Request, worker
from engine.cache import StarCache
from engine.errors import is_out_of_memory
from engine.runner import ModelRunner
from starcli import launch
from starcli.cli import OUT_OF_MEMORY_HINT, app
from tests.helpers import settings_of

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated")]  # isolated: conftest
NOTE = "Minutes of the harbour committee. The new ferry is named Storm Petrel. " * 12
WAYS_OUT = ("--block-size", "--nproc", "shorter input")


def impossible_allocation(engine: ModelRunner) -> None:
    torch.empty(1 << 60, dtype=torch.uint8, device=engine.device)


def cuda_out_of_memory(engine: ModelRunner) -> None:
    raise torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
    )


@pytest.fixture
def fail_in_phase_1(monkeypatch):
    """Make the second phase-1 forward pass fail with ``how(engine)``."""

    def install(how):
        forward = ModelRunner.forward
        calls = []

        def failing(self, ids, position, cache):
            if isinstance(cache, StarCache) and cache.phase == "block":
                calls.append(position)
                if len(calls) == 2:
                    how(self)
            return forward(self, ids, position, cache)

        monkeypatch.setattr(ModelRunner, "forward", failing)

    return install


def test_the_cpu_allocator_failure_is_recognised():
    with pytest.raises(RuntimeError) as failure:
        torch.empty(1 << 60, dtype=torch.uint8)
    assert type(failure.value) is RuntimeError and is_out_of_memory(failure.value)
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("x"))


@pytest.mark.parametrize("how", [impossible_allocation, cuda_out_of_memory], ids=["cpu", "cuda"])
def test_one_rank_in_process(default_model, fail_in_phase_1, how):
    fail_in_phase_1(how)
    args = ["ask", "-", "What is the ferry named?", "--block-size", "128", "--max-tokens", "4"]
    result = CliRunner().invoke(app, args, input=NOTE)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {OUT_OF_MEMORY_HINT}\n"
    assert all(way in OUT_OF_MEMORY_HINT for way in WAYS_OUT)


def test_a_rank_reports_any_allocation_failure_as_out_of_memory(default_model, fail_in_phase_1, tmp_path):
    """The rank entry point (run here as a world of one) names the failure so that the launcher
    can give the ways out, whatever exception class the device's allocator raised."""
    fail_in_phase_1(impossible_allocation)
    request = Request(list(range(100, 228)), [[5, 6, 7]], settings_of(block_size=32))
    (tmp_path / "request.json").write_text(request.to_json())
    events = tmp_path / "events.jsonl"
    code = worker.main(["--request", str(tmp_path / "request.json"), "--events", str(events)])
    assert code == 1
    failure = json.loads(events.read_text().splitlines()[-1])
    assert failure["event"] == "error" and failure["error_type"] == "OutOfMemoryError"
    assert failure["phase"] == "phase 1" and "can't allocate memory" in failure["message"]


@pytest.mark.parametrize(
    "phase, fragments",
    [
        ("phase 1", ("rank 1 ran out of memory during phase 1", *WAYS_OUT)),
        ("decode", ("rank 1 ran out of memory during decode", *WAYS_OUT)),
        ("model load", ("rank 1 ran out of memory loading the model", "smaller model")),
    ],
)
def test_the_launcher_names_the_ways_out(phase, fragments):
    failure = Failure(rank=1, phase=phase, error_type="OutOfMemoryError", message="CUDA out of memory")
    with pytest.raises(launch.RankOutOfMemory) as error:
        launch._raise_failure(failure)
    assert all(fragment in str(error.value) for fragment in fragments)
