"""``kernels.gemv`` (the decode step's weight products) against cuBLAS and eager transformers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _err(out: torch.Tensor, exact: torch.Tensor) -> float:
    return float((out.double() - exact).norm() / exact.norm())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("ns", "k", "bias"),
    [
        ((4096, 1024, 1024), 4096, False),
        ((896, 128, 128), 896, True),
        ((1000,), 777, False),
        ((24, 40), 100, True),
    ],
)
def test_gemv3_is_as_close_to_float64_as_cublas(ns, k, bias, dtype):
    from kernels.gemv import eligible, gemv3

    torch.manual_seed(len(ns) * 1000 + k)
    x = torch.randn(1, 1, k, device="cuda", dtype=dtype)
    ws = [torch.randn(n, k, device="cuda", dtype=dtype) * k**-0.5 for n in ns]
    bs = [torch.randn(n, device="cuda", dtype=dtype) for n in ns] if bias else [None] * len(ns)
    assert eligible(x, *ws)
    outs = gemv3(x, ws, bs if bias else None)
    for out, w, b in zip(outs, ws, bs, strict=True):
        exact = F.linear(x.double(), w.double(), None if b is None else b.double())
        cublas = F.linear(x, w, b)
        assert out.shape == cublas.shape and out.dtype == dtype
        # both round a float32 sum to the model's dtype: the same error, up to the sum's order
        assert _err(out, exact) <= 1.5 * _err(cublas, exact) + 1e-4
        if k >= 4096:  # at the model's size nearly all agree; the rest one rounding step apart
            assert (out == cublas).float().mean() > 0.75


def test_gemv_silu_mul_matches_eager_mlp():
    from kernels.fused import silu_mul
    from kernels.gemv import gemv_silu_mul

    torch.manual_seed(1)
    x = torch.randn(1, 1, 4096, device="cuda", dtype=torch.bfloat16)
    gate, up = (torch.randn(14336, 4096, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(2))
    ref = silu_mul(F.linear(x, gate), F.linear(x, up))
    out = gemv_silu_mul(x, gate, up)
    exact = F.silu(F.linear(x.double(), gate.double())) * F.linear(x.double(), up.double())
    assert _err(out, exact) <= 1.5 * _err(ref, exact) + 1e-4
    assert (out == ref).float().mean() > 0.9


def test_not_eligible_beyond_one_row_or_other_dtypes_or_devices():
    from kernels.gemv import eligible

    w = torch.randn(64, 32, device="cuda", dtype=torch.bfloat16)
    assert eligible(torch.randn(1, 32, device="cuda", dtype=torch.bfloat16), w)
    assert not eligible(torch.randn(2, 32, device="cuda", dtype=torch.bfloat16), w)
    assert not eligible(torch.randn(1, 32, device="cuda", dtype=torch.float32), w)
    # Weights on another device than the row (CPU rows are eligible: the interpreter tests run
    # the kernels on CPU; engine.fused decides that only CUDA tensors get here)
    assert not eligible(torch.randn(1, 32, dtype=torch.bfloat16), w)
    assert not eligible(
        torch.randn(1, 32, device="cuda", dtype=torch.bfloat16), w.t().contiguous().t()[:, :32]
    )


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_decode_token_matches_eager_model(arch):
    """One decode token through a model whose projections go through ``kernels.gemv`` (Qwen2's
    Q/K/V carry biases) gives eager transformers' logits, and every fused product was used."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    import kernels.gemv as kg
    from engine.fused import fuse_pointwise

    torch.manual_seed(0)
    shape = dict(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
    )
    config = (
        LlamaConfig(**shape, vocab_size=1000) if arch == "llama" else Qwen2Config(**shape, vocab_size=1000)
    )
    cls = LlamaForCausalLM if arch == "llama" else Qwen2ForCausalLM
    model = cls(config).to("cuda", torch.bfloat16).eval()
    ids = torch.randint(0, 1000, (1, 1), device="cuda")
    with torch.no_grad():
        ref = model(ids).logits.float()
    counts = fuse_pointwise(model)
    assert counts["gemv"] == 2 * 4 + 2 + 1  # Q/K/V and O per layer, down per layer, the LM head
    assert fuse_pointwise(model)["gemv"] == 0
    calls = {"gemv3": 0, "silu": 0}
    originals = (kg.gemv3, kg.gemv_silu_mul)

    def gemv3(*args, **kwargs):
        calls["gemv3"] += 1
        return originals[0](*args, **kwargs)

    def silu(*args, **kwargs):
        calls["silu"] += 1
        return originals[1](*args, **kwargs)

    kg.gemv3, kg.gemv_silu_mul = gemv3, silu
    try:
        with torch.no_grad():
            out = model(ids).logits.float()
            several = model(torch.randint(0, 1000, (1, 5), device="cuda")).logits  # not eligible
    finally:
        kg.gemv3, kg.gemv_silu_mul = originals
    # per layer: Q/K/V, O, down; the LM head; plus one SiLU-mul per layer; none for 5 tokens
    assert calls == {"gemv3": 2 * 3 + 1, "silu": 2}, calls
    assert several.shape[1] == 5
    assert float((out - ref).norm() / ref.norm()) < 1e-2
    assert out.argmax(-1).equal(ref.argmax(-1))


