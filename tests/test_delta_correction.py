"""The delta correction of Star's phase 1 (``--correction delta``, kernels.delta), on tiny random
models in fp32, against transformers' own dense model: with stride 1 it *is* dense attention;
with one block it changes nothing; with a larger stride it moves phase 1 towards dense."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from engine import Engine, Request, Token
from engine.errors import BadSettingError
from engine.modelcall import call_model
from engine.runplan import make_run_plan
from engine.settings import Attention, Correction, GenerationSettings, Positions, RunSettings
from kernels import attention_with_lse_math, delta_block_attention, spread_deltas
from tests.helpers import (
    IdTokenizer,
    dense_greedy,
    reference_context_cache,
    reference_query_logits,
    use_dense_attention,
)

QUERY = [3, 14, 15, 92]


def settings(block: int, anchor: int | None, stride: int | None, steps: int = 8, **kwargs) -> RunSettings:
    """Star with these blocks, corrected with ``stride`` (None: plain Star)."""
    extra = {"correction": Correction.DELTA, "delta_stride": stride} if stride else {}
    generation = GenerationSettings.plain(max_tokens=steps)
    return RunSettings(block_size=block, anchor_size=anchor, generation=generation, **extra, **kwargs)


def drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def engine_kv(model, ctx: list[int], run: RunSettings) -> DynamicCache:
    """Phase 1 of the engine on one rank, its KV copied into a transformers cache."""
    plan = make_run_plan(run, len(ctx), len(QUERY), 1)
    encoded = drain(Engine(model, IdTokenizer()).encode_context(ctx, plan))
    cache = DynamicCache()
    for layer in range(model.config.num_hidden_layers):
        k, v = encoded.cache.context_kv(layer)
        cache.update(k.clone(), v.clone(), layer)
    return cache


@torch.no_grad()
def dense_kv(model, ctx: list[int]) -> DynamicCache:
    """transformers' own causal prefill of the whole context."""
    use_dense_attention(model)
    cache = DynamicCache()
    call_model(model, torch.tensor([ctx]), torch.arange(len(ctx)).unsqueeze(0), cache, logits_to_keep=0)
    return cache


def context(n: int, seed: int = 4) -> list[int]:
    return torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def max_kv_gap(a: DynamicCache, b: DynamicCache) -> float:
    return max(
        max((x.keys - y.keys).abs().max().item(), (x.values - y.values).abs().max().item())
        for x, y in zip(a.layers, b.layers, strict=True)
    )


@pytest.mark.parametrize("anchor", [16, 5, 0])
def test_stride_one_phase1_is_dense(tiny_llama, anchor):
    """Every row exact over all earlier blocks: the cache is the dense model's KV, whatever the
    anchor (0: no anchor at all), with an uneven last block."""
    ctx = context(75)
    got = engine_kv(tiny_llama, ctx, settings(16, anchor, 1))
    assert max_kv_gap(got, dense_kv(tiny_llama, ctx)) < 1e-5
    plain = engine_kv(tiny_llama, ctx, settings(16, anchor, None))
    assert max_kv_gap(plain, dense_kv(tiny_llama, ctx)) > 1e-3  # plain Star is not dense here


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen2"])
def test_stride_one_answers_with_dense_greedy_tokens(arch, request):
    model = request.getfixturevalue(arch)
    ctx = context(60, seed=1)
    expected = dense_greedy(model, ctx + QUERY, 12)
    events = Engine(model, IdTokenizer()).run(Request(ctx, [QUERY], settings(16, 8, 1, steps=12)))
    assert [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0] == expected


def test_one_block_changes_nothing(tiny_llama):
    """One block has no earlier context: the corrected cache is the paper's (and dense)."""
    ctx = context(50)
    got = engine_kv(tiny_llama, ctx, settings(64, None, 4))
    reference = reference_context_cache(tiny_llama, ctx, 64, 64)
    assert max_kv_gap(got, reference) < 1e-6


@pytest.mark.parametrize("stride", [4, 16])
def test_larger_stride_moves_star_towards_dense(tiny_llama, stride):
    """Measured, not hard-coded: the query's logits over the corrected cache are closer to dense
    attention's than over plain Star's, and the cache differs from plain Star's."""
    ctx = context(96, seed=5)
    n = len(ctx)
    dense = reference_query_logits(tiny_llama, dense_kv(tiny_llama, ctx), n, QUERY)
    plain_kv = engine_kv(tiny_llama, ctx, settings(16, 16, None))
    fixed_kv = engine_kv(tiny_llama, ctx, settings(16, 16, stride))
    assert max_kv_gap(plain_kv, reference_context_cache(tiny_llama, ctx, 16, 16)) < 1e-5
    assert max_kv_gap(fixed_kv, plain_kv) > 1e-4
    plain_err = (reference_query_logits(tiny_llama, plain_kv, n, QUERY) - dense).abs().mean()
    fixed_err = (reference_query_logits(tiny_llama, fixed_kv, n, QUERY) - dense).abs().mean()
    assert fixed_err < plain_err


