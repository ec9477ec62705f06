"""``--kv-dtype fp8`` through the CLI on a tiny random model saved to disk (conftest's
``tiny_model_dir``): it answers, says so in the plan, keeps its own saved context (torchrun's
ranks too), and what it cannot run is refused with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli.cli import app

pytestmark = pytest.mark.usefixtures("isolated")

TEXT = "The lighthouse keeper logged a storm on the ninth of May. The lamp was replaced in June.\n"


@pytest.fixture
def doc(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "cache"))  # saved contexts of this test only
    path = tmp_path / "log.txt"
    path.write_text(TEXT * 3)
    return path


def ask(model: str, doc: Path, *args: str, code: int = 0):
    argv = ["ask", str(doc), "When was the storm?", "--model", model, "--max-tokens", "6", *args]
    result = CliRunner().invoke(app, [*argv, "--no-loop-stop", "--block-size", "128"])
    assert result.exit_code == code, result.stderr
    return result


def test_fp8_answers_keeps_its_own_saved_context_and_shows_in_the_plan(tiny_model_dir, doc):
    exact = json.loads(ask(tiny_model_dir, doc, "--json").stdout.splitlines()[0])
    fp8 = json.loads(ask(tiny_model_dir, doc, "--json", "--kv-dtype", "fp8").stdout.splitlines()[0])
    assert fp8["generated_tokens"] > 0 and (exact["context_cache"], fp8["context_cache"]) == ("miss", "miss")
    again = json.loads(ask(tiny_model_dir, doc, "--json", "--kv-dtype", "fp8").stdout.splitlines()[0])
    assert again["context_cache"] == "hit" and again["answer"] == fp8["answer"]
    plan = ask(tiny_model_dir, doc, "--dry-run", "--kv-dtype", "fp8").stdout
    assert "fp8 KV cache" in plan
    assert "fp8 KV cache" not in ask(tiny_model_dir, doc, "--dry-run").stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--kv-dtype", "fp8", "--attention", "global"], "--kv-dtype fp8"),
        (["--kv-dtype", "int4"], "--kv-dtype"),
    ],
)
def test_what_fp8_cannot_run_is_one_error_line(tiny_model_dir, doc, args, words):
    result = ask(tiny_model_dir, doc, *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], result.stderr


@pytest.mark.slow
def test_two_ranks_store_their_context_in_fp8(tiny_model_dir, doc):
    """The plan carries the KV dtype to torchrun's ranks: their saved files are fp8's size. The
    model-dtype size to compare with is one rank's entry of the same context (in this process:
    the blocks' KV is the same bytes however the ranks split it; two ranks saving model-dtype
    files is tests/test_chat.py's two-rank run and tests/test_faults_cli.py's two runs at once)."""
    entries: dict[str, dict] = {}
    for kv, ranks in (("model", "1"), ("fp8", "2")):
        ask(tiny_model_dir, doc, "--nproc", ranks, "--kv-dtype", kv)
        listed = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)["entries"]
        seen = {e["key"] for e in entries.values()}
        [entries[kv]] = [e for e in listed if e["key"] not in seen]
    assert (entries["model"]["ranks"], entries["fp8"]["ranks"]) == (1, 2)
    # fp32 tiny model: 4 bytes an element against 1, and a 4-byte scale per 16-element head
    assert entries["fp8"]["bytes"] < 0.4 * entries["model"]["bytes"]
