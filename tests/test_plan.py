"""Block planning: coverage, contiguity, balance, and the documented errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import transformers

from engine.errors import BadSettingError, EmptyInputError
from engine.plan import CostModel, default_block_size, plan_blocks


@pytest.mark.parametrize(
    "n,b,a,w", [(1, 1, 1, 1), (10, 3, 2, 2), (100, 7, 7, 3), (64, 16, 4, 8), (5, 100, 50, 3)]
)
def test_blocks_cover_context_and_ranks_are_contiguous(n, b, a, w):
    plan = plan_blocks(n, b, a, w)
    assert plan.blocks[0][0] == 0 and plan.blocks[-1][1] == n
    assert all(p[1] == q[0] for p, q in zip(plan.blocks, plan.blocks[1:]))
    assert all(stop - start == b for start, stop in plan.blocks[:-1])
    flat = [i for run in plan.ranks for i in run]
    assert flat == list(range(len(plan.blocks)))
    assert len(plan.ranks) == w


def _load(plan, cost, rank):
    own = plan.ranks[rank]
    if not own:
        return 0.0
    work = sum(cost.block(plan.blocks[i][1] - plan.blocks[i][0], plan.anchor if i else 0) for i in own)
    return work + (cost.block(plan.anchor, 0) if own[0] != 0 else 0.0)


def _best_max_load(plan, cost, world):
    """Brute force over every contiguous split: the smallest possible heaviest rank."""
    k = len(plan.blocks)
    best = float("inf")
    for cuts in itertools.combinations_with_replacement(range(k + 1), world - 1):
        bounds = (0, *cuts, k)
        runs = tuple(tuple(range(bounds[r], bounds[r + 1])) for r in range(world))
        trial = type(plan)(plan.context_tokens, plan.block_size, plan.anchor_size, plan.blocks, runs)
        best = min(best, max(_load(trial, cost, r) for r in range(world)))
    return best


@pytest.mark.parametrize(
    "n,b,a,w", [(8192, 1024, None, 4), (5000, 512, 128, 3), (3000, 700, 700, 2), (900, 100, 10, 5)]
)
@pytest.mark.parametrize("cost", [CostModel(1.0, 0.0), CostModel(1.0, 0.01)])
def test_assignment_minimises_the_heaviest_rank(n, b, a, w, cost):
    plan = plan_blocks(n, b, a, w, cost)
    heaviest = max(_load(plan, cost, r) for r in range(w))
    assert heaviest == pytest.approx(_best_max_load(plan, cost, w), rel=1e-6)


def test_rank_with_block_zero_takes_more_when_anchor_is_costly():
    # Rank 0 pays no anchor, so with attention-heavy costs it should carry at least as many blocks.
    plan = plan_blocks(12 * 512, 512, None, 3, CostModel(linear=1.0, per_key=0.01))
    counts = plan.blocks_per_rank()
    assert counts[0] >= max(counts[1:])


def test_more_ranks_than_blocks_leaves_ranks_empty():
    plan = plan_blocks(10, 8, 1, 3)
    assert plan.blocks_per_rank() == [1, 1, 0]
    assert plan.rank_span(2) == (0, 0)


def test_single_block_uses_no_anchor():
    assert plan_blocks(100, 200, None, 1).anchor == 0


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(context_tokens=0, block_size=4, anchor_size=None, world_size=1), EmptyInputError, "empty"),
        (dict(context_tokens=9, block_size=0, anchor_size=None, world_size=1), BadSettingError, "at least 1"),
        (dict(context_tokens=9, block_size=4, anchor_size=5, world_size=1), BadSettingError, "anchor size 5"),
        (
            dict(context_tokens=9, block_size=4, anchor_size=-1, world_size=1),
            BadSettingError,
            "anchor size -1",
        ),
    ],
)
def test_bad_plans_raise_specific_errors(kwargs, error, words):
    with pytest.raises(error, match=words):
        plan_blocks(**kwargs)


def _load_shared(plan, cost, rank):
    own = plan.ranks[rank]
    return sum(cost.block(plan.blocks[i][1] - plan.blocks[i][0], plan.anchor if i else 0) for i in own)


@pytest.mark.parametrize("n,b,a,w", [(8192, 1024, None, 4), (5000, 512, 128, 3), (131072, 16384, None, 2)])
def test_shared_anchor_plan_minimises_the_heaviest_rank_without_anchor_cost(n, b, a, w):
    from transformers import LlamaConfig

    cost = CostModel.for_config(LlamaConfig(num_key_value_heads=8, intermediate_size=14336))
    plan = plan_blocks(n, b, a, w, cost, share_anchor=True)
    assert plan.anchor_shared
    k = len(plan.blocks)
    best = float("inf")
    for cuts in itertools.combinations_with_replacement(range(k + 1), w - 1):
        bounds = (0, *cuts, k)
        runs = tuple(tuple(range(bounds[r], bounds[r + 1])) for r in range(w))
        trial = type(plan)(plan.context_tokens, plan.block_size, plan.anchor_size, plan.blocks, runs, True)
        best = min(best, max(_load_shared(trial, cost, r) for r in range(w)))
    heaviest = max(_load_shared(plan, cost, r) for r in range(w))
    assert heaviest == pytest.approx(best, rel=1e-6)


def test_two_ranks_split_eight_blocks_evenly_when_the_anchor_is_shared():
    # 128K tokens in 16K blocks on 2 ranks (docs/benchmarks.md): recomputing the anchor on rank 1
    # costs about as much as rank 0's anchor-free block 0, so either split leaves one rank a block
    # heavier; with the anchor sent by rank 0 the even split is best.
    from transformers import LlamaConfig

    cost = CostModel.for_config(LlamaConfig(num_key_value_heads=8, intermediate_size=14336))
    assert plan_blocks(131072, 16384, None, 2, cost, share_anchor=True).blocks_per_rank() == [4, 4]
    assert not plan_blocks(131072, 16384, None, 1, cost, share_anchor=True).anchor_shared


def test_calibrated_cost_keeps_flop_counts_for_floors():
    from transformers import LlamaConfig

    config = LlamaConfig(num_key_value_heads=8, intermediate_size=14336)
    cost = CostModel.for_config(config)
    assert cost.per_key == 4 * 32 * 128 * 32  # plain FLOPs per attended key, all layers
    assert cost.pointwise > 0 and 0 < cost.attn_rate <= 1
    plain = cost.linear * 100 + cost.per_key * 100 * 101 / 2
    assert cost.block(100, 0) > plain  # weighted: pointwise work and the slower attention rate


@pytest.mark.parametrize(
    "n,w,expected",
    [
        (100, 1, 4096),
        (8000, 1, 4096),
        (20000, 1, 5000),
        (131072, 1, 16384),
        (131072, 2, 16384),
        (65536, 4, 4096),
    ],
)
def test_default_block_size_is_a_quarter_share_within_4k_and_16k(n, w, expected):
    assert default_block_size(n, w) == expected


@pytest.mark.parametrize(
    "config",
    [
        transformers.Gemma3TextConfig(num_hidden_layers=6, sliding_window=64, head_dim=16),
        transformers.MistralConfig(num_hidden_layers=2, sliding_window=48),
        transformers.Qwen2Config(
            num_hidden_layers=4, use_sliding_window=True, sliding_window=32, max_window_layers=2
        ),
        transformers.Qwen2Config(num_hidden_layers=2),
    ],
)
@pytest.mark.parametrize(("tokens", "anchor"), [(200, 0), (200, 100), (30, 10), (64, 64)])
def test_block_cost_counts_the_keys_each_layer_really_sees(config, tokens, anchor):
    """A window layer's token at sequence index p attends to min(W, p + 1) keys of
    ``[anchor, block]``: the cost model's attention term equals that count, layer by layer,
    taken from the causal/window mask itself."""
    cost = CostModel.for_config(config)
    n = anchor + tokens
    rows, cols = torch.arange(n).unsqueeze(1), torch.arange(n).unsqueeze(0)
    key_cost = (
        4
        * config.num_attention_heads
        * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    )
    if config.model_type == "mistral":  # no layer types: the window applies to every layer
        kinds = ["sliding_attention"] * config.num_hidden_layers
    else:
        kinds = config.layer_types
    keys = 0
    for kind in kinds:
        visible = cols <= rows
        if kind == "sliding_attention":
            visible &= cols > rows - config.sliding_window
        keys += int(visible[anchor:].sum()) * key_cost
    linear = tokens * (cost.linear + cost.pointwise)
    assert cost.block(tokens, anchor) == pytest.approx(linear + keys / cost.attn_rate, rel=1e-12)
