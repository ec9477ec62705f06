"""The Triton kernels on CPU tensors under Triton's interpreter, each against a float64 or eager
reference (run through tests/interpreter_checks.py). float16 throughout: the interpreter computes
with numpy, which has no bfloat16. Shapes are small but cut the way a GPU's are (the launch configs
are the real ones; only the SM count, which the interpreter lacks, is made up)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import triton

from kernels import fused, gemv
from kernels import triton_attention as tri
from kernels.quant import dequantize, empty_keys_major, quantize_fp8

DT = torch.float16
ULP = 2.0**-10  # float16's relative spacing


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest error in units of float16's spacing at the reference's magnitude (floor 1)."""
    ref = ref.double()
    return ((out.double() - ref).abs() / (ref.abs().clamp_min(1.0) * ULP)).max().item()


LOOPED = {"block_n": 8, "block_k": 512, "num_warps": 4, "num_stages": 3, "unroll": 0}


def check_gemv() -> dict:
    """``down`` pinned to a looped, pipelined shape (the committed one may be cuBLAS)."""
    saved = gemv.GEMV_CONFIG["down"]
    gemv.GEMV_CONFIG["down"] = LOOPED
    try:
        return _check_gemv()
    finally:
        gemv.GEMV_CONFIG["down"] = saved


def _check_gemv() -> dict:
    results = {}
    torch.manual_seed(1)
    # (kind, K, Ns): unrolled (qkv/linear: block_k 2048) over one and two K tiles, looped (down:
    # block_k 512, block_n 8) even and uneven; one, two and three weights.
    cases = [
        ("qkv", 4096, (8, 4, 4)),
        ("qkv", 600, (6, 2, 4)),
        ("qkv", 2500, (5, 3)),
        ("linear", 512, (7,)),
        ("down", 1024, (16,)),
        ("down", 1000, (13,)),
        ("down", 1024, (16, 8, 24)),
    ]
    for kind, k, ns in cases:
        x = torch.randn(1, 1, k, dtype=DT)
        ws = [(torch.randn(n, k) / k**0.5).to(DT) for n in ns]
        bs = [torch.randn(n).to(DT) for n in ns]
        for bias in (False, True):
            outs = gemv.gemv3(x, ws, bs if bias else None, kind=kind)
            errs = []
            for out, w, b in zip(outs, ws, bs, strict=True):
                ref = F.linear(x.double(), w.double(), b.double() if bias else None)
                assert out.shape == ref.shape and out.dtype == DT
                errs.append(rel_err(out, ref))
            name = f"gemv3/{kind}/K{k}/N{'-'.join(map(str, ns))}/{'bias' if bias else 'nobias'}"
            results[name] = {"err_ulp": max(errs)}
    # A 1-D row and a weight that is a row slice of a bigger one (contiguous, offset storage).
    big = (torch.randn(40, 512) / 512**0.5).to(DT)
    x = torch.randn(512, dtype=DT)
    out = gemv.gemv(x, big[8:20])
    results["gemv/offset_weight"] = {"err_ulp": rel_err(out, F.linear(x.double(), big[8:20].double()))}
    # The residual add (a decoder layer's): the product rounded to the dtype, then the sum rounded,
    # as eager's two steps; in the kernel (looped and unrolled shapes) and on the cuBLAS path.
    for kind, k, n in (("down", 1000, 13), ("linear", 512, 7)):
        x = torch.randn(1, 1, k, dtype=DT)
        w, b = (torch.randn(n, k) / k**0.5).to(DT), torch.randn(n).to(DT)
        res = (torch.randn(1, 1, n) * 4).to(DT)
        eager = res + F.linear(x.double(), w.double(), b.double()).to(DT)
        saved = dict(gemv.GEMV_CONFIG[kind])
        for path in ("kernel", "cublas"):
            if path == "cublas":
                gemv.GEMV_CONFIG[kind] = {"cublas": 1}
            try:
                out = gemv.gemv(x, w, b, kind=kind, residual=res)
            finally:
                gemv.GEMV_CONFIG[kind] = saved
            results[f"gemv/residual/{kind}/{path}"] = {"err_ulp": rel_err(out, eager.double())}
    return results


