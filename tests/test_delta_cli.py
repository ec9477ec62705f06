"""``--correction delta`` through the CLI on a tiny random model saved to disk (conftest's
``tiny_model_dir``): stride 1 answers as dense attention does, the correction is part of the saved
context's key, and what it cannot run is refused with one line and exit 2."""

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


def answer(result) -> dict:
    return json.loads(result.stdout.splitlines()[0])


def test_stride_one_answers_as_dense_and_has_its_own_saved_context(tiny_model_dir, doc):
    dense = answer(ask(tiny_model_dir, doc, "--json", "--attention", "global"))
    plain = answer(ask(tiny_model_dir, doc, "--json"))
    exact = answer(ask(tiny_model_dir, doc, "--json", "--correction", "delta", "--delta-stride", "1"))
    same = ("answer", "generated_tokens")
    assert [exact[k] for k in same] == [dense[k] for k in same] and exact["generated_tokens"] > 0
    assert (plain["context_cache"], exact["context_cache"]) == ("miss", "miss")  # not plain Star's entry
    again = answer(ask(tiny_model_dir, doc, "--json", "--correction", "delta", "--delta-stride", "1"))
    assert again["context_cache"] == "hit" and again["answer"] == exact["answer"]
    other = answer(ask(tiny_model_dir, doc, "--json", "--correction", "delta", "--delta-stride", "4"))
    assert other["context_cache"] == "miss"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--positions", "local"], "needs global positions"),
        (["--attention", "ring"], "corrects star attention"),
        (["--delta-stride", "0"], "--delta-stride"),
    ],
)
def test_what_the_correction_cannot_run_is_one_error_line(tiny_model_dir, doc, args, words):
    result = ask(tiny_model_dir, doc, "--correction", "delta", *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], result.stderr
