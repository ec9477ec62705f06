"""``starcli chat`` and the engine's follow-ups (issue 14).

A follow-up continues the conversation in the query host's tail; its tokens must be those of
transformers' own dense model run over the whole conversation (context, first question, first
answer, follow-up), in global mode and with one star block, and those of the per-block reference
with several blocks. Through the CLI (a tiny random model saved to disk): piped questions, one
answer per question each followed by an empty line, the first equal to ``ask``'s; ``-`` refused;
with ``--nproc 2`` the ranks answer every question and exit cleanly at the end of input.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from engine import Engine, Request, Stats, Token
from starcli.cli import app
from tests.clijob import cli_env
from tests.helpers import (
    IdTokenizer,
    dense_greedy,
    reference_context_cache,
    reference_greedy,
    settings_of,
)

CTX = torch.randint(0, 101, (60,), generator=torch.Generator().manual_seed(7)).tolist()
Q1, Q2, Q3 = [3, 14, 15], [92, 65, 35, 89], [79, 32]
STEPS = 6
REPO = Path(__file__).resolve().parents[1]


def turn(events) -> tuple[list[int], Stats, object]:
    """(answer tokens, Stats, the generator's return value) of one run or answer."""
    seen = []
    try:
        while True:
            seen.append(next(events))
    except StopIteration as done:
        value = done.value
    tokens = [e.token_id for e in seen if isinstance(e, Token) and e.token_id >= 0]
    return tokens, next(e for e in seen if isinstance(e, Stats)), value


def conversation(model, mode: str, **kwargs) -> tuple[list[list[int]], list[int]]:
    """Three turns (Q1, then Q2 and Q3 as follow-ups): each answer's tokens, and every token the
    conversation holds after the context once the third question is in."""
    engine = Engine(model, IdTokenizer())
    a1, s1, encoded = turn(engine.run(Request(CTX, [Q1], settings_of(mode, STEPS, **kwargs))))
    a2, s2, _ = turn(engine.answer(encoded, Q2, 1, follow_up=True))
    held = Q1 + a1 + (encoded.pending if s1.stop_reason == "eos" else []) + Q2 + a2
    pending = encoded.pending if s2.stop_reason == "eos" else []
    a3, s3, _ = turn(engine.answer(encoded, Q3, 2, follow_up=True))
    assert s2.tail_tokens == len(Q1) + len(a1) + (s1.stop_reason == "eos") + len(Q2) + len(a2) + (
        s2.stop_reason == "eos"
    )
    return [a1, a2, a3], held + pending + Q3


@pytest.mark.parametrize("mode,kwargs", [("global", {}), ("star", {"block_size": 64})])
def test_follow_ups_give_the_dense_models_tokens_over_the_whole_conversation(tiny_llama, mode, kwargs):
    answers, tail = conversation(tiny_llama, mode, **kwargs)
    assert answers[0] == dense_greedy(tiny_llama, CTX + Q1, STEPS)
    assert answers[2] == dense_greedy(tiny_llama, CTX + tail, STEPS)


def test_follow_ups_over_blocks_give_the_per_block_references_tokens(tiny_llama):
    answers, tail = conversation(tiny_llama, "star", block_size=16, anchor_size=8)
    cache = reference_context_cache(tiny_llama, CTX, 16, 8)
    assert answers[2] == reference_greedy(tiny_llama, cache, len(CTX), tail, STEPS)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_follow_up_after_a_stop_string_holds_the_whole_answer_in_either_step_order(
    tiny_llama, monkeypatch, overlap
):
    """A GPU launches each step before the host checks its token (``decode_loop``'s overlap), so
    the token that completes a stop string is already fed when the answer stops; on the CPU it
    waits in ``pending`` for the follow-up to feed it first. Either way the conversation holds
    the whole first answer: the follow-up's tokens are the dense model's over context, question,
    that answer and the follow-up."""
    import engine.api
    from engine.generate import decode_loop

    monkeypatch.setattr(engine.api, "decode_loop", functools.partial(decode_loop, overlap=overlap))
    full = dense_greedy(tiny_llama, CTX + Q1, STEPS)
    settings = settings_of("star", STEPS, block_size=64)
    stop = (f" {full[2]}",)  # IdTokenizer's text: " id id id"
    settings = dataclasses.replace(settings, generation=dataclasses.replace(settings.generation, stop=stop))
    engine = Engine(tiny_llama, IdTokenizer())
    a1, s1, encoded = turn(engine.run(Request(CTX, [Q1], settings)))
    assert s1.stop_reason == "stop" and a1 == full[: len(a1)]
    assert encoded.pending == ([] if overlap else [a1[-1]])
    a2, s2, _ = turn(engine.answer(encoded, Q2, 1, follow_up=True))
    assert a2 and a2 == dense_greedy(tiny_llama, CTX + Q1 + a1 + Q2, STEPS)[: len(a2)]
    assert s2.tail_tokens == len(Q1) + len(a1) + len(Q2) + len(a2) + (s2.stop_reason == "eos")


def test_a_fresh_query_after_a_conversation_forgets_it(tiny_llama):
    engine = Engine(tiny_llama, IdTokenizer())
    _, _, encoded = turn(engine.run(Request(CTX, [Q1], settings_of("star", STEPS, block_size=16))))
    turn(engine.answer(encoded, Q2, 1, follow_up=True))
    alone, _, _ = turn(engine.run(Request(CTX, [Q3], settings_of("star", STEPS, block_size=16))))
    assert turn(engine.answer(encoded, Q3, 2, follow_up=False))[0] == alone


# --- the command --------------------------------------------------------------------------------
TEXT = "The lighthouse keeper logged a storm on the ninth of May. The lamp was replaced in June.\n" * 3


@pytest.fixture
def doc(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "log.txt"
    path.write_text(TEXT)
    return path


ARGS = ("--max-tokens", "6", "--block-size", "128")


@pytest.mark.usefixtures("isolated")
def test_piped_questions_get_one_answer_each_the_first_as_ask_gives_it(tiny_model_dir, doc):
    asked = CliRunner().invoke(
        app, ["ask", str(doc), "When was the storm?", "--model", tiny_model_dir, *ARGS]
    )
    assert asked.exit_code == 0, asked.stderr
    chat = CliRunner().invoke(
        app,
        ["chat", str(doc), "--model", tiny_model_dir, *ARGS],
        input="When was the storm?\n\nWhen was the lamp replaced?\nWho kept it?\n",
    )
    assert chat.exit_code == 0, chat.stderr
    answers = chat.stdout.split("\n\n")
    assert len(answers) == 4 and answers[-1] == ""  # three answers, each followed by an empty line
    assert answers[0] + "\n" == asked.stdout
    assert CliRunner().invoke(app, ["chat", str(doc), "--model", tiny_model_dir], input="").stdout == ""


@pytest.mark.usefixtures("isolated")
def test_chat_refuses_stdin_as_a_source(doc):
    result = CliRunner().invoke(app, ["chat", "-"], input="q\n")
    assert result.exit_code == 2
    assert "Error: chat reads its questions from stdin, so a SOURCE cannot be -" in result.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("isolated")
def test_two_ranks_stay_up_for_every_question_and_exit_at_the_end(tiny_model_dir, doc, tmp_path):
    """The two-rank chat is a real command (its ranks must outlive each answer and exit at the end
    of input); the one-rank reference runs in this process."""
    questions = "When was the storm?\nWhen was the lamp replaced?\n"
    args = ["chat", str(doc), "--model", tiny_model_dir, *ARGS]
    one = CliRunner().invoke(app, args, input=questions)
    env = cli_env(tmp_path / "run", STARCLI_CACHE=str(tmp_path / "cache"))
    (tmp_path / "run").mkdir()
    two = subprocess.run(
        [sys.executable, "-m", "starcli", *args, "--nproc", "2"],
        input=questions,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert one.exit_code == 0 and two.returncode == 0, two.stderr
    assert two.stdout == one.stdout and two.stdout.count("\n\n") == 2
    assert two.stderr == ""  # nothing noisy, no rank logs
    leftovers = [p for p in os.listdir(tmp_path / "run") if p.startswith("starcli-run-")]
    assert leftovers == []  # the job's directory is gone: every rank was torn down
    listed = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"], env=env).stdout)
    assert {e["ranks"] for e in listed["entries"]} == {1, 2}  # each run saved its own ranks' files
