"""Fused Triton kernels for the pointwise work around the matmuls: RMSNorm, SiLU(gate) * up, and
rotary position embedding of Q and K in one pass.

Eager transformers spends ~20% of phase 1's GPU time on these (H100 profile, docs/benchmarks.md):
RMSNorm alone is six kernels with float32 round trips, RoPE five per tensor with a ``cat``. Each
kernel here reads its inputs once and writes its output once, and rounds to the model's dtype
where the eager code does (``x.to(bf16)`` before the weight product, each RoPE product before the
sum, SiLU before the product with ``up``). On an H100, RMSNorm and SiLU-mul outputs were at least
97% bit-identical to eager transformers 5.17 (the float32 sum's order and ``exp`` differ), RoPE
76%, all within bf16 rounding (tests/test_fused_gpu.py).

Only CUDA tensors in bf16/fp16 with a contiguous last dimension go through here; callers
(``engine.fused``) keep the eager code for everything else.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from kernels.pdl import launch_options, pdl


@triton.jit
def _rms_norm_kernel(X, W, Y, stride_x, stride_y, N, eps, BLOCK: tl.constexpr, PDL: tl.constexpr = False):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0)
    if PDL:  # kernels.pdl: the weight read, the input waited for
        gdc_launch_dependents()
        gdc_wait()
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    var = tl.sum(x * x, axis=0) / N
    normed = (x * tl.math.rsqrt(var + eps)).to(Y.dtype.element_ty)  # hidden.to(input_dtype)
    y = w.to(tl.float32) * normed.to(tl.float32)  # weight * hidden, rounded once
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * (x * rsqrt(mean(x**2) + eps)).to(x.dtype)`` over the last dim, x contiguous."""
    n = x.shape[-1]
    rows = x.numel() // n
    x2 = x.view(rows, n)
    y = torch.empty_like(x2)
    if rows == 0:
        return y.view(x.shape)
    block = triton.next_power_of_2(n)
    warps = 4 if block <= 1024 else (8 if block <= 4096 else 16)
    on = pdl(x)
    _rms_norm_kernel[(rows,)](
        x2, weight, y, x2.stride(0), y.stride(0), n, eps,
        BLOCK=block, PDL=on, num_warps=warps, **launch_options(on),
    )  # fmt: skip
    return y.view(x.shape)