def test_kernel_rows_get_the_delta_of_the_sampled_row_at_or_before_them():
    """kernels.delta on random tensors against float32 math: the sampled rows are exact attention
    over [earlier, block] (causal), every other row Star's plus its group's delta."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 10, 8, generator=g)
    k, v = torch.randn(1, 2, 10, 8, generator=g), torch.randn(1, 2, 10, 8, generator=g)
    ek, ev = torch.randn(1, 2, 12, 8, generator=g), torch.randn(1, 2, 12, 8, generator=g)
    ak, av = ek[:, :, :3], ev[:, :, :3]  # the anchor begins the earlier context
    exact, _ = attention_with_lse_math(q, torch.cat([ek, k], 2), torch.cat([ev, v], 2), 0.3, causal=True)
    star, _ = attention_with_lse_math(q, torch.cat([ak, k], 2), torch.cat([av, v], 2), 0.3, causal=True)
    out = delta_block_attention(q, k, v, ak, av, ek, ev, 0.3, 4)
    group = torch.arange(10) // 4 * 4
    expected = star + (exact - star)[:, :, group]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    every_row = delta_block_attention(q, k, v, ak, av, ek, ev, 0.3, 1)
    torch.testing.assert_close(every_row, exact, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length, stride", [(12, 4), (12, 5), (3, 8), (1, 1)])
def test_spread_deltas_repeats_each_delta_over_its_group(length, stride):
    """Whole groups, a shorter last group, a stride past the block: row j gets the delta of row
    stride * (j // stride), written into a bf16 output in transformers' [B, L, H, D] layout."""
    g = torch.Generator().manual_seed(1)
    star = torch.randn(1, 3, length, 8, generator=g)
    exact = torch.randn(1, 3, -(-length // stride), 8, generator=g)
    out = torch.empty(1, length, 3, 8, dtype=torch.bfloat16).transpose(1, 2)
    got = spread_deltas(star, exact, stride, out)
    group = torch.arange(length) // stride
    expected = star + (exact - star[:, :, ::stride])[:, :, group]
    assert got.data_ptr() == out.data_ptr() and got.transpose(1, 2).is_contiguous()
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=1e-2)
    assert torch.equal(got[:, :, ::stride], exact.to(torch.bfloat16))


def test_kernel_output_needs_no_copy_to_go_back_to_transformers():
    """transformers transposes the output to [B, L, H, D] and makes it contiguous: no copy."""
    q = torch.randn(1, 4, 9, 8, dtype=torch.bfloat16)
    k, v = torch.randn(1, 2, 9, 8, dtype=torch.bfloat16), torch.randn(1, 2, 9, 8, dtype=torch.bfloat16)
    ek, ev = torch.randn(1, 2, 5, 8, dtype=torch.bfloat16), torch.randn(1, 2, 5, 8, dtype=torch.bfloat16)
    out = delta_block_attention(q, k, v, ek[:, :, :2], ev[:, :, :2], ek, ev, 0.3, 4)
    assert out.dtype == torch.bfloat16 and out.transpose(1, 2).is_contiguous()
    exact, _ = attention_with_lse_math(q, torch.cat([ek, k], 2), torch.cat([ev, v], 2), 0.3, causal=True)
    torch.testing.assert_close(out[:, :, ::4].float(), exact[:, :, ::4].float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"positions": Positions.LOCAL}, "global positions"),
        ({"attention": Attention.RING}, "corrects star"),
        ({"delta_stride": 0}, "at least 1"),
    ],
)
def test_plan_refuses_what_the_correction_cannot_run(change, words):
    run = RunSettings(**{"correction": Correction.DELTA, "block_size": 16, **change})
    with pytest.raises(BadSettingError, match=words):
        make_run_plan(run, 100, 4, 2)


def test_plan_carries_the_correction_through_the_request():
    from engine.runplan import RunPlan

    plan = make_run_plan(settings(16, None, 32), 100, 4, 1)
    assert (plan.correction, plan.delta_stride) == (Correction.DELTA, 32)
    assert RunPlan.from_dict(plan.to_dict()) == plan
    assert RunSettings.from_dict(settings(16, None, 32).to_dict()).delta_stride == 32
