"""The CUDA kernels against a float64 reference on fresh random inputs (skipped without CUDA).

Tolerances follow the device notes: bf16 operands land between 1e-3 and 1e-2 relative error;
NaN never passes (a NaN makes the norm NaN, and NaN < tol is False).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

BF16_TOL = 1e-2
LSE_TOL = 1e-3


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def _ref(q, k, v, scale, causal):
    from kernels.reference import attention_with_lse_math

    return attention_with_lse_math(q.double(), k.double(), v.double(), scale, causal)


def _rand(*shape, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)


def _hf_layout(b, h, lq, d):
    """q as transformers hands it over: [B, L, H, D] storage viewed as [B, H, L, D]."""
    return _rand(b, lq, h, d).transpose(1, 2)


@pytest.mark.parametrize("backend", ["cudnn", "flash"])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_backend_lse_layout(backend, causal):
    from kernels import cuda_attention as ca

    q, k, v = _rand(1, 4, 300, 128), _rand(1, 4, 300, 128), _rand(1, 4, 300, 128)
    out, lse = ca._BACKENDS[backend](q, k, v, 0.088, causal)
    ro, rl = _ref(q, k, v, 0.088, causal)
    assert _rel(out, ro) < BF16_TOL
    assert _rel(lse.reshape(rl.shape), rl) < LSE_TOL


@pytest.mark.parametrize(
    ("hq", "hkv", "lq", "lk", "causal"),
    [
        (32, 8, 1024, 1024, True),  # phase-1 block, causal square
        (32, 8, 1024, 2048, False),  # block vs anchor, folded heads through cuDNN
        (32, 8, 1, 20000, False),  # decode vs long context: split-KV Triton
        (32, 8, 1, 20000, True),  # decode vs tail: causal with Lq = 1 is unmasked
        (32, 8, 37, 9000, False),  # phase-2 query vs context: split-KV Triton
        (32, 8, 37, 300, True),  # phase-2 query vs tail: prefix + causal square merged
        (12, 4, 600, 700, False),
    ],
)
def test_attention_with_lse_matches_float64(hq, hkv, lq, lk, causal):
    from kernels import attention_with_lse

    q = _hf_layout(1, hq, lq, 128)
    k, v = _hf_layout(1, hkv, lk, 128), _hf_layout(1, hkv, lk, 128)
    out, lse = attention_with_lse(q, k, v, 128**-0.5, causal)
    ro, rl = _ref(q, k, v, 128**-0.5, causal)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert out.shape == ro.shape and lse.shape == rl.shape
    assert _rel(out, ro) < BF16_TOL
    assert _rel(lse, rl) < LSE_TOL


def test_block_attention_matches_float64():
    from kernels import block_attention
    from kernels.merge import merge_partials as merge_ref

    q, k, v = _hf_layout(1, 32, 777, 128), _hf_layout(1, 8, 777, 128), _hf_layout(1, 8, 777, 128)
    ak, av = _hf_layout(1, 8, 512, 128), _hf_layout(1, 8, 512, 128)
    out, lse = block_attention(q, k, v, ak, av, 0.088)
    own = _ref(q, k, v, 0.088, True)
    anchor = _ref(q, ak, av, 0.088, False)
    ro, rl = merge_ref([own[0], anchor[0]], [own[1], anchor[1]])
    assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < LSE_TOL


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_merge_stacked_matches_reference_with_empty_partials(parts):
    from kernels.merge import merge_partials as merge_ref
    from kernels.triton_attention import merge_stacked

    o = torch.randn(parts, 2, 5, 33, 128, device="cuda")
    lse = torch.randn(parts, 2, 5, 33, device="cuda") * 30  # large gaps: max-shift must hold
    lse[0, 0, 0] = float("-inf")  # one empty partial
    lse[:, 1, 1, :4] = float("-inf")  # rows where every partial is empty
    out, out_lse = merge_stacked(o, lse, torch.bfloat16)
    ro, rl = merge_ref(o.double(), lse.double())
    assert not torch.isnan(out).any() and not torch.isnan(out_lse).any()
    assert torch.isinf(out_lse[1, 1, :4]).all() and (out[1, 1, :4] == 0).all()
    finite = torch.isfinite(rl)
    assert _rel(out[finite], ro[finite]) < BF16_TOL
    assert _rel(out_lse[finite], rl[finite]) < 1e-6


def test_merge_pair_reads_two_allocations():
    from kernels.merge import merge_partials as merge_ref
    from kernels.triton_attention import merge_pair

    oa, ob = _hf_layout(1, 32, 500, 128), _hf_layout(1, 32, 500, 128)
    la, lb = torch.randn(1, 32, 500, device="cuda"), torch.randn(1, 32, 500, device="cuda") + 3
    out, lse = merge_pair(oa, la, ob, lb, torch.bfloat16)
    ro, rl = merge_ref([oa.double(), ob.double()], [la.double(), lb.double()])
    assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < 1e-6


def test_split_kv_with_device_length_replays_in_a_graph():
    from kernels.triton_attention import split_kv_attention

    q = _hf_layout(1, 32, 1, 128)
    k, v = _rand(1, 8, 4096, 128), _rand(1, 8, 4096, 128)
    length = torch.tensor([1000], device="cuda", dtype=torch.int32)
    split_kv_attention(q, k, v, 0.088, kv_len=length)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = split_kv_attention(q, k, v, 0.088, kv_len=length)
    for n in (1000, 1, 2500, 4096):
        length.fill_(n)
        graph.replay()
        ro, rl = _ref(q, k[:, :, :n], v[:, :, :n], 0.088, False)
        assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < LSE_TOL, n


def test_merge_pair_mixed_layouts_keeps_the_first_layout():
    from kernels.merge import merge_partials as merge_ref
    from kernels.triton_attention import merge_pair

    oa, ob = _hf_layout(1, 32, 300, 128), _rand(1, 32, 300, 128)
    la, lb = torch.randn(1, 32, 300, device="cuda"), torch.randn(1, 32, 300, device="cuda") - 2
    la[0, 0, :3] = float("-inf")
    out, lse = merge_pair(oa, la, ob, lb, torch.bfloat16)
    ro, rl = merge_ref([oa.double(), ob.double()], [la.double(), lb.double()])
    assert out.stride() == oa.stride()  # the caller's transpose back to [B, L, H, D] is free
    assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < 1e-6


@pytest.mark.parametrize("mode", ["native", "fold"])
def test_block_attention_gqa_modes_match_float64(mode):
    from kernels import block_attention
    from kernels import cuda_attention as ca
    from kernels.merge import merge_partials as merge_ref

    saved = dict(ca.GQA_STRATEGY)
    ca.GQA_STRATEGY.update(unmasked=mode, causal="native" if mode == "native" else "repeat")
    try:
        q, k, v = _hf_layout(1, 32, 1000, 128), _hf_layout(1, 8, 1000, 128), _hf_layout(1, 8, 1000, 128)
        ctx = _rand(1, 8, 3000, 128)  # the anchor as a slice of a longer context buffer
        ak, av = ctx[:, :, :700], ctx.flip(2)[:, :, :700].contiguous()
        out, lse = block_attention(q, k, v, ak, av, 0.088)
    finally:
        ca.GQA_STRATEGY.update(saved)
    own = _ref(q, k, v, 0.088, True)
    anchor = _ref(q, ak, av, 0.088, False)
    ro, rl = merge_ref([own[0], anchor[0]], [own[1], anchor[1]])
    assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < LSE_TOL


@pytest.mark.parametrize("parts", ["both", "context", "tail"])
def test_decode_attention_fuses_context_and_tail(parts):
    from kernels import decode_attention

    q = _hf_layout(1, 32, 1, 128)
    ck, cv = _rand(1, 8, 20000, 128), _rand(1, 8, 20000, 128)
    tk, tv = _rand(1, 8, 64, 128), _rand(1, 8, 64, 128)
    n = torch.tensor([17], device="cuda", dtype=torch.int32)
    use_ctx, use_tail = parts in ("both", "context"), parts in ("both", "tail")
    out, lse = decode_attention(
        q, ck if use_ctx else None, cv if use_ctx else None,
        tk if use_tail else None, tv if use_tail else None, n, 0.088,
    )  # fmt: skip
    keys = [t for t, use in ((ck, use_ctx), (tk[:, :, :17], use_tail)) if use]
    values = [t for t, use in ((cv, use_ctx), (tv[:, :, :17], use_tail)) if use]
    ro, rl = _ref(q, torch.cat(keys, 2), torch.cat(values, 2), 0.088, False)
    assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < LSE_TOL


def test_decode_over_a_tail_that_continues_the_context_is_one_launch_per_part():
    """engine.cache's joined layout (the tail right after the context in one buffer): the decode
    attention reads both through one strided view up to the context plus the device tail length,
    and equals attention over the same keys in separate buffers (two launches)."""
    import kernels.triton_attention as tri

    buf_k, buf_v = _rand(1, 8, 5000, 128, seed=3), _rand(1, 8, 5000, 128)
    ctx = 4200
    parts = (buf_k[:, :, :ctx], buf_v[:, :, :ctx], buf_k[:, :, ctx:], buf_v[:, :, ctx:])
    assert tri._joined(*parts)
    assert not tri._joined(*(p.clone() for p in parts))
    q = _hf_layout(1, 32, 1, 128)
    tail_len = torch.tensor([1], device="cuda", dtype=torch.int32)
    tri.decode_attention(q, *parts[:2], *parts[2:], tail_len, 0.088)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = tri.decode_attention(q, *parts[:2], *parts[2:], tail_len, 0.088)
    for n in (1, 37, 800):
        tail_len.fill_(n)
        graph.replay()
        apart = tri.decode_attention(q, *(p.clone() for p in parts), tail_len, 0.088)
        ro, rl = _ref(q, buf_k[:, :, : ctx + n], buf_v[:, :, : ctx + n], 0.088, False)
        assert _rel(out, ro) < BF16_TOL and _rel(lse, rl) < LSE_TOL, n
        assert _rel(out, apart[0]) < BF16_TOL, n
