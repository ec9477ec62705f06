"""End-to-end engine checks on the real default model (SmolLM2-135M-Instruct, CPU, fp32)."""

from __future__ import annotations

import pytest

from engine import Engine, Request, Stats, Token
from engine.chat import build_prompt, encode
from tests.helpers import dense_greedy, settings_of, star_plan, worker_ranks_run

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The special magic number is 73914."
QUESTION = "What is the special magic number?"


def haystack(repeats: int) -> str:
    half = FILLER * (repeats // 2)
    return f"{half}{NEEDLE} {half}"


@pytest.fixture(scope="module")
def needle_prompt(default_model):
    ctx, query = build_prompt(default_model.tokenizer, haystack(130), QUESTION)
    return encode(default_model.tokenizer, ctx), encode(default_model.tokenizer, query)


def run(engine, ctx, query, mode="star", max_tokens=24, **kwargs):
    events = list(engine.run(Request(ctx, [query], settings_of(mode, max_tokens, **kwargs))))
    tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
    return tokens, next(e for e in events if isinstance(e, Stats))


@pytest.fixture(scope="module")
def star_needle(default_model, needle_prompt):
    """Star with four blocks over the needle prompt on one rank, in this process: what dense is
    checked against below, and what two ranks must repeat token for token."""
    ctx, query = needle_prompt
    engine = Engine(default_model.model, default_model.tokenizer)
    return run(engine, ctx, query, mode="star", block_size=-(-len(ctx) // 4))


def test_star_with_one_block_gives_the_dense_models_greedy_tokens(default_model):
    tok = default_model.tokenizer
    ctx, query = build_prompt(
        tok, "Alice keeps her spare key under the blue flowerpot. " * 8, "Where is the key?"
    )
    ctx_ids, query_ids = encode(tok, ctx), encode(tok, query)
    expected = dense_greedy(default_model.model, ctx_ids + query_ids, 16)
    engine = Engine(default_model.model, tok)
    tokens, stats = run(engine, ctx_ids, query_ids, mode="star", block_size=len(ctx_ids), max_tokens=16)
    eos_cut = [t for t in expected[: len(tokens) + 1] if t not in engine.eos_ids]
    assert tokens == eos_cut[: len(tokens)] and tokens
    assert tokens == expected[: len(tokens)]
    assert stats.stop_reason in ("eos", "max_tokens")


def test_needle_in_a_3k_haystack_found_with_four_blocks_and_dense(default_model, needle_prompt, star_needle):
    ctx, query = needle_prompt
    assert 2500 < len(ctx) < 3500
    engine = Engine(default_model.model, default_model.tokenizer)
    _, star = star_needle
    _, dense = run(engine, ctx, query, mode="global")
    assert star.blocks_per_rank == [4]
    assert "73914" in star.answer
    assert "73914" in dense.answer


def test_two_cpu_ranks_give_the_same_greedy_answer_as_one(needle_prompt, star_needle):
    """Two ranks of ``python -m engine`` (``worker_ranks_run``: what torchrun starts, on the
    session's pooled processes) against the same plan on one rank (``star_needle``; the one-rank
    launch path, ``InProcessSession``, is what every in-process CLI test runs). A real two-rank
    torchrun job of the default model: test_cli_e2e.py's two-rank command."""
    ctx, query = needle_prompt
    plan = star_plan(len(ctx), -(-len(ctx) // 4), None, 2, max_tokens=24, query_tokens=len(query))
    events = worker_ranks_run(Request(ctx, [query], plan=plan), None)
    stats = next(e for e in events if isinstance(e, Stats))
    tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
    one_tokens, one = star_needle
    assert one.world_size == 1 and stats.world_size == 2
    assert stats.blocks_per_rank == [2, 2]
    assert (tokens, stats.answer) == (one_tokens, one.answer)
    assert "73914" in stats.answer