def check_gemv_whole_rows() -> dict:
    """The path a PDL launch takes (``kernels.gemv._prefetch``: each program's rows loaded whole,
    in one tile, before the wait), forced here, where PDL is off: the same sums as the tiled path
    to the dtype's rounding, K a power of two or padded to one."""
    results = {}
    torch.manual_seed(4)
    saved = gemv._prefetch
    gemv._prefetch = lambda on, cfg, k, block_n, weights=1: triton.next_power_of_2(k)
    try:
        for k, ns in ((4096, (8, 4, 4)), (600, (6, 2, 4))):
            x = torch.randn(1, 1, k, dtype=DT)
            ws = [(torch.randn(n, k) / k**0.5).to(DT) for n in ns]
            res = (torch.randn(1, 1, ns[0]) * 4).to(DT)
            outs = gemv.gemv3(x, ws, kind="qkv")
            errs = [rel_err(out, F.linear(x.double(), w.double())) for out, w in zip(outs, ws, strict=True)]
            results[f"gemv_whole_rows/qkv/K{k}"] = {"err_ulp": max(errs)}
            out = gemv.gemv(x, ws[0], residual=res)
            eager = res + F.linear(x.double(), ws[0].double()).to(DT)
            results[f"gemv_whole_rows/residual/K{k}"] = {"err_ulp": rel_err(out, eager.double())}
            g, u = (torch.randn(ns[0], k) / k**0.5 * 3).to(DT), (torch.randn(ns[0], k) / k**0.5).to(DT)
            gate = F.linear(x.double(), g.double()).to(DT)
            up = F.linear(x.double(), u.double()).to(DT)
            eager = (F.silu(gate.float()).to(DT).float() * up.float()).to(DT)
            out = gemv.gemv_silu_mul(x, g, u)
            results[f"gemv_whole_rows/silu_mul/K{k}"] = {"err_ulp": rel_err(out, eager)}
    finally:
        gemv._prefetch = saved
    return results


def check_eligible() -> dict:
    """Which rows and weights ``kernels.gemv`` takes: anything else goes to ``F.linear``."""
    w = torch.randn(8, 64, dtype=DT)
    row = torch.randn(1, 1, 64, dtype=DT)
    cases = {
        "one_row": (row, w),
        "one_row_1d": (row.view(64), w),
        "two_rows": (torch.randn(1, 2, 64, dtype=DT), w),
        "strided_row": (torch.randn(1, 1, 128, dtype=DT)[..., ::2], w),
        "row_of_a_block": (torch.randn(1, 5, 64, dtype=DT)[:, -1:], w),  # the LM head's last row
        "float32_row": (row.float(), w.float()),
        "weight_transposed": (row, torch.randn(64, 8, dtype=DT).t()),
        "weight_other_dtype": (row, w.bfloat16()),
        "weight_other_k": (row, torch.randn(8, 32, dtype=DT)),
    }
    return {f"eligible/{name}": {"taken": gemv.eligible(x, wt)} for name, (x, wt) in cases.items()}


def check_gemv_silu_mul() -> dict:
    results = {}
    torch.manual_seed(2)
    for k, n in ((2048, 40), (600, 13)):
        x = torch.randn(1, 1, k, dtype=DT)
        g = (torch.randn(n, k) / k**0.5 * 3).to(DT)
        u = (torch.randn(n, k) / k**0.5).to(DT)
        out = gemv.gemv_silu_mul(x, g, u)
        # Eager ``act_fn(gate_proj(x)) * up_proj(x)``: each Linear's output, SiLU and the product
        # rounded to float16 in turn (the Linears exact, as the kernel's float32 sums nearly are).
        gate = F.linear(x.double(), g.double()).to(DT)
        up = F.linear(x.double(), u.double()).to(DT)
        eager = (F.silu(gate.float()).to(DT).float() * up.float()).to(DT)
        once = (F.silu(F.linear(x.double(), g.double())) * F.linear(x.double(), u.double())).to(DT)
        results[f"gemv_silu_mul/K{k}/N{n}"] = {
            "err_ulp": rel_err(out, eager),
            "equal_eager": (out == eager).double().mean().item(),
            "equal_rounded_once": (out == once).double().mean().item(),
        }
    return results