def test_a_chain_of_dependent_launches_under_pdl_reads_each_result_after_it_is_written():
    """kernels.pdl: each launch may start while the one before runs and must wait before it reads
    that one's output. A CUDA graph of 24 products each fed by the one before (norms between,
    weights loaded before the wait) must give what the same chain gives launched one after another
    without PDL; a read before the wait would see the buffer's earlier contents."""
    from kernels import pdl
    from kernels.fused import rms_norm
    from kernels.gemv import gemv, gemv3, gemv_silu_mul

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("PDL needs compute capability 9.0")
    g = torch.Generator(device="cuda").manual_seed(3)
    h = 1024
    ws = [torch.randn(h, h, device="cuda", generator=g, dtype=torch.bfloat16) * h**-0.5 for _ in range(4)]
    norm = torch.rand(h, device="cuda", generator=g, dtype=torch.bfloat16) + 0.5
    x0 = torch.randn(1, h, device="cuda", generator=g, dtype=torch.bfloat16)

    def chain(x):
        for i in range(8):
            x = rms_norm(gemv(x, ws[i % 4], residual=x), norm, 1e-6)
            x = gemv3(x, [ws[(i + 1) % 4]])[0]
            x = gemv_silu_mul(x, ws[(i + 2) % 4], ws[(i + 3) % 4]) + x
        return x

    saved = dict(pdl.PDL_CONFIG)
    try:
        pdl.PDL_CONFIG["on"] = False
        plain = chain(x0.clone())
        pdl.PDL_CONFIG["on"] = True
        assert pdl.pdl(x0)
        static = x0.clone()
        chain(static)  # compiles outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = chain(static)
        for _ in range(3):
            static.copy_(x0)
            graph.replay()
            torch.cuda.synchronize()
            # same kernels and shapes but the products' sums in another order (weights in one tile
            # before the wait): equal to bf16 rounding, far from any stale read
            assert _err(out, plain.double()) < 0.1, _err(out, plain.double())
        static.copy_(torch.randn_like(x0))
        graph.replay()
        torch.cuda.synchronize()
        assert _err(out, plain.double()) > 0.5  # the replay does follow its input
    finally:
        pdl.PDL_CONFIG.update(saved)


