"""Window-local positions (issue 13): inputs beyond the model's window.

The plan picks them only where the input does not fit the window; the engine's tokens are
compared with a reference built from transformers' own dense model: every block run as
``[anchor, block]`` at positions ``0..``, the query over all blocks' KV right after the longest
such span (tests/helpers.py), on 1, 2 and 3 CPU ranks.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from engine import Engine, Request, Stats, Token
from engine.errors import BadSettingError, BeyondLocalPositionsError, ContextTooLongError
from engine.runplan import make_run_plan
from engine.settings import Attention, GenerationSettings, Positions, RunSettings
from tests.helpers import (
    IdTokenizer,
    reference_context_cache,
    reference_greedy,
    save_byte_tokenizer,
    tiny_config,
    worker_ranks_run,
)

WINDOW = 128
STEPS = 8


def settings(**kwargs) -> RunSettings:
    generation = GenerationSettings.plain(max_tokens=kwargs.pop("max_tokens", STEPS))
    return RunSettings(generation=generation, **kwargs)


def test_an_input_that_fits_keeps_global_positions():
    plan = make_run_plan(settings(), 100, 10, 1, window=WINDOW)
    assert plan.positions == Positions.GLOBAL and plan.context_span == 100


def test_an_input_beyond_the_window_gets_local_positions_and_blocks_that_fit():
    plan = make_run_plan(settings(positions=Positions.LOCAL), 240, 10, 1, window=WINDOW)
    assert plan.positions == Positions.LOCAL
    assert plan.blocks > 1
    span = plan.layout.anchor + plan.block_size
    assert plan.context_span == span and span + 10 + plan.max_tokens <= WINDOW
    assert plan.block_position(0) == 0
    assert all(plan.block_position(i) == plan.layout.anchor for i in range(1, plan.blocks))


def test_past_the_window_local_positions_must_be_asked_for():
    """Auto positions go local only while the input itself fits (its answer does not); past the
    window the plan refuses with the error the CLI's map-reduce fallback takes over from."""
    plan = make_run_plan(settings(), WINDOW - 12, 10, 1, window=WINDOW)
    assert plan.positions == Positions.LOCAL
    with pytest.raises(
        BeyondLocalPositionsError, match=r"2\.4x the model.s window of 128.*--positions local"
    ):
        make_run_plan(settings(), 300, 10, 1, window=WINDOW)
    with pytest.raises(BeyondLocalPositionsError, match=r"1\.0x the model.s window"):
        make_run_plan(settings(), WINDOW - 9, 10, 1, window=WINDOW)
    plan = make_run_plan(settings(positions=Positions.LOCAL), 1000, 10, 1, window=WINDOW)
    assert plan.positions == Positions.LOCAL and plan.context_span + 10 + STEPS <= WINDOW


def test_local_positions_honour_a_chosen_block_and_anchor():
    local = Positions.LOCAL
    plan = make_run_plan(settings(block_size=64, anchor_size=32, positions=local), 1000, 10, 2, window=WINDOW)
    assert (plan.block_size, plan.anchor_size, plan.context_span) == (64, 32, 96)
    with pytest.raises(ContextTooLongError, match="smaller --block-size"):
        make_run_plan(settings(block_size=100, positions=local), 1000, 10, 1, window=WINDOW)


def test_dense_attention_beyond_the_window_is_still_refused():
    with pytest.raises(ContextTooLongError):
        make_run_plan(settings(attention=Attention.GLOBAL), 1000, 10, 1, window=WINDOW)
    with pytest.raises(BadSettingError, match="need star attention"):
        make_run_plan(settings(attention=Attention.GLOBAL, positions=Positions.LOCAL), 100, 10, 1)


def test_global_positions_can_be_forced_and_are_then_refused_beyond_the_window():
    with pytest.raises(ContextTooLongError):
        make_run_plan(settings(positions=Positions.GLOBAL), 1000, 10, 1, window=WINDOW)


@pytest.fixture(scope="module")
def short_window_llama():
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(tiny_config("llama", max_position_embeddings=WINDOW)).eval()


CTX = torch.randint(0, 101, (300,), generator=torch.Generator().manual_seed(2)).tolist()  # 2.3 windows
QUERY = [3, 14, 15, 92]


@pytest.mark.parametrize("block, anchor", [(40, 40), (48, 16), (56, 0)])
def test_local_star_equals_the_dense_models_per_block_reference(short_window_llama, block, anchor):
    model = short_window_llama
    cache = reference_context_cache(model, CTX, block, anchor, local=True)
    span = anchor + block if anchor else block
    expected = reference_greedy(model, cache, span, QUERY, STEPS)
    engine = Engine(model, IdTokenizer())
    run = settings(block_size=block, anchor_size=anchor, positions=Positions.LOCAL)  # 2.3x: asked for
    events = list(engine.run(Request(CTX, [QUERY], run)))
    stats = next(e for e in events if isinstance(e, Stats))
    tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
    assert tokens == expected
    assert stats.context_tokens == len(CTX) > WINDOW


@pytest.fixture(scope="module")
def saved_model(short_window_llama, tmp_path_factory):
    path = tmp_path_factory.mktemp("short-window-llama")
    short_window_llama.save_pretrained(path)
    save_byte_tokenizer(path)
    return str(path)


@pytest.mark.slow
def test_local_positions_over_ranks_give_the_reference_tokens(short_window_llama, saved_model):
    """Three ranks of ``python -m engine`` (tests.helpers.worker_ranks_run): the first (block 0,
    no anchor), a middle one and the query host. (Two ranks, run here until 2026-12-02, are this
    case less its middle rank, as in test_model_zoo.)"""
    world = 3
    cache = reference_context_cache(short_window_llama, CTX, 40, 40, local=True)
    expected = reference_greedy(short_window_llama, cache, 80, QUERY, STEPS)
    local = settings(block_size=40, anchor_size=40, positions=Positions.LOCAL)
    plan = make_run_plan(local, len(CTX), len(QUERY), world, window=WINDOW)
    assert plan.positions == Positions.LOCAL and min(plan.blocks_per_rank()) > 0
    events = worker_ranks_run(Request(CTX, [QUERY], plan=plan), saved_model)
    stats = next(e for e in events if isinstance(e, Stats))
    # The saved byte-level tokenizer streams whole characters, so compare the answer's text.
    tokenizer = AutoTokenizer.from_pretrained(saved_model)
    assert stats.generated_tokens == STEPS and stats.world_size == world
    assert stats.answer == tokenizer.decode(expected)