def _rms_norm_eager(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm's forward: float32 statistics, the row rounded to its dtype, then the product."""
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return w * normed


def check_gemv_norm() -> dict:
    """An RMSNorm taken into the weight product's launch (``norm=``): the same as the model's norm
    followed by the product, on the unrolled, looped and whole-rows paths, K a power of two or not."""
    results = {}
    torch.manual_seed(6)
    saved_down, saved_prefetch = gemv.GEMV_CONFIG["down"], gemv._prefetch
    gemv.GEMV_CONFIG["down"] = LOOPED
    try:
        for path in ("tiled", "whole_rows"):
            if path == "whole_rows":
                gemv._prefetch = lambda on, cfg, k, block_n, weights=1: triton.next_power_of_2(k)
            for kind, k, ns in (("qkv", 4096, (8, 4, 4)), ("qkv", 600, (6, 2, 4)), ("down", 1000, (13,))):
                x = (torch.randn(1, 1, k) * 3).to(DT)
                nw = (1 + 0.3 * torch.randn(k)).to(DT)
                eps = 1e-5
                xn = _rms_norm_eager(x, nw, eps).double()
                ws = [(torch.randn(n, k) / k**0.5).to(DT) for n in ns]
                outs = gemv.gemv3(x, ws, kind=kind, norm=(nw, eps))
                errs = [rel_err(out, F.linear(xn, w.double())) for out, w in zip(outs, ws, strict=True)]
                results[f"gemv_norm/{path}/{kind}/K{k}"] = {"err_ulp": max(errs)}
            k, n = 600, 13
            x, nw = (torch.randn(1, 1, k) * 3).to(DT), (1 + 0.3 * torch.randn(k)).to(DT)
            g, u = (torch.randn(n, k) / k**0.5 * 3).to(DT), (torch.randn(n, k) / k**0.5).to(DT)
            xn = _rms_norm_eager(x, nw, 1e-6).double()
            gate, up = F.linear(xn, g.double()).to(DT), F.linear(xn, u.double()).to(DT)
            eager = (F.silu(gate.float()).to(DT).float() * up.float()).to(DT)
            out = gemv.gemv_silu_mul(x, g, u, norm=(nw, 1e-6))
            results[f"gemv_norm/{path}/silu_mul/K{k}"] = {"err_ulp": rel_err(out, eager)}
    finally:
        gemv.GEMV_CONFIG["down"], gemv._prefetch = saved_down, saved_prefetch
    return results


def check_gemv_rope() -> dict:
    """Q and K rotated in the Q/K/V launch (``rope=``), K and V written at a cache slot (``dest=``):
    the same as the projections, transformers' ``apply_rotary_pos_emb`` and a slot write, on the
    tiled and whole-rows paths, heads of 16 and 64, with a bias (Qwen2's) and without."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    results = {}
    torch.manual_seed(7)
    saved = gemv._prefetch
    try:
        for path in ("tiled", "whole_rows"):
            if path == "whole_rows":
                gemv._prefetch = lambda on, cfg, k, block_n, weights=1: triton.next_power_of_2(k)
            for d, hq, hkv, k, bias in ((16, 4, 2, 96, False), (64, 4, 2, 256, True)):
                x = torch.randn(1, 1, k, dtype=DT)
                ws = [(torch.randn(h * d, k) / k**0.5).to(DT) for h in (hq, hkv, hkv)]
                bs = [torch.randn(h * d).to(DT) for h in (hq, hkv, hkv)] if bias else None
                angle = torch.randn(d // 2) * 3
                cos = torch.cat([angle.cos()] * 2).to(DT)
                sin = torch.cat([angle.sin()] * 2).to(DT)
                cache_k, cache_v = torch.zeros(1, hkv, 7, d, dtype=DT), torch.zeros(1, hkv, 7, d, dtype=DT)
                slot = torch.tensor([3])
                q, kk, v = gemv.gemv3(x, ws, bs, rope=(cos, sin), dest=(cache_k, cache_v, slot))
                plain = [
                    F.linear(x.float(), w.float(), None if b is None else b.float()).to(DT)
                    for w, b in zip(ws, bs or [None] * 3, strict=True)
                ]
                heads = [p.view(1, 1, -1, d).transpose(1, 2) for p in plain]
                ref_q, ref_k = apply_rotary_pos_emb(heads[0], heads[1], cos[None, None], sin[None, None])
                others = torch.ones(7, dtype=torch.bool)
                others[3] = False
                results[f"gemv_rope/{path}/D{d}"] = {
                    "q_err_ulp": rel_err(q.view(1, 1, hq, d).transpose(1, 2), ref_q),
                    "k_err_ulp": rel_err(kk.view(1, 1, hkv, d).transpose(1, 2), ref_k),
                    "v_err_ulp": rel_err(v, plain[2]),
                    "slot_k_err_ulp": rel_err(cache_k[:, :, 3], ref_k[:, :, 0]),
                    "slot_v_err_ulp": rel_err(cache_v[:, :, 3], heads[2][:, :, 0]),
                    "other_slots_untouched": bool(
                        (cache_k[:, :, others] == 0).all() and (cache_v[:, :, others] == 0).all()
                    ),
                }
    finally:
        gemv._prefetch = saved
    return results


def check_argmax() -> dict:
    """``kernels.argmax`` against ``torch.argmax``: several slices and a partial one, ties (the
    first index wins), a row of -inf, NaNs (the first NaN wins), float16 and float32."""
    from kernels.argmax import argmax_triton

    gen = torch.Generator().manual_seed(9)
    rows = {}
    x = torch.randn(10_001, generator=gen)
    rows["random"] = x
    tie = x.clone()
    tie[[77, 4_000, 9_999]] = 50.0  # the largest three times, across slices
    rows["tie_across_slices"] = tie
    late = x.clone()
    late[10_000] = 60.0  # in the partial last slice
    rows["in_partial_slice"] = late
    rows["all_minus_inf"] = torch.full((5_000,), float("-inf"))
    nan = x.clone()
    nan[[3_000, 6_000]] = float("nan")
    rows["nan"] = nan
    results = {}
    for name, row in rows.items():
        for dtype in (torch.float32, DT):
            cast = row.to(dtype)
            results[f"argmax/{name}/{dtype}"] = {
                "got": argmax_triton(cast),
                "torch": int(torch.argmax(cast)),
            }
    return results


def check_rope() -> dict:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    results = {}
    torch.manual_seed(3)
    # The modeling code's layout: [B, L, H, D] projections viewed as [B, H, L, D].
    q = torch.randn(2, 5, 7, 64, dtype=DT).transpose(1, 2)
    k = torch.randn(2, 5, 3, 64, dtype=DT).transpose(1, 2)
    for cos_b in (1, 2):
        angle = torch.randn(cos_b, 5, 32)
        cos = torch.cat([angle.cos()] * 2, -1).to(DT)
        sin = torch.cat([angle.sin()] * 2, -1).to(DT)
        ref_q, ref_k = apply_rotary_pos_emb(q, k, cos, sin)
        out_q, out_k = fused.rope_pair(q, k, cos, sin)
        results[f"rope_pair/cos_batch{cos_b}"] = {
            "equal": torch.equal(out_q, ref_q) and torch.equal(out_k, ref_k),
            "layout_kept": out_q.stride() == q.stride() and out_k.stride() == k.stride(),
        }
        alone = fused.rope(q, cos, sin)  # no keys: the launch's key tiles are empty (H2 = 0)
        results[f"rope/cos_batch{cos_b}"] = {"equal": torch.equal(alone, ref_q)}
    return results


def check_write_slot() -> dict:
    results = {}
    torch.manual_seed(4)
    for slot_dtype in (torch.int64, torch.int32):
        # The tail as a view of a bigger buffer (the joined layout: context, then the tail).
        buf_k = torch.randn(2, 3, 20, 64, dtype=DT)
        buf_v = torch.randn(2, 3, 20, 64, dtype=DT)
        ref_k, ref_v = buf_k.clone(), buf_v.clone()
        k = torch.randn(2, 1, 3, 64, dtype=DT).transpose(1, 2)  # [B, H, 1, D] from [B, 1, H, D]
        v = torch.randn(2, 1, 3, 64, dtype=DT).transpose(1, 2)
        slot = torch.tensor([4], dtype=slot_dtype)
        done = fused.write_slot(buf_k[:, :, 12:], buf_v[:, :, 12:], slot, k, v)
        ref_k[:, :, 12:].index_copy_(2, slot.long(), k)
        ref_v[:, :, 12:].index_copy_(2, slot.long(), v)
        results[f"write_slot/{str(slot_dtype).removeprefix('torch.')}"] = {
            "done": done,
            "equal": torch.equal(buf_k, ref_k) and torch.equal(buf_v, ref_v),
        }
    # Shapes it does not serve: two tokens; a slot that is not one integer. Nothing written.
    buf_k, buf_v = torch.zeros(1, 2, 8, 64, dtype=DT), torch.zeros(1, 2, 8, 64, dtype=DT)
    two = torch.randn(1, 2, 2, 64, dtype=DT)
    one = torch.randn(1, 2, 1, 64, dtype=DT)
    declined = {
        "two_tokens": fused.write_slot(buf_k, buf_v, torch.tensor([1]), two, two),
        "float_slot": fused.write_slot(buf_k, buf_v, torch.tensor([1.0]), one, one),
        "two_slots": fused.write_slot(buf_k, buf_v, torch.tensor([1, 2]), one, one),
    }
    results["write_slot/declined"] = {
        "returned": declined,
        "untouched": not buf_k.any().item() and not buf_v.any().item(),
    }
    return results


def _merge_ref(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lse = lse.double()
    total = torch.logsumexp(lse, 0)
    w = torch.exp(lse - total.clamp_min(-1e300)).nan_to_num(0.0)
    return (w[..., None] * o.double()).sum(0), total


def check_merge() -> dict:
    results = {}
    torch.manual_seed(5)
    # Each program reads 256 partials at a time (32 of D): 300 and 600 take two and three rounds
    # of the online max.
    for p, d in ((300, 256), (600, 64), (5, 64)):
        o = torch.randn(p, 1, 4, 2, d)
        lse = torch.randn(p, 1, 4, 2) * 3
        lse[:, 0, 0, 0] = float("-inf")  # a row with no keys at all
        lse[:256, 0, 1, 0] = float("-inf")  # a row whose first round has nothing
        lse[p - 1, 0, 2, 0] = 30.0  # a row whose largest partial comes last
        lse[3] = float("-inf")  # an empty partial in every row
        out, out_lse = tri.merge_stacked(o, lse, out_dtype=DT)
        ref, ref_lse = _merge_ref(o, lse)
        finite = torch.isfinite(ref_lse)
        results[f"merge_stacked/P{p}/D{d}"] = {
            "err_ulp": rel_err(out, ref),
            "lse_err": (out_lse.double() - ref_lse)[finite].abs().max().item(),
            "empty_row_zero": not out[0, 0, 0].any().item(),
            "empty_row_lse_neg_inf": out_lse[0, 0, 0].item() == float("-inf"),
        }
    # A head dim that is no power of two (80): every value merged, not the first 64. Partials whose
    # last dim is strided (a transposed view): read as the values, not the memory.
    cases = {
        "D80": torch.randn(7, 1, 4, 2, 80),
        "strided_last_dim": torch.randn(6, 1, 4, 64, 2).transpose(-1, -2),
    }
    for name, o in cases.items():
        lse = torch.randn(*o.shape[:-1])
        out, out_lse = tri.merge_stacked(o, lse, out_dtype=DT)
        ref, ref_lse = _merge_ref(o, lse)
        results[f"merge_stacked/{name}"] = {
            "err_ulp": rel_err(out, ref),
            "lse_err": (out_lse.double() - ref_lse).abs().max().item(),
        }
    return results


def _attention_ref(q, k, v, scale):
    g = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(g, 1)
    v = v.double().repeat_interleave(g, 1)
    s = q.double() @ k.transpose(-1, -2) * scale
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def _attention_result(out, lse, ref, ref_lse) -> dict:
    return {
        "err": (out.double() - ref).abs().max().item(),
        "lse_err": (lse.double() - ref_lse).abs().max().item(),
    }


def check_split_kv() -> dict:
    results = {}
    torch.manual_seed(6)
    scale = 0.125
    k = torch.randn(1, 2, 700, 64, dtype=DT)
    v = torch.randn(1, 2, 700, 64, dtype=DT)
    for lq, splits in ((1, 3), (5, 2), (1, 1)):
        q = torch.randn(1, 8, lq, 64, dtype=DT)
        out, lse = tri.split_kv_attention(q, k, v, scale, splits=splits)
        results[f"split_kv/fp16/Lq{lq}/splits{splits}"] = _attention_result(
            out, lse, *_attention_ref(q, k, v, scale)
        )
    q = torch.randn(1, 8, 1, 64, dtype=DT)
    n = torch.tensor([333], dtype=torch.int32)  # only the first 333 keys (a CUDA graph's length)
    out, lse = tri.split_kv_attention(q, k, v, scale, kv_len=n, splits=3)
    results["split_kv/fp16/device_len"] = _attention_result(
        out, lse, *_attention_ref(q, k[:, :, :333], v[:, :, :333], scale)
    )
    (k8, ks), (v8, vs) = quantize_fp8(k), quantize_fp8(v)
    kd, vd = dequantize(k8, ks, torch.float64), dequantize(v8, vs, torch.float64)
    out, lse = tri.split_kv_attention(q, k8, v8, scale, splits=3, kv_scales=(ks, vs))
    results["split_kv/fp8"] = _attention_result(out, lse, *_attention_ref(q, kd, vd, scale))
    # Over fp8 with a device length, the values' scales spread over 1e-4..1 (the kernel weighs
    # each program's values relative to the largest scale among its keys).
    spread = 10.0 ** torch.linspace(-4, 0, 700, dtype=torch.float64)
    (v8s, vss) = quantize_fp8((v.double() * spread[None, None, :, None]).to(DT))
    vsd = dequantize(v8s, vss, torch.float64)
    out, lse = tri.split_kv_attention(q, k8, v8s, scale, kv_len=n, splits=3, kv_scales=(ks, vss))
    results["split_kv/fp8/device_len_spread_scales"] = _attention_result(
        out, lse, *_attention_ref(q, kd[:, :, :333], vsd[:, :, :333], scale)
    )
    # The same two over V stored keys-contiguous (engine.cache's fp8 layout, rows padded).
    for name, values, length, ref_v in (("", v8, None, vd), ("/device_len_spread_scales", v8s, n, vsd)):
        stop = 700 if length is None else 333
        out, lse = tri.split_kv_attention(
            q,
            k8,
            _keys_major(values),
            scale,
            kv_len=length,
            splits=3,
            kv_scales=(ks, vss if length is not None else vs),
        )
        results[f"split_kv/fp8/v_keys_major{name}"] = {
            **_attention_result(out, lse, *_attention_ref(q, kd[:, :, :stop], ref_v[:, :, :stop], scale)),
            "keys_major": tri.keys_major(_keys_major(values)),
        }
    return results


def _keys_major(values: torch.Tensor) -> torch.Tensor:
    """``values`` [B, H, L, D] copied into a keys-contiguous buffer with padded rows, as the view
    engine.cache keeps an fp8 V in."""
    buf = empty_keys_major(values.shape, values.device, values.dtype)
    buf.copy_(values)
    return buf


def _adjacent_buffers(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tensors with storages of their own that lie back to back in memory (as two allocations
    of a caching allocator may)."""
    n = int(np.prod(shape))
    flat = np.random.default_rng(0).standard_normal(2 * n).astype(np.float16)
    first = torch.from_numpy(flat[:n]).view(shape)
    second = torch.from_numpy(flat[n:]).view(shape)
    return first, second


def check_decode() -> dict:
    results = {}
    torch.manual_seed(7)
    scale = 0.125
    q = torch.randn(1, 8, 1, 64, dtype=DT)
    n = torch.tensor([57], dtype=torch.int32)  # tail keys written so far
    # engine.cache's joined layout: the tail is the room after the context in one buffer.
    buf_k = torch.randn(1, 2, 900, 64, dtype=DT)
    buf_v = torch.randn(1, 2, 900, 64, dtype=DT)
    ctx_k, ctx_v, tail_k, tail_v = buf_k[:, :, :700], buf_v[:, :, :700], buf_k[:, :, 700:], buf_v[:, :, 700:]
    ref = _attention_ref(q, buf_k[:, :, :757], buf_v[:, :, :757], scale)
    joined = tri.decode_attention(q, ctx_k, ctx_v, tail_k, tail_v, n, scale)
    results["decode/joined"] = {
        **_attention_result(*joined, *ref),
        "detected": tri._joined(ctx_k, ctx_v, tail_k, tail_v),
    }
    apart = tri.decode_attention(q, ctx_k.clone(), ctx_v.clone(), tail_k.clone(), tail_v.clone(), n, scale)
    results["decode/separate"] = _attention_result(*apart, *ref)
    # Separate storages that happen to lie back to back: still read as two parts.
    (ck, tk), (cv, tv) = _adjacent_buffers((1, 1, 300, 64)), _adjacent_buffers((1, 1, 300, 64))
    q1 = torch.randn(1, 4, 1, 64, dtype=DT)
    ref = _attention_ref(q1, torch.cat([ck, tk[:, :, :57]], 2), torch.cat([cv, tv[:, :, :57]], 2), scale)
    try:
        adjacent = _attention_result(*tri.decode_attention(q1, ck, cv, tk, tv, n, scale), *ref)
    except RuntimeError as exc:
        adjacent = {"error": str(exc).splitlines()[0]}
    results["decode/adjacent_storages"] = adjacent
    # An fp8 context (never joined) and a float16 tail of its own.
    (k8, ks), (v8, vs) = quantize_fp8(ctx_k), quantize_fp8(ctx_v)
    kd, vd = dequantize(k8, ks, torch.float64), dequantize(v8, vs, torch.float64)
    out = tri.decode_attention(q, k8, v8, tail_k.clone(), tail_v.clone(), n, scale, (ks, vs))
    ref = _attention_ref(
        q,
        torch.cat([kd, tail_k[:, :, :57].double()], 2),
        torch.cat([vd, tail_v[:, :, :57].double()], 2),
        scale,
    )
    results["decode/fp8_context"] = _attention_result(*out, *ref)
    launches = []
    plain = tri._launch
    tri._launch = lambda *args, **kwargs: launches.append(1) or plain(*args, **kwargs)
    try:
        out = tri.decode_attention(q, k8, _keys_major(v8), tail_k.clone(), tail_v.clone(), n, scale, (ks, vs))
        results["decode/fp8_context_v_keys_major"] = {
            **_attention_result(*out, *ref),
            "launches": len(launches),
        }
        tri.TAIL_IN_LAUNCH, launches[:] = False, []  # the tail in a launch of its own, as before
        out = tri.decode_attention(q, k8, _keys_major(v8), tail_k.clone(), tail_v.clone(), n, scale, (ks, vs))
        results["decode/fp8_context_tail_apart"] = {
            **_attention_result(*out, *ref),
            "launches": len(launches),
        }
    finally:
        tri._launch, tri.TAIL_IN_LAUNCH = plain, True
    return results


KERNEL_CHECKS = {
    "gemv": check_gemv,
    "gemv_whole_rows": check_gemv_whole_rows,
    "eligible": check_eligible,
    "gemv_silu_mul": check_gemv_silu_mul,
    "gemv_norm": check_gemv_norm,
    "argmax": check_argmax,
    "gemv_rope": check_gemv_rope,
    "rope": check_rope,
    "write_slot": check_write_slot,
    "merge": check_merge,
    "split_kv": check_split_kv,
    "decode": check_decode,
}
