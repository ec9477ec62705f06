"""What a run does before its first answer token, and what it no longer does (issue 14): the
launcher of a torchrun job imports no model code, the tokenizer loads once, and no token
estimate is built where the model's own tokenizer counts exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli import ingest, launch, tokens
from starcli.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_the_launcher_and_a_request_import_no_torch():
    code = (
        "import sys\n"
        "import starcli.launch, engine.request, engine.context_store\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.usefixtures("isolated")
def test_a_run_loads_the_tokenizer_once_and_builds_no_estimate(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "cache"))
    doc = tmp_path / "notes.txt"
    doc.write_text("The ferry is named Storm Petrel and carries 180 passengers.\n")
    loads = []
    real = AutoTokenizer.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return real(cls, *args, **kwargs)

    def no_estimate(text):
        raise AssertionError("a run that counts exactly built a token estimate")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(counting))
    monkeypatch.setattr(tokens, "estimate_tokens", no_estimate)
    monkeypatch.setattr(ingest, "estimate_tokens", no_estimate)
    launch.load_tokenizer.cache_clear()
    args = ["ask", str(doc), "Name?", "--model", tiny_model_dir, "--max-tokens", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert loads == [tiny_model_dir]


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize(("positions", "estimates"), [("local", False), ("global", True)])
def test_only_a_run_that_may_refuse_for_length_estimates_first(
    tiny_model_dir, tmp_path, monkeypatch, positions, estimates
):
    """Local positions keep every block within the window at any length, so nothing is refused
    for length and no estimate is made before the exact count; global positions may be refused."""
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "cache"))
    doc = tmp_path / "notes.txt"
    doc.write_text("The ferry is named Storm Petrel and carries 180 passengers.\n")
    made = []
    real = ingest.estimate_context_tokens
    monkeypatch.setattr(ingest, "estimate_context_tokens", lambda docs: made.append(1) or real(docs))
    args = ["ask", str(doc), "Name?", "--model", tiny_model_dir, "--max-tokens", "3"]
    result = CliRunner().invoke(app, [*args, "--positions", positions, "--no-cache"])
    assert result.exit_code == 0, result.stderr
    assert bool(made) == estimates


def test_every_step_the_start_up_trace_times_still_exists():
    """bench/cli_trace.py wraps the CLI's functions by name: a renamed one would drop out of the
    GPU start-up figures silently."""
    import importlib

    from bench.cli_trace import STEPS

    for module, attribute, _ in STEPS:
        owner = importlib.import_module(module)
        for part in attribute.split("."):
            owner = getattr(owner, part)
        assert callable(owner), f"{module}.{attribute}"
