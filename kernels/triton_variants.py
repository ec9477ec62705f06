"""Triton kernel: attention with LSE under the variants' rules (causal by position, a sliding
window, logit soft-capping) for queries and keys placed anywhere on one sequence axis.

The fused CUDA kernels (cuDNN, flash) take neither a window with offsets nor soft-capping, so
before this kernel every masked or soft-capped call on a GPU ran the float32 math version, which
builds the full score matrix. This is a flash-attention forward with the mask computed from
positions: query row ``i`` sits at ``q_start + i``, key ``j`` at ``k_start + j``; a key is visible
when ``key <= query`` and, with a window ``W``, ``key > query - W`` (transformers' rule).
Soft-capping is ``cap * tanh(s / cap)`` on the scaled score, before the mask.

Each program owns ``BLOCK_M`` query rows of one query head and walks only the key tiles some of
its rows can see, so a window layer costs ``O(W)`` keys per query, not ``O(L)``. For few query
rows (decode) the visible keys are cut into splits that run in parallel and are merged by LSE.

Triton compiles a kernel again for every new pattern of its integer arguments' divisibility by 16
unless told not to; the positions and lengths change with every question and decode step, so
they are left unspecialised (``_PER_CALL``) and a follow-up of a new length, at a new position,
compiles nothing (issue 14). The strides stay specialised: they are fixed by the cache's buffers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)

# Integers that differ from call to call: never specialised on (see the module's docstring).
_PER_CALL = ["q_start", "k_start", "lq", "lk", "window", "split_len"]


@triton.jit(do_not_specialize=_PER_CALL)
def _positioned_kernel(
    Q,
    K,
    V,
    O_PART,
    L_PART,
    q_start,
    k_start,
    lq,
    lk,
    window,
    softcap,
    scale,
    split_len,
    sq_b,
    sq_h,
    sq_l,
    sk_b,
    sk_h,
    sk_n,
    sv_b,
    sv_h,
    sv_n,
    HQ: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    DP: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // HQ).to(tl.int64)
    hq = (pid_bh % HQ).to(tl.int64)
    hk = hq // G
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < lq
    d = tl.arange(0, DP)
    d_ok = d < D
    q = tl.load(
        Q + b * sq_b + hq * sq_h + rows[:, None] * sq_l + d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    row_pos = q_start + rows

    # The key range [lo, hi) (indices into K) that some row of this tile can see, then this split's part.
    first_row = q_start + pid_m * BLOCK_M
    last_row = tl.minimum(first_row + BLOCK_M, q_start + lq) - 1
    hi = tl.minimum(lk, last_row - k_start + 1)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(0, first_row - window + 1 - k_start)
    lo = lo + pid_s * split_len
    hi = tl.minimum(hi, lo + split_len)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, DP], tl.float32)
    k_base = K + b * sk_b + hk * sk_h
    v_base = V + b * sv_b + hk * sv_h
    for n in range(lo, hi, BLOCK_N):
        cols = n + tl.arange(0, BLOCK_N)
        col_ok = cols < hi
        k_ok = col_ok[None, :] & d_ok[:, None]
        k = tl.load(k_base + cols[None, :] * sk_n + d[:, None], mask=k_ok, other=0.0)
        s = tl.dot(q, k).to(tl.float32) * scale
        if HAS_SOFTCAP:  # cap * tanh(s / cap), tanh written with exp (stable at both ends)
            x = s / softcap
            s = softcap * (1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0))
        col_pos = k_start + cols
        visible = col_ok[None, :] & (col_pos[None, :] <= row_pos[:, None])
        if HAS_WINDOW:
            visible = visible & (col_pos[None, :] > row_pos[:, None] - window)
        s = tl.where(visible, s * _LOG2E, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_ok = col_ok[:, None] & d_ok[None, :]
        v = tl.load(v_base + cols[:, None] * sv_n + d[None, :], mask=v_ok, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    has_keys = l_i > 0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, (m_i + tl.log2(tl.where(has_keys, l_i, 1.0))) * _LN2, float("-inf"))
    base = (pid_s * tl.num_programs(1) + pid_bh) * lq
    tl.store(O_PART + (base + rows)[:, None] * D + d[None, :], out, mask=row_ok[:, None] & d_ok[None, :])
    tl.store(L_PART + base + rows, lse, mask=row_ok)


def supported(q: torch.Tensor) -> bool:
    """What the kernel takes: a CUDA tensor in half precision with a head dim up to 256."""
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256


def positioned_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    q_start: int,
    k_start: int,
    window: int | None,
    softcap: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.variants.masked_attention_with_lse_math`` fused: ``(O [B,Hq,Lq,D], LSE [B,Hq,Lq])``."""
    from kernels.triton_attention import merge_stacked

    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if v.stride(-1) != 1:
        v = v.contiguous()
    block_m = 16 if lq <= 16 else 64
    block_n = 32 if d > 128 else 64
    dp = triton.next_power_of_2(max(d, 16))
    tiles = triton.cdiv(lq, block_m)
    # Few tiles (decode, a short tail): split the visible keys so the SMs have work.
    visible = lk if window is None else min(lk, window + lq)
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 8
    splits = 1
    if tiles * b * hq < sms and visible > 4 * block_n:
        splits = min(triton.cdiv(sms, tiles * b * hq), triton.cdiv(visible, 2 * block_n))
    split_len = triton.cdiv(triton.cdiv(visible, splits), block_n) * block_n
    splits = triton.cdiv(visible, split_len)
    o_part = torch.empty((splits, b, hq, lq, d), dtype=torch.float32, device=q.device)
    l_part = torch.empty((splits, b, hq, lq), dtype=torch.float32, device=q.device)
    _positioned_kernel[(tiles, b * hq, splits)](
        q,
        k,
        v,
        o_part,
        l_part,
        q_start,
        k_start,
        lq,
        lk,
        window or 0,
        float(softcap or 1.0),
        float(scale),
        split_len,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        HQ=hq,
        G=hq // hkv,
        D=d,
        DP=dp,
        HAS_WINDOW=window is not None,
        HAS_SOFTCAP=softcap is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        num_warps=4 if d <= 128 else 8,
        num_stages=2,
    )
    if splits == 1:
        return o_part[0].to(q.dtype), l_part[0]
    return merge_stacked(o_part, l_part, q.dtype)  # a head dim not a power of two: its float32 merge
