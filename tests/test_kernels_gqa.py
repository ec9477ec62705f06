"""CPU checks of the GQA / causal-alignment logic the CUDA path runs over cuDNN and Triton.

``gqa_attention_with_lse`` is device-agnostic: here its fused backends are stood in for by the
float32 reference restricted to what the real ones accept (equal heads; causal only with
Lq == Lk), and the result must equal grouped, bottom-right-causal attention in float64.
"""

from __future__ import annotations

import pytest
import torch

from kernels.cuda_attention import gqa_attention_with_lse
from kernels.merge import merge_partials
from kernels.reference import attention_with_lse_math


def _dense(q, k, v, scale, causal):
    assert q.shape[1] == k.shape[1], "dense backends need equal head counts"
    assert not causal or q.shape[2] == k.shape[2], "dense backends align causal top-left"
    return attention_with_lse_math(q, k, v, scale, causal)


def _grouped(q, k, v, scale, causal):
    """Stands in for cuDNN over grouped heads: any Hkv dividing Hq, causal only with Lq == Lk."""
    assert not causal or q.shape[2] == k.shape[2], "fused backends align causal top-left"
    return attention_with_lse_math(q, k, v, scale, causal)


def _few(q, k, v, scale):
    return attention_with_lse_math(q, k, v, scale, causal=False)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("use_grouped", [False, True])
@pytest.mark.parametrize("use_few", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("hq", "hkv", "lq", "lk"), [(4, 2, 5, 5), (6, 2, 3, 11), (4, 4, 1, 9), (8, 2, 7, 7)])
def test_matches_float64_reference(hq, hkv, lq, lk, causal, use_few, use_grouped):
    gen = torch.Generator().manual_seed(hq * 100 + lq * 10 + lk)
    q = torch.randn(2, hq, lq, 16, generator=gen)
    k = torch.randn(2, hkv, lk, 16, generator=gen)
    v = torch.randn(2, hkv, lk, 16, generator=gen)
    few = _few if use_few else None
    grouped = _grouped if use_grouped else None
    out, lse = gqa_attention_with_lse(q, k, v, 0.25, causal, _dense, few, merge_partials, grouped)
    ref_o, ref_lse = attention_with_lse_math(q.double(), k.double(), v.double(), 0.25, causal)
    assert out.shape == (2, hq, lq, 16) and lse.shape == (2, hq, lq)
    assert _rel(out, ref_o) < 1e-5
    assert _rel(lse, ref_lse) < 1e-5


def test_causal_with_more_queries_than_keys_leaves_empty_rows():
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8)
    out, lse = gqa_attention_with_lse(q, k, v, 0.3, True, _dense, None, merge_partials)
    assert torch.isinf(lse[..., :2]).all() and torch.isfinite(lse[..., 2:]).all()
    assert not torch.isnan(out).any()


def test_no_keys_is_an_empty_partial():
    q = torch.randn(1, 2, 3, 8)
    out, lse = gqa_attention_with_lse(q, q[:, :1, :0], q[:, :1, :0], 0.3, False, _dense, None)
    assert (out == 0).all() and torch.isinf(lse).all()


def test_grouped_backend_that_declines_falls_back_to_equal_heads():
    def declines(q, k, v, scale, causal):
        raise RuntimeError("no")

    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    for causal in (False, True):
        out, lse = gqa_attention_with_lse(q, k, v, 0.3, causal, _dense, None, merge_partials, declines)
        ref_o, ref_lse = attention_with_lse_math(q.double(), k.double(), v.double(), 0.3, causal)
        assert _rel(out, ref_o) < 1e-5 and _rel(lse, ref_lse) < 1e-5


@pytest.mark.parametrize(("lq", "lk"), [(5, 5), (5, 40), (300, 340)])
def test_few_row_causal_squares_go_to_the_backend_without_per_shape_setup(lq, lk):
    """Phase 2's query over itself and a conversation's tail: the causal square of a few rows goes
    to ``few_causal`` (flash on CUDA: no cuDNN graph built per new query length); with many rows
    it stays with the grouped backend (phase 1's blocks, whose shapes repeat)."""
    from kernels.cuda_attention import FEW_QUERY_ROWS

    used = []

    def recording(name, fn):
        def call(q, k, v, scale, causal):
            used.append((name, causal, q.shape[2], k.shape[1]))
            return fn(q, k, v, scale, causal)

        return call

    gen = torch.Generator().manual_seed(lq)
    q = torch.randn(1, 4, lq, 16, generator=gen)
    k, v = torch.randn(1, 2, lk, 16, generator=gen), torch.randn(1, 2, lk, 16, generator=gen)
    out, lse = gqa_attention_with_lse(
        q,
        k,
        v,
        0.25,
        True,
        _dense,
        _few,
        merge_partials,
        recording("grouped", _grouped),
        recording("few", _dense),
    )
    ref_o, ref_lse = attention_with_lse_math(q.double(), k.double(), v.double(), 0.25, True)
    assert _rel(out, ref_o) < 1e-5 and _rel(lse, ref_lse) < 1e-5
    expected = "few" if 2 * lq <= FEW_QUERY_ROWS else "grouped"
    heads = 4 if expected == "few" else 2  # equal heads for the few-row backend: keys repeated
    assert [call for call in used if call[1]] == [(expected, True, lq, heads)]  # the causal call


def test_decode_attention_on_cpu_equals_attention_over_both_parts():
    from kernels import decode_attention

    q = torch.randn(1, 4, 1, 8)
    ck, cv, tk, tv = (torch.randn(1, 2, n, 8) for n in (9, 9, 5, 5))
    n = torch.tensor([3])
    out, lse = decode_attention(q, ck, cv, tk, tv, n, 0.3)
    keys, values = torch.cat([ck, tk[:, :, :3]], 2), torch.cat([cv, tv[:, :, :3]], 2)
    ref_o, ref_lse = attention_with_lse_math(q.double(), keys.double(), values.double(), 0.3, False)
    assert _rel(out, ref_o) < 1e-5 and _rel(lse, ref_lse) < 1e-5
    out, lse = decode_attention(q, None, None, None, None, None, 0.3)
    assert (out == 0).all() and torch.isinf(lse).all()
