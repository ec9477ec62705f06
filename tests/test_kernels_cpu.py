"""CPU kernels against a float64 reference: attention with LSE, the LSE merge, phase-1 blocks."""

from __future__ import annotations

import pytest
import torch

from kernels import attention_with_lse, attention_with_lse_math, block_attention, merge_partials
from kernels.reference import attention_with_lse_cpu_flash


def dense64(q, k, v, scale, mask=None):
    """Float64 attention with an explicit boolean mask (True = may attend)."""
    groups = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(groups, 1)
    v = v.double().repeat_interleave(groups, 1)
    s = q.double() @ k.transpose(-1, -2) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, -1)
    return torch.softmax(s, -1) @ v, lse


def bottom_right(lq, lk):
    return torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)


@pytest.mark.parametrize("impl", [attention_with_lse_math, attention_with_lse_cpu_flash, attention_with_lse])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lq,lk", [(1, 1), (5, 5), (3, 17), (17, 17), (1, 40)])
def test_attention_with_lse_matches_float64(impl, causal, lq, lk):
    g = torch.Generator().manual_seed(lq * 100 + lk)
    q = torch.randn(2, 6, lq, 16, generator=g)
    k = torch.randn(2, 3, lk, 16, generator=g)
    v = torch.randn(2, 3, lk, 16, generator=g)
    out, lse = impl(q, k, v, 0.25, causal=causal)
    ref, ref_lse = dense64(q, k, v, 0.25, bottom_right(lq, lk) if causal else None)
    assert torch.allclose(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", [attention_with_lse_math, attention_with_lse_cpu_flash, attention_with_lse])
def test_attention_reads_keys_contiguous_values(impl):
    """An fp8 cache's V is a transposed view (engine.cache): torch's private CPU flash op ignores a
    last dim's stride and returned wrong output for it until the inputs were made row-contiguous."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4, 3, 16, generator=g)
    k = torch.randn(1, 2, 9, 16, generator=g)
    v = torch.randn(1, 2, 16, 12, generator=g).transpose(2, 3)[:, :, :9]
    out, lse = impl(q, k, v, 0.25)
    ref, ref_lse = dense64(q, k, v, 0.25)
    assert torch.allclose(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)


def test_empty_keys_give_neutral_partial():
    q = torch.randn(1, 2, 3, 8)
    out, lse = attention_with_lse(q, torch.zeros(1, 2, 0, 8), torch.zeros(1, 2, 0, 8), 0.3)
    assert torch.all(out == 0) and torch.all(torch.isneginf(lse))


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_merge_of_key_partitions_equals_full_attention(parts):
    g = torch.Generator().manual_seed(parts)
    q = torch.randn(1, 4, 3, 8, generator=g)
    k = torch.randn(1, 2, 31, 8, generator=g)
    v = torch.randn(1, 2, 31, 8, generator=g)
    # uneven cuts, including an empty partition when parts > 1
    cuts = sorted(torch.randint(0, 32, (parts - 1,), generator=g).tolist()) + [31]
    if parts > 1:
        cuts[0] = 0
    outs, lses, start = [], [], 0
    for stop in cuts:
        o, lse = attention_with_lse(q, k[:, :, start:stop], v[:, :, start:stop], 0.35)
        outs.append(o)
        lses.append(lse)
        start = stop
    merged, merged_lse = merge_partials(outs, lses)
    ref, ref_lse = dense64(q, k, v, 0.35)
    assert torch.allclose(merged.double(), ref, atol=1e-6)
    assert torch.allclose(merged_lse.double(), ref_lse, atol=1e-5)


def test_merge_survives_huge_lse_gaps_and_all_empty_rows():
    o = torch.randn(2, 1, 1, 4)
    lse = torch.tensor([[[1e4]], [[-1e4]]]).reshape(2, 1, 1)
    merged, merged_lse = merge_partials(o, lse)
    assert torch.isfinite(merged).all() and torch.allclose(merged, o[0])
    assert merged_lse.item() == pytest.approx(1e4)
    empty = torch.full((3, 1, 2), float("-inf"))
    merged, merged_lse = merge_partials(torch.randn(3, 1, 2, 4), empty)
    assert torch.all(merged == 0) and torch.all(torch.isneginf(merged_lse))


def test_block_attention_is_anchor_full_plus_block_causal():
    g = torch.Generator().manual_seed(7)
    q = torch.randn(1, 4, 6, 8, generator=g)
    k = torch.randn(1, 2, 6, 8, generator=g)
    v = torch.randn(1, 2, 6, 8, generator=g)
    ak = torch.randn(1, 2, 4, 8, generator=g)
    av = torch.randn(1, 2, 4, 8, generator=g)
    out, _ = block_attention(q, k, v, ak, av, 0.5)
    mask = torch.cat([torch.ones(6, 4, dtype=torch.bool), bottom_right(6, 6)], dim=1)
    ref, _ = dense64(q, torch.cat([ak, k], 2), torch.cat([av, v], 2), 0.5, mask)
    assert torch.allclose(out.double(), ref, atol=1e-5)