@pytest.mark.parametrize("pdl_on", [False, True])
def test_a_norm_in_the_products_launch_equals_the_norm_kernel_then_the_product(pdl_on):
    """``norm=``: the decode step's RMSNorms inside the Q/K/V and gate/up launches, at the 8B
    shape, on both the tiled path (PDL off) and the whole-rows path (PDL on, Hopper)."""
    from kernels import pdl
    from kernels.fused import rms_norm, silu_mul
    from kernels.gemv import gemv3, gemv_silu_mul

    if pdl_on and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("PDL needs compute capability 9.0")
    torch.manual_seed(5)
    x = torch.randn(1, 1, 4096, device="cuda", dtype=torch.bfloat16) * 3
    nw = torch.rand(4096, device="cuda", dtype=torch.bfloat16) + 0.5
    ws = [torch.randn(n, 4096, device="cuda", dtype=torch.bfloat16) * 0.02 for n in (4096, 1024, 1024)]
    gate, up = (torch.randn(14336, 4096, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(2))
    saved = dict(pdl.PDL_CONFIG)
    try:
        pdl.PDL_CONFIG["on"] = pdl_on
        xn = rms_norm(x, nw, 1e-5)
        for out, ref in zip(gemv3(x, ws, norm=(nw, 1e-5)), gemv3(xn, ws), strict=True):
            assert (out == ref).float().mean() > 0.95  # one rounding step apart where a sum differs
            assert _err(out, ref.double()) < 1e-2
        out = gemv_silu_mul(x, gate, up, norm=(nw, 1e-5))
        ref = silu_mul(F.linear(xn, gate), F.linear(xn, up))
        assert (out == ref).float().mean() > 0.9
        assert _err(out, ref.double()) < 1e-2
    finally:
        pdl.PDL_CONFIG.update(saved)


def test_argmax_over_a_vocabulary_is_torchs():
    from kernels.argmax import argmax

    g = torch.Generator(device="cuda").manual_seed(7)
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(128256, device="cuda", generator=g).to(dtype)
        assert argmax(x) == int(torch.argmax(x))
        x[[5, 70_000, 128_255]] = 30.0  # ties across slices: the first index
        assert argmax(x) == int(torch.argmax(x)) == 5
        x[99_000] = float("nan")
        assert argmax(x) == int(torch.argmax(x)) == 99_000


@pytest.mark.parametrize("pdl_on", [False, True])
def test_rope_and_the_cache_write_in_the_qkv_launch_equal_the_kernels_they_replace(pdl_on):
    """``rope=``/``dest=`` at the 8B shape: Q/K/V products, then ``rope_pair`` and ``write_slot``
    into a tail at a device slot, in one launch (the tiled path, and the whole-rows path of PDL)."""
    from kernels import pdl
    from kernels.fused import rope_pair, write_slot
    from kernels.gemv import gemv3

    if pdl_on and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("PDL needs compute capability 9.0")
    torch.manual_seed(6)
    bf = dict(device="cuda", dtype=torch.bfloat16)
    x = torch.randn(1, 1, 4096, **bf)
    ws = [torch.randn(n, 4096, **bf) * 0.02 for n in (4096, 1024, 1024)]
    angle = torch.randn(64, device="cuda") * 100
    cos, sin = (torch.cat([f(angle)] * 2).to(torch.bfloat16) for f in (torch.cos, torch.sin))
    slot = torch.tensor([37], device="cuda")
    saved = dict(pdl.PDL_CONFIG)
    try:
        pdl.PDL_CONFIG["on"] = pdl_on
        tails = [torch.zeros(1, 8, 100, 128, **bf) for _ in range(4)]
        q, k, v = gemv3(x, ws, rope=(cos, sin), dest=(tails[0], tails[1], slot))
        rq, rk, rv = gemv3(x, ws)
        rq, rk = rope_pair(
            rq.view(1, 1, 32, 128).transpose(1, 2),
            rk.view(1, 1, 8, 128).transpose(1, 2),
            cos[None, None],
            sin[None, None],
        )
        assert write_slot(tails[2], tails[3], slot, rk, rv.view(1, 1, 8, 128).transpose(1, 2))
    finally:
        pdl.PDL_CONFIG.update(saved)
    # against RoPE in float64 of the float64 products: as close as the separate kernels are (the
    # products' float32 sums may round differently by one step, which the rotation's cancellations
    # can make several steps of a small result)
    exact = [F.linear(x.double(), w.double()) for w in ws]
    c, s_ = cos.double(), sin.double()
    for out, ref, e, heads in ((q, rq, exact[0], 32), (k, rk, exact[1], 8)):
        e = e.view(1, 1, heads, 128).transpose(1, 2)
        e = e * c + torch.cat([-e[..., 64:], e[..., :64]], -1) * s_
        out = out.view(1, 1, heads, 128).transpose(1, 2)
        assert _err(out, e) <= 1.5 * _err(ref, e) + 1e-3  # (bit-equal: 76%, as rope_pair to eager)
    assert _err(v, exact[2]) <= 1.5 * _err(rv, exact[2]) + 1e-4 and (v == rv).float().mean() > 0.9
    # the slot holds exactly what the launch returned; every other slot is untouched
    assert torch.equal(tails[0][:, :, 37], k.view(1, 8, 128)) and torch.equal(
        tails[1][:, :, 37], v.view(1, 8, 128)
    )
    others = torch.ones(100, dtype=torch.bool, device="cuda")
    others[37] = False
    assert not tails[0][:, :, others].any() and not tails[1][:, :, others].any()
