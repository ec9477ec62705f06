"""``ask`` through the CLI with a saved context and several questions (issue 14), on a tiny random
model saved to disk (conftest's ``tiny_model_dir``): each run takes well under a second.

What is checked: a second run over unchanged sources loads the saved context and answers exactly
as a run without it; an edited source is encoded again; ``--no-cache`` and a size of 0 save
nothing; ``--also`` answers every question over one encoding, each answer the one a separate run
gives; ``cache list|clear``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli.cli import app

pytestmark = pytest.mark.usefixtures("isolated")

TEXT = "The lighthouse keeper logged a storm on the ninth of May. The lamp was replaced in June.\n"


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """A private starcli cache: saved contexts of one test only."""
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "contexts"


@pytest.fixture
def doc(tmp_path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text(TEXT * 3)
    return path


def run(model: str, *args: str, code: int = 0):
    result = CliRunner().invoke(app, [*args, "--model", model, "--max-tokens", "6", "--block-size", "128"])
    assert result.exit_code == code, result.stderr
    return result


def answers(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_a_second_question_loads_the_saved_context_and_answers_as_a_fresh_run(tiny_model_dir, doc, cache):
    first = answers(run(tiny_model_dir, "ask", str(doc), "When was the storm?", "--json"))[0]
    second = "When was the lamp replaced?"
    hit = answers(run(tiny_model_dir, "ask", str(doc), second, "--json"))[0]
    fresh = answers(run(tiny_model_dir, "ask", str(doc), second, "--json", "--no-cache"))[0]
    assert (first["context_cache"], hit["context_cache"], fresh["context_cache"]) == ("miss", "hit", "off")
    assert hit["answer"] == fresh["answer"] and hit["stopped"] == fresh["stopped"]
    # As many tokens as the fresh run: 6 (--max-tokens) unless the tiny random model meets its
    # end token first, which depends on the temp dir's path in the prompt (3 in one CI run).
    assert hit["generated_tokens"] == fresh["generated_tokens"] > 0
    assert len(list(cache.glob("*/rank-0-of-1.safetensors"))) == 1


def test_an_edited_source_is_encoded_again(tiny_model_dir, doc, cache):
    run(tiny_model_dir, "ask", str(doc), "When was the storm?", "--json")
    doc.write_text((TEXT * 3).replace("ninth", "tenth"))
    edited = answers(run(tiny_model_dir, "ask", str(doc), "When was the storm?", "--json"))[0]
    fresh = answers(run(tiny_model_dir, "ask", str(doc), "When was the storm?", "--json", "--no-cache"))[0]
    assert edited["context_cache"] == "miss" and edited["answer"] == fresh["answer"]
    assert len(list(cache.iterdir())) == 2


def test_saving_is_off_with_no_cache_or_a_size_of_zero(tiny_model_dir, doc, cache, monkeypatch):
    run(tiny_model_dir, "ask", str(doc), "When?", "--no-cache")
    monkeypatch.setenv("STARCLI_CONTEXT_CACHE_SIZE", "0")
    data = answers(run(tiny_model_dir, "ask", str(doc), "When?", "--json"))[0]
    assert data["context_cache"] == "off" and not cache.exists()
    monkeypatch.setenv("STARCLI_CONTEXT_CACHE_SIZE", "lots")
    result = run(tiny_model_dir, "ask", str(doc), "When?", code=2)
    assert "STARCLI_CONTEXT_CACHE_SIZE must be a size such as 4GiB" in result.stderr


def test_several_questions_are_answered_over_one_encoding_as_separate_runs_answer_them(
    tiny_model_dir, doc, cache
):
    questions = ["When was the storm?", "When was the lamp replaced?", "Who kept the light?"]
    alone = [answers(run(tiny_model_dir, "ask", str(doc), q, "--json", "--no-cache"))[0] for q in questions]
    alone = [data["answer"] for data in alone]
    also = [arg for q in questions[1:] for arg in ("--also", q)]
    together = answers(run(tiny_model_dir, "ask", str(doc), questions[0], *also, "--json", "--no-cache"))
    assert [d["question"] for d in together] == questions
    assert [d["answer"] for d in together] == alone
    text = run(tiny_model_dir, "ask", str(doc), questions[0], *also, "--no-cache").stdout
    assert text == "".join(f"{a}\n\n" for a in alone[:-1]) + f"{alone[-1]}\n"
    result = run(tiny_model_dir, "ask", str(doc), questions[0], "--also", " ", code=2)
    assert "--also" in result.stderr and "empty" in result.stderr


def test_cache_list_and_clear(tiny_model_dir, doc, cache):
    run(tiny_model_dir, "ask", str(doc), "When was the storm?")
    listed = CliRunner().invoke(app, ["cache", "list"])
    assert listed.exit_code == 0 and "1 saved context," in listed.stdout and "star, 1 rank" in listed.stdout
    data = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)
    assert len(data["entries"]) == 1 and data["entries"][0]["bytes"] == data["bytes"] > 0
    cleared = CliRunner().invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and cleared.stdout.startswith("Removed 1 saved context (")
    assert list(cache.iterdir()) == []