@triton.jit
def _silu_mul_kernel(G, U, Y, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    act = (g / (1.0 + tl.exp(-g))).to(Y.dtype.element_ty)  # act_fn(gate) in the model's dtype
    tl.store(Y + offs, (act.to(tl.float32) * u).to(Y.dtype.element_ty), mask=mask)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for contiguous tensors of one shape and dtype."""
    y = torch.empty_like(gate)
    numel = gate.numel()
    if numel:
        block = 2048
        _silu_mul_kernel[(triton.cdiv(numel, block),)](gate, up, y, numel, BLOCK=block, num_warps=8)
    return y


# The sequence length only splits the program id into (batch, token): not specialised on, so that
# a question whose length divides by 16 (or is 1) compiles no variant of its own (issue 14).
@triton.jit(do_not_specialize=["L", "TQ"])
def _rope_kernel(
    X, Y, X2, Y2, COS, SIN, L, TQ,
    sx_b, sx_h, sx_l, sy_b, sy_h, sy_l,
    sx2_b, sx2_h, sx2_l, sy2_b, sy2_h, sy2_l,
    sc_b, sc_l, ss_b, ss_l, H, H2,
    HALF: tl.constexpr, BLOCK_H: tl.constexpr, PDL: tl.constexpr = False,
):  # fmt: skip
    if PDL:  # kernels.pdl
        gdc_launch_dependents()
        gdc_wait()
    # Head tiles below TQ rotate X into Y (the queries), the rest X2 into Y2 (the keys): one launch
    # for both, as a decode step makes ~30 of these pairs.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // L
    t = pid % L
    d = tl.arange(0, HALF)
    tile = tl.program_id(1)
    if tile < TQ:
        x_base = X + b * sx_b + t * sx_l
        y_base = Y + b * sy_b + t * sy_l
        h = tile * BLOCK_H + tl.arange(0, BLOCK_H)
        mask = (h < H)[:, None]
        x_row = x_base + h[:, None].to(tl.int64) * sx_h  # H·L·D may pass 2³¹ for a long input
        y_row = y_base + h[:, None].to(tl.int64) * sy_h
    else:
        x_base = X2 + b * sx2_b + t * sx2_l
        y_base = Y2 + b * sy2_b + t * sy2_l
        h = (tile - TQ) * BLOCK_H + tl.arange(0, BLOCK_H)
        mask = (h < H2)[:, None]
        x_row = x_base + h[:, None].to(tl.int64) * sx2_h
        y_row = y_base + h[:, None].to(tl.int64) * sy2_h
    c1 = tl.load(COS + b * sc_b + t * sc_l + d).to(tl.float32)[None, :]
    c2 = tl.load(COS + b * sc_b + t * sc_l + HALF + d).to(tl.float32)[None, :]
    s1 = tl.load(SIN + b * ss_b + t * ss_l + d).to(tl.float32)[None, :]
    s2 = tl.load(SIN + b * ss_b + t * ss_l + HALF + d).to(tl.float32)[None, :]
    x1 = tl.load(x_row + d[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_row + HALF + d[None, :], mask=mask, other=0.0).to(tl.float32)
    dt = Y.dtype.element_ty
    # (x * cos) + (rotate_half(x) * sin), each product rounded to the model's dtype, as in eager
    y1 = (x1 * c1).to(dt).to(tl.float32) + (-(x2 * s1)).to(dt).to(tl.float32)
    y2 = (x2 * c2).to(dt).to(tl.float32) + (x1 * s2).to(dt).to(tl.float32)
    tl.store(y_row + d[None, :], y1.to(dt), mask=mask)
    tl.store(y_row + HALF + d[None, :], y2.to(dt), mask=mask)


def _like(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    return y if y.stride(-1) == 1 else torch.empty(x.shape, dtype=x.dtype, device=x.device)


def rope_pair(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of ``q`` [B, Hq, L, D] and ``k`` [B, Hk, L, D] (any strides, last dim
    contiguous) with ``cos``/``sin`` [B or 1, L, D], in one launch; each result keeps its input's
    memory layout (as the eager elementwise ops do)."""
    b, hq, length, d = q.shape
    hk = k.shape[1]
    yq, yk = _like(q), _like(k)
    if q.numel() == 0 and k.numel() == 0:
        return yq, yk
    sc_b = cos.stride(0) if cos.shape[0] > 1 else 0
    ss_b = sin.stride(0) if sin.shape[0] > 1 else 0
    block_h = min(triton.next_power_of_2(max(hq, hk)), max(1, 4096 // d))
    tq = triton.cdiv(hq, block_h)
    grid = (b * length, tq + triton.cdiv(hk, block_h))
    on = pdl(q)
    _rope_kernel[grid](
        q, yq, k, yk, cos, sin, length, tq,
        q.stride(0), q.stride(1), q.stride(2), yq.stride(0), yq.stride(1), yq.stride(2),
        k.stride(0), k.stride(1), k.stride(2), yk.stride(0), yk.stride(1), yk.stride(2),
        sc_b, cos.stride(1), ss_b, sin.stride(1), hq, hk,
        HALF=d // 2, BLOCK_H=block_h, PDL=on, num_warps=4, **launch_options(on),
    )  # fmt: skip
    return yq, yk


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` [B, H, L, D] (any strides, last dim contiguous) with ``cos``/``sin``
    [B or 1, L, D]; the result keeps ``x``'s memory layout (as the eager elementwise ops do)."""
    return rope_pair(x, x[:, :0], cos, sin)[0]


@triton.jit
def _write_slot_kernel(
    K, V, DK, DV, SLOT, H,
    sk_b, sk_h, sv_b, sv_h, sdk_b, sdk_h, sdk_l, sdv_b, sdv_h, sdv_l,
    D: tl.constexpr, PDL: tl.constexpr = False,
):  # fmt: skip
    if PDL:  # kernels.pdl
        gdc_launch_dependents()
        gdc_wait()
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    slot = tl.load(SLOT).to(tl.int64)
    d = tl.arange(0, D)
    if tl.program_id(1) == 0:
        tl.store(DK + b * sdk_b + h * sdk_h + slot * sdk_l + d, tl.load(K + b * sk_b + h * sk_h + d))
    else:
        tl.store(DV + b * sdv_b + h * sdv_h + slot * sdv_l + d, tl.load(V + b * sv_b + h * sv_h + d))


def write_slot(
    dst_k: torch.Tensor, dst_v: torch.Tensor, slot: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> bool:
    """``dst_k[:, :, slot] = k`` and the same for V in one launch, ``slot`` a one-element device
    tensor (a CUDA graph's decode step writes its token's K/V where the graph has counted to).
    Returns False, writing nothing, for shapes it does not serve (the caller copies then, and
    ``index_copy_`` raises where the slot is not one integer index)."""
    b, h, length, d = k.shape
    ok = (
        length == 1
        and slot.numel() == 1
        and slot.dtype in (torch.int32, torch.int64)
        and slot.device == k.device
        and v.shape == k.shape
        and dst_k.shape[:2] == dst_v.shape[:2] == (b, h)
        and dst_k.shape[3] == dst_v.shape[3] == d
        and d & (d - 1) == 0
        and k.dtype == v.dtype == dst_k.dtype == dst_v.dtype
        and k.stride(-1) == v.stride(-1) == dst_k.stride(-1) == dst_v.stride(-1) == 1
    )
    if not ok:
        return False
    on = pdl(k)
    _write_slot_kernel[(b * h, 2)](
        k, v, dst_k, dst_v, slot, h,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        dst_k.stride(0), dst_k.stride(1), dst_k.stride(2), dst_v.stride(0), dst_v.stride(1), dst_v.stride(2),
        D=d, PDL=on, num_warps=1, **launch_options(on),
    )  # fmt: skip
    return True
