"""The Triton variants kernel (windows, soft-capping, positions) against a float64 reference, and
an end-to-end Gemma 2 / gpt-oss run on CUDA through it (skipped without CUDA).

Tolerances as in tests/test_kernels_gpu.py: bf16 operands land between 1e-3 and 1e-2 relative
error; NaN never passes; rows that see no key must come back with LSE = -inf and O = 0.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

BF16_TOL = 1e-2
LSE_TOL = 1e-3


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize(
    ("hq", "hkv", "d", "lq", "lk", "q_start", "k_start", "window", "softcap"),
    [
        (8, 4, 256, 1024, 1024, 0, 0, None, 50.0),  # Gemma 2 global layer, phase-1 block, soft-capped
        (8, 4, 256, 1024, 1024, 2048, 2048, 4096, 50.0),  # Gemma 2 window layer, block behind an anchor
        (8, 4, 256, 1024, 2048, 2048, 0, 512, 50.0),  # the block's rows against the anchor, window cuts it
        (64, 8, 64, 1024, 1024, 0, 0, 128, None),  # gpt-oss window layer, causal square
        (64, 8, 64, 1, 20000, 20000, 0, None, 30.0),  # decode over a long span, soft-capped: split keys
        (64, 8, 64, 1, 20000, 20000, 0, 128, None),  # decode in a window layer: only 128 keys
        (32, 8, 128, 37, 9000, 30000, 24000, 4096, None),  # phase 2 query vs a span the window cuts
        (32, 8, 128, 300, 300, 0, 0, 64, 20.0),  # window + soft-cap + causal, odd length
        (8, 8, 96, 200, 500, 700, 0, 600, None),  # head dim that is no power of two
    ],
)
def test_positioned_kernel_equals_the_float64_reference(
    hq, hkv, d, lq, lk, q_start, k_start, window, softcap
):  # noqa: E501
    from kernels.triton_variants import positioned_attention
    from kernels.variants import masked_attention_with_lse_math

    torch.manual_seed(lq + lk + d)
    q = torch.randn(1, hq, lq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, hkv, lk, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, hkv, lk, d, device="cuda", dtype=torch.bfloat16)
    scale = d**-0.5
    out, lse = positioned_attention(q, k, v, scale, q_start, k_start, window, softcap)
    qd, kd, vd = q.double(), k.double(), v.double()
    ro, rl = masked_attention_with_lse_math(qd, kd, vd, scale, q_start, k_start, window, softcap)
    seen = torch.isfinite(rl)
    assert torch.equal(seen, torch.isfinite(lse)), "rows with no visible key must say so (LSE = -inf)"
    assert seen.any()
    assert out.dtype == q.dtype and not out.isnan().any()
    assert _rel(out[seen], ro[seen]) < BF16_TOL
    assert _rel(lse[seen], rl[seen]) < LSE_TOL
    assert float(out[~seen].abs().sum() if (~seen).any() else 0.0) == 0.0


def test_the_variants_entry_point_takes_the_kernel_on_cuda(monkeypatch):
    """``positioned_attention_with_lse`` must route masked/soft-capped CUDA calls to the kernel,
    not to the float32 math version (which builds the whole score matrix)."""
    from kernels import triton_variants, variants

    calls = []
    real = triton_variants.positioned_attention
    monkeypatch.setattr(triton_variants, "positioned_attention", lambda *a: calls.append(a) or real(*a))
    q = torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 2, 64, 64, device="cuda", dtype=torch.bfloat16)
    out, _ = variants.positioned_attention_with_lse(q, k, k, 0.125, 0, 0, window=16, softcap=None)
    assert calls and out.shape == q.shape


@pytest.mark.parametrize("family", ["gemma2", "gpt-oss", "mistral-window"])
def test_soft_capped_and_windowed_models_on_cuda_follow_transformers(family):
    """Tiny Gemma 2 (soft-capping, windows), gpt-oss (windows, sinks) and Mistral (window) in fp16
    on CUDA, where the kernel does the masked and soft-capped attention: ``global`` and ``star``
    with two blocks (anchor = block, exactly dense) give transformers' own eager greedy tokens."""
    import copy

    from engine import Engine, Request, Token
    from tests.helpers import IdTokenizer, settings_of
    from tests.test_model_zoo import CONTEXT, QUERY, STEPS, tiny_model

    model = tiny_model(family).to("cuda", torch.float16)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    seq = CONTEXT + QUERY
    with torch.no_grad():
        for _ in range(STEPS):
            seq.append(int(eager(torch.tensor([seq], device="cuda")).logits[0, -1].argmax()))
    expected = seq[len(CONTEXT) + len(QUERY) :]
    for mode, kwargs in [("global", {}), ("star", dict(block_size=40, anchor_size=40))]:
        request = Request(CONTEXT, [QUERY], settings_of(mode, STEPS, **kwargs))
        events = Engine(model, IdTokenizer()).run(request)
        tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
        assert tokens == expected, mode
