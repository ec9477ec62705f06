"""Triton kernels: split-KV attention with LSE for few queries over many keys, and the LSE merge.

``split_kv_attention`` is flash-decoding made GQA-aware: the ``G`` query heads sharing one KV head
(times the ``Lq`` query tokens) form the rows of one tile, so each KV head's keys are read once,
not ``G`` times, and the keys are cut into splits that run in parallel. It needs no mask (every
query sees every key), which is what phase 2 asks of the local context and what a single decode
token asks of everything. ``kv_len`` may be a device tensor so that a CUDA graph can replay the
same launch over a growing cache.

``merge_stacked`` merges ``P`` partials in one pass, in float32 and in the max-shifted form, with
empty partials (LSE = -inf) contributing nothing: the same function as ``kernels.merge``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from kernels.pdl import launch_options, pdl
from kernels.quant import keys_major

_LOG2E = 1.4426950408889634
# Integers that change from call to call (query length, key count, rows) are not specialised on:
# Triton would otherwise compile a kernel again whenever one becomes divisible by 16 or equal to 1,
# which a chat's follow-up of a new length paid for on its first token (0.5-0.8 s on an H200).

# Launch shape of the split-KV kernel for single-token decode (bench/speed.py sweeps these). One
# program per SM was fastest timed inside a CUDA graph on an H100 at 128K keys: 189 µs (2.84 TB/s)
# against 198 µs with two (bench/probe_phase1.py, docs/benchmarks.md); on an H200, 128-key tiles:
# 131 µs (4.08 TB/s) against 139 µs with 64 (bench/decode_profile.py, docs/decode-profile-cublas.json).
DECODE_CONFIG = {"block_n": 128, "num_warps": 4, "num_stages": 3, "programs_per_sm": 1, "k_rows": False}
# The same over an fp8 KV (half the bytes a key, more widening work a byte), V stored keys-
# contiguous (engine.cache): the fastest of 12 shapes swept on an H200 at 128K keys, 75.3 µs against
# 79.2 for the shape that was fastest over a D-contiguous V (64-key tiles of 2 warps, 4 programs an
# SM, docs/decode-profile-s9a.json). With V's operand loaded as words, not bytes, larger tiles and
# programs won again. Capping registers (``maxnreg``, 128-200) for 3-4 programs an SM was slower
# (76-79 µs, docs/decode-profile-s9c.json); ``maxnreg`` stays available to the sweep.
# ``f16``: widen e4m3 to fp16 (one instruction), not bf16 (which ran at half that rate). Dotting
# the e4m3 keys directly on fp8 tensor cores (the query quantized per row) ran no faster (2.94
# against 2.93 TB/s, 2026-12-02) and, with the probabilities in e4m3 too, doubled the error. The
# products transposed ("swap AB": keys as the wide side) took 184 µs.
FP8_DECODE_CONFIG = {
    "block_n": 128,
    "num_warps": 4,
    "num_stages": 3,
    "programs_per_sm": 2,
    "k_rows": False,
    "f16": True,
    "scale_block": 1024,
}


@triton.jit
def _kv_tile(
    qd, row_scale, m_i, l_i, acc, k_base, v_base, ks_base, vs_base, n, end, sk_n, sv_n, sv_d, v_inv,
    QUANT: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, K_ROWS: tl.constexpr,
    V_KEYS: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """One tile of ``BLOCK_N`` keys into the running (max, sum, output) of ``_split_kv_kernel``."""
    d = tl.arange(0, D)
    cols = n + tl.arange(0, BLOCK_N)
    col_ok = cols < end
    if not MASKED:
        col_ok = tl.full([BLOCK_N], True, tl.int1)
    if K_ROWS:  # load K as [N, D] rows (16-byte runs along D) and transpose in registers
        k = tl.load(k_base + cols[:, None] * sk_n + d[None, :], mask=col_ok[:, None], other=0.0)
        s = tl.dot(qd, tl.trans(k.to(qd.dtype)))
    else:
        k = tl.load(k_base + cols[None, :] * sk_n + d[:, None], mask=col_ok[None, :], other=0.0)
        s = tl.dot(qd, k.to(qd.dtype))
    s = s * row_scale[:, None]
    if QUANT:  # the key's scale multiplies its column of scores
        s = s * tl.load(ks_base + cols, mask=col_ok, other=1.0)[None, :]
    if MASKED:
        s = tl.where(col_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    if V_KEYS:  # V stored keys-contiguous (engine.cache's fp8 layout): [N, D] read along N
        v = tl.load(v_base + cols[:, None] + d[None, :] * sv_d, mask=col_ok[:, None], other=0.0)
    else:
        v = tl.load(v_base + cols[:, None] * sv_n + d[None, :], mask=col_ok[:, None], other=0.0)
    if QUANT:
        v_scale = tl.load(vs_base + cols, mask=col_ok, other=0.0)
        pv = tl.dot((p * (v_scale * v_inv)[None, :]).to(qd.dtype), v.to(qd.dtype))
    else:
        pv = tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc * alpha[:, None] + pv


@triton.jit(
    do_not_specialize=[
        "kv_len_static",
        "len_offset",
        "chunk",
        "split_offset",
        "LQ",
        "tail_from",
        "tail_chunk",
    ]
)
def _split_kv_kernel(
    Q,
    K,
    V,
    O_PART,
    L_PART,
    KV_LEN,
    K_SCALE,
    V_SCALE,
    kv_len_static,
    len_offset,
    chunk,
    split_offset,
    scale_log2,
    sq_b,
    sq_h,
    sq_l,
    sk_b,
    sk_h,
    sk_n,
    sv_b,
    sv_h,
    sv_n,
    sv_d,
    ss_b,
    ss_h,
    LQ,
    HKV: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    HAS_LEN: tl.constexpr,
    QUANT: tl.constexpr,
    F16: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    K_ROWS: tl.constexpr,
    V_KEYS: tl.constexpr,
    SCALE_BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
    TK=None,
    TV=None,
    TAIL_LEN=None,
    tail_from=0,
    tail_chunk=0,
    stk_b=0,
    stk_h=0,
    stk_n=0,
    stv_b=0,
    stv_h=0,
    stv_n=0,
):
    """``TK``/``TV`` (the decode step's tail, K/V in the query's dtype, ``TAIL_LEN`` keys): the
    programs from split ``tail_from`` on attend to the tail, ``tail_chunk`` keys each, while the
    others take the (fp8) context: one launch where two followed each other, one dependent step
    fewer a layer (``decode_attention``)."""
    if PDL:  # kernels.pdl: every read below may depend on the kernel before
        gdc_launch_dependents()
        gdc_wait()
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // HKV).to(tl.int64)
    h = (pid_bh % HKV).to(tl.int64)
    m_rows = G * LQ
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < m_rows
    g = rows // LQ
    t = rows % LQ
    d = tl.arange(0, D)
    q_ptr = Q + b * sq_b + (h * G + g)[:, None] * sq_h + t[:, None] * sq_l + d[None, :]
    q = tl.load(q_ptr, mask=row_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    v_top = tl.full([], 1.0, tl.float32)
    if TK is not None:  # (a constexpr test outside: Triton compiles both sides of a runtime one)
        if pid_s >= tail_from:
            m_i, l_i, acc = _tail_part(
                q, m_i, l_i, acc, TK, TV, TAIL_LEN, (pid_s - tail_from) * tail_chunk, tail_chunk, scale_log2,
                stk_b, stk_h, stk_n, stv_b, stv_h, stv_n, b, h, BLOCK_M, BLOCK_N, D,
            )  # fmt: skip
        else:
            m_i, l_i, acc, v_top = _context_part(
                q, m_i, l_i, acc, v_top, K, V, KV_LEN, K_SCALE, V_SCALE, kv_len_static, len_offset, chunk,
                scale_log2, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, sv_d, ss_b, ss_h, b, h, pid_s,
                HAS_LEN, QUANT, F16, BLOCK_M, BLOCK_N, D, K_ROWS, V_KEYS, SCALE_BLOCK,
            )  # fmt: skip
    else:
        m_i, l_i, acc, v_top = _context_part(
            q, m_i, l_i, acc, v_top, K, V, KV_LEN, K_SCALE, V_SCALE, kv_len_static, len_offset, chunk,
            scale_log2, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, sv_d, ss_b, ss_h, b, h, pid_s,
            HAS_LEN, QUANT, F16, BLOCK_M, BLOCK_N, D, K_ROWS, V_KEYS, SCALE_BLOCK,
        )  # fmt: skip

    has_keys = l_i > 0
    out = acc * (v_top / tl.where(has_keys, l_i, 1.0))[:, None]
    lse = tl.where(has_keys, (m_i + tl.log2(tl.where(has_keys, l_i, 1.0))) * 0.6931471805599453, m_i)
    base = ((split_offset + pid_s) * tl.num_programs(1) + pid_bh) * m_rows
    tl.store(O_PART + (base + rows)[:, None] * D + d[None, :], out, mask=row_ok[:, None])
    tl.store(L_PART + base + rows, lse, mask=row_ok)


@triton.jit
def _tail_part(
    q, m_i, l_i, acc, TK, TV, TAIL_LEN, start, chunk, scale_log2, stk_b, stk_h, stk_n, stv_b, stv_h, stv_n,
    b, h, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
):  # fmt: skip
    """The tail keys ``[start, start + chunk)`` below its device length, in the query's dtype."""
    end = tl.minimum(start + chunk, tl.load(TAIL_LEN).to(tl.int32))
    k_base = TK + b * stk_b + h * stk_h
    v_base = TV + b * stv_b + h * stv_h
    row_scale = tl.full([BLOCK_M], 1.0, tl.float32) * scale_log2
    # Not pipelined: a few tiles at most, and the context loop's pipeline buffers must stay the
    # launch's only large shared memory (with this loop's too, one program an SM would fit, not two).
    for n in tl.range(start, end, BLOCK_N, num_stages=1):
        m_i, l_i, acc = _kv_tile(
            q, row_scale, m_i, l_i, acc, k_base, v_base, k_base, v_base, n, end, stk_n, stv_n, 1, 1.0,
            False, D, BLOCK_N, False, False, True,
        )  # fmt: skip
    return m_i, l_i, acc


@triton.jit
def _context_part(
    q, m_i, l_i, acc, v_top, K, V, KV_LEN, K_SCALE, V_SCALE, kv_len_static, len_offset, chunk,
    scale_log2, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, sv_d, ss_b, ss_h, b, h, pid_s,
    HAS_LEN: tl.constexpr, QUANT: tl.constexpr, F16: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, D: tl.constexpr, K_ROWS: tl.constexpr, V_KEYS: tl.constexpr,
    SCALE_BLOCK: tl.constexpr,
):  # fmt: skip
    """The keys of split ``pid_s`` into the running (max, sum, output), and the values' scale."""
    if HAS_LEN:  # the keys before ``len_offset`` (a context ahead of the tail) plus the tail's
        kv_len = tl.load(KV_LEN).to(tl.int32) + len_offset
    else:
        kv_len = kv_len_static
    start = pid_s * chunk
    end = tl.minimum(start + chunk, kv_len)
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    ks_base = K_SCALE + b * ss_b + h * ss_h  # fp8 KV (kernels.quant): one scale per token
    vs_base = V_SCALE + b * ss_b + h * ss_h
    if QUANT and F16:
        # fp8 KV: e4m3 widens to fp16 in one instruction (to bf16 it takes several, which made the
        # kernel compute-bound), so the dots run in fp16; each query row is scaled into fp16's range
        # first and its scale folded back into the scores.
        q_amax = tl.max(tl.abs(q.to(tl.float32)), 1)
        q_scale = tl.where(q_amax > 0, q_amax, 1.0)
        qd = (q.to(tl.float32) / q_scale[:, None]).to(tl.float16)
        row_scale = q_scale * scale_log2
    else:
        qd = q
        row_scale = tl.full([BLOCK_M], 1.0, tl.float32) * scale_log2
    # fp8 values: each value's scale multiplies its column of probabilities, taken relative to the
    # largest scale among this program's keys (read once, before the loop), which multiplies the
    # result back at the end: p times a raw scale (amax / 448, often below 1e-4) falls below fp16's
    # normal range, where every probability under ~1e-3 of the row's largest was flushed to zero.
    # Relative to each tile's largest instead (a cross-thread reduction a tile) was 2% slower.
    # The scales are read SCALE_BLOCK at a time in a pipelined loop (``tl.range``'s stages: a loop
    # without dots is not pipelined otherwise): two loads a program at 128K keys, not 31 waited on
    # one by one; within the spread of the kernel's time (84.2 µs against 84.8-86.2,
    # docs/benchmarks.md).
    if QUANT:
        top = tl.zeros([SCALE_BLOCK], tl.float32)
        for n in tl.range(start, end, SCALE_BLOCK, num_stages=2):
            cols = n + tl.arange(0, SCALE_BLOCK)
            top = tl.maximum(top, tl.load(vs_base + cols, mask=cols < end, other=0.0))
        v_top = tl.max(top, 0)
        v_top = tl.where(v_top > 0, v_top, 1.0)
    v_inv = 1.0 / v_top
    if V_KEYS:
        # Whole tiles unmasked (V's loads along the keys run 16 bytes at a time only where no mask
        # varies along them), then the one partial tile a split can end with.
        start = tl.multiple_of(start, BLOCK_N)  # chunks are whole tiles (_launch_shape)
        full = start + (tl.maximum(end - start, 0) // BLOCK_N) * BLOCK_N
        for n in range(start, full, BLOCK_N):
            m_i, l_i, acc = _kv_tile(
                qd, row_scale, m_i, l_i, acc, k_base, v_base, ks_base, vs_base, n, end, sk_n, sv_n, sv_d,
                v_inv, QUANT, D, BLOCK_N, K_ROWS, V_KEYS, False,
            )  # fmt: skip
        if full < end:
            m_i, l_i, acc = _kv_tile(
                qd, row_scale, m_i, l_i, acc, k_base, v_base, ks_base, vs_base, full, end, sk_n, sv_n, sv_d,
                v_inv, QUANT, D, BLOCK_N, K_ROWS, V_KEYS, True,
            )  # fmt: skip
    else:  # one masked loop: V's mask is constant along D, its loads stay wide (split as above,
        # the bf16 kernel measured 3-4% slower, docs/decode-profile-s9a.json)
        for n in range(start, end, BLOCK_N):
            m_i, l_i, acc = _kv_tile(
                qd, row_scale, m_i, l_i, acc, k_base, v_base, ks_base, vs_base, n, end, sk_n, sv_n, sv_d,
                v_inv, QUANT, D, BLOCK_N, K_ROWS, V_KEYS, True,
            )  # fmt: skip
    return m_i, l_i, acc, v_top


@triton.jit(do_not_specialize=["P", "R", "H", "LQ"])
def _merge_kernel(
    PARTS,
    L,
    OUT,
    OUT_L,
    P,
    R,
    H,
    LQ,
    so_p,
    so_b,
    so_h,
    so_l,
    sl_p,
    sl_b,
    sl_h,
    sl_l,
    sout_b,
    sout_h,
    sout_l,
    BLOCK_D: tl.constexpr,
    BLOCK_P: tl.constexpr,
    PDL: tl.constexpr = False,
):
    if PDL:  # kernels.pdl
        gdc_launch_dependents()
        gdc_wait()
    # One program per row and BLOCK_D of its D, the partials read BLOCK_P at a time (one round
    # trip to memory for the ~20-70 partials of a decode step, where a loop over them one by one
    # waited on each load). D is split so that a decode step's 32 rows make more than 32 programs:
    # each is a short chain of dependent loads, and more of them run at once.
    row = tl.program_id(0).to(tl.int64)
    b = row // (H * LQ)
    h = (row // LQ) % H
    t = row % LQ
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    l_off = b * sl_b + h * sl_h + t * sl_l
    o_off = b * so_b + h * so_h + t * so_l
    peak = tl.max(tl.full([BLOCK_P], float("-inf"), tl.float32), 0)
    total = tl.sum(tl.zeros([BLOCK_P], tl.float32), 0)
    acc = tl.zeros([BLOCK_D], tl.float32)
    for p0 in range(0, P, BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        ok = ps < P
        lse = tl.load(L + ps.to(tl.int64) * sl_p + l_off, mask=ok, other=float("-inf"))
        new_peak = tl.maximum(peak, tl.max(lse, 0))
        shift = tl.where(new_peak == float("-inf"), 0.0, new_peak)
        alpha = tl.exp(peak - shift)  # 0 while nothing was seen (peak = -inf)
        w = tl.exp(lse - shift)
        o = tl.load(PARTS + ps.to(tl.int64)[:, None] * so_p + o_off + d[None, :], mask=ok[:, None], other=0.0)
        acc = acc * alpha + tl.sum(w[:, None] * o.to(tl.float32), 0)
        total = total * alpha + tl.sum(w, 0)
        peak = new_peak
    shift = tl.where(peak == float("-inf"), 0.0, peak)
    out = acc / tl.where(total > 0, total, 1.0)
    lse_out = tl.where(total > 0, shift + tl.log(tl.where(total > 0, total, 1.0)), peak)
    tl.store(OUT + b * sout_b + h * sout_h + t * sout_l + d, out.to(OUT.dtype.element_ty))
    if tl.program_id(1) == 0:
        tl.store(OUT_L + row, lse_out)


def merge_stacked(
    o: torch.Tensor, lse: torch.Tensor, out_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partials ``o`` [P, B, H, L, D] with ``lse`` [P, B, H, L]."""
    p, b, h, lq, d = o.shape
    if d < 16 or d & (d - 1):  # the kernel tiles D in powers of two: the float32 math instead
        from kernels.merge import merge_partials

        return merge_partials(o, lse, out_dtype)
    (o,) = _last_dim_contiguous(o)  # the kernel steps along D one element at a time
    out = torch.empty((b, h, lq, d), dtype=out_dtype or o.dtype, device=o.device)
    out_lse = torch.empty((b, h, lq), dtype=torch.float32, device=o.device)
    rows = b * h * lq
    if rows == 0:
        return out, out_lse
    lse = lse.float()
    block_d = min(d, 32)
    block_p = max(2, min(triton.next_power_of_2(p), 8192 // block_d))
    on = pdl(o)
    _merge_kernel[(rows, d // block_d)](
        o,
        lse,
        out,
        out_lse,
        p,
        rows,
        h,
        lq,
        *o.stride()[:4],
        *lse.stride(),
        *out.stride()[:3],
        BLOCK_D=block_d,
        BLOCK_P=block_p,
        PDL=on,
        num_warps=4,
        **launch_options(on),
    )
    return out, out_lse


@triton.jit(do_not_specialize=["R", "H", "LQ"])
def _merge2_kernel(
    OA,
    LA,
    OB,
    LB,
    OUT,
    OUT_L,
    R,
    H,
    LQ,
    sa_b,
    sa_h,
    sa_l,
    sla_b,
    sla_h,
    sla_l,
    sb_b,
    sb_h,
    sb_l,
    slb_b,
    slb_h,
    slb_l,
    sout_b,
    sout_h,
    sout_l,
    D: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    ok = rows < R
    b = rows // (H * LQ)
    h = (rows // LQ) % H
    t = rows % LQ
    d = tl.arange(0, D)
    la = tl.load(LA + b * sla_b + h * sla_h + t * sla_l, mask=ok, other=float("-inf"))
    lb = tl.load(LB + b * slb_b + h * slb_h + t * slb_l, mask=ok, other=float("-inf"))
    peak = tl.maximum(la, lb)
    shift = tl.where(peak == float("-inf"), 0.0, peak)
    wa = tl.exp(la - shift)
    wb = tl.exp(lb - shift)
    oa = tl.load(OA + (b * sa_b + h * sa_h + t * sa_l)[:, None] + d[None, :], mask=ok[:, None], other=0.0)
    ob = tl.load(OB + (b * sb_b + h * sb_h + t * sb_l)[:, None] + d[None, :], mask=ok[:, None], other=0.0)
    total = wa + wb
    safe = tl.where(total > 0, total, 1.0)
    out = (wa[:, None] * oa.to(tl.float32) + wb[:, None] * ob.to(tl.float32)) / safe[:, None]
    lse = tl.where(total > 0, shift + tl.log(safe), peak)
    out_off = b * sout_b + h * sout_h + t * sout_l
    tl.store(OUT + out_off[:, None] + d[None, :], out.to(OUT.dtype.element_ty), mask=ok[:, None])
    tl.store(OUT_L + rows, lse, mask=ok)


def merge_pair(
    oa: torch.Tensor, la: torch.Tensor, ob: torch.Tensor, lb: torch.Tensor, out_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two partials ``[B, H, L, D]`` (last dim contiguous, any other strides) in one pass,
    reading each where it lies. The output takes ``oa``'s memory layout, so that a ``[B, L, H, D]``
    buffer viewed as ``[B, H, L, D]`` (what transformers wants back) needs no copy afterwards."""
    b, h, lq, d = oa.shape
    out = torch.empty_like(oa, dtype=out_dtype)  # same strides as oa where oa is dense
    if out.stride(-1) != 1:
        out = torch.empty((b, h, lq, d), dtype=out_dtype, device=oa.device)
    out_lse = torch.empty((b, h, lq), dtype=torch.float32, device=oa.device)
    rows = b * h * lq
    if rows == 0:
        return out, out_lse
    la, lb = la.float(), lb.float()
    block = 16 if d >= 128 else 32
    _merge2_kernel[(triton.cdiv(rows, block),)](
        oa,
        la,
        ob,
        lb,
        out,
        out_lse,
        rows,
        h,
        lq,
        *oa.stride()[:3],
        *la.stride(),
        *ob.stride()[:3],
        *lb.stride(),
        *out.stride()[:3],
        D=d,
        BLOCK_R=block,
        num_warps=4,
    )
    return out, out_lse


def _launch_shape(q: torch.Tensor, b: int, hkv: int, lk: int, splits: int | None, fp8: bool = False):
    """(block_m, block_n, m_tiles, splits, chunk, warps, stages) of one split-KV launch."""
    m_rows = (q.shape[1] // hkv) * q.shape[2]
    block_m = max(16, triton.next_power_of_2(min(m_rows, 64)))
    cfg = FP8_DECODE_CONFIG if fp8 else DECODE_CONFIG
    small = block_m <= 16
    block_n = cfg["block_n"] if small else 32
    m_tiles = triton.cdiv(m_rows, block_m)
    if splits is None:
        programs = cfg["programs_per_sm"] * torch.cuda.get_device_properties(q.device).multi_processor_count
        want = max(1, programs // max(1, m_tiles * b * hkv))
        splits = max(1, min(want, triton.cdiv(max(lk, 1), 256)))
    chunk = triton.cdiv(triton.cdiv(max(lk, 1), splits), block_n) * block_n
    splits = triton.cdiv(max(lk, 1), chunk)
    warps = cfg["num_warps"] if small else 4
    stages = cfg["num_stages"] if small else 3
    return block_m, block_n, m_tiles, splits, chunk, warps, stages


def _launch(
    q, k, v, o_part, l_part, offset, shape, scale, kv_len, scales=None, len_offset=0, tail=None
) -> None:
    """One split-KV launch; ``tail`` (K, V, device length, splits, chunk): the decode step's tail
    in extra programs of the same launch (``_split_kv_kernel``'s ``TK``)."""
    block_m, block_n, m_tiles, splits, chunk, warps, stages = shape
    b, hq, lq, d = q.shape
    hkv = k.shape[1]
    length = kv_len if kv_len is not None else l_part  # any pointer; unused when HAS_LEN is False
    k_scale, v_scale = scales if scales is not None else (l_part, l_part)  # unused unless QUANT
    cfg = FP8_DECODE_CONFIG if scales is not None else DECODE_CONFIG
    if max(_head_extent(k), _head_extent(v)) >= 2**31:
        # key offsets inside one head are 32-bit in the kernel's loop (a 64-bit multiply a tile
        # costs the hot loop): past 2³¹ elements a head, refuse rather than read the wrong keys
        raise ValueError("split-KV attention: one KV head holds more than 2^31 elements; split it over ranks")
    if scales is not None and (k_scale.stride() != v_scale.stride() or k_scale.stride(-1) != 1):
        raise ValueError("fp8 KV scales must be [B, Hkv, Lk] with the same strides, last dim contiguous")
    on = pdl(q)
    extra = {}
    if tail is not None:
        tk, tv, tail_len, tail_splits, tail_chunk = tail
        extra = dict(TK=tk, TV=tv, TAIL_LEN=tail_len, tail_from=splits, tail_chunk=tail_chunk)
        extra.update(stk_b=tk.stride(0), stk_h=tk.stride(1), stk_n=tk.stride(2))
        extra.update(stv_b=tv.stride(0), stv_h=tv.stride(1), stv_n=tv.stride(2))
        splits += tail_splits
    _split_kv_kernel[(m_tiles, b * hkv, splits)](
        q,
        k,
        v,
        o_part,
        l_part,
        length,
        k_scale,
        v_scale,
        k.shape[2],
        len_offset,
        chunk,
        offset,
        scale * _LOG2E,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        v.stride(3),
        k_scale.stride(0) if scales is not None else 0,
        k_scale.stride(1) if scales is not None else 0,
        lq,
        HKV=hkv,
        G=hq // hkv,
        D=d,
        HAS_LEN=kv_len is not None,
        QUANT=scales is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        K_ROWS=bool(cfg.get("k_rows", False)),
        V_KEYS=keys_major(v),
        F16=bool(FP8_DECODE_CONFIG.get("f16", True)),
        SCALE_BLOCK=FP8_DECODE_CONFIG.get("scale_block", 1024),
        PDL=on,
        **extra,
        num_warps=warps,
        num_stages=stages,
        **({"maxnreg": cfg["maxnreg"]} if cfg.get("maxnreg") and block_m <= 16 else {}),
        **launch_options(on),
    )


def _last_dim_contiguous(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t if t.stride(-1) == 1 else t.contiguous() for t in ts]


def _readable_values(v: torch.Tensor) -> torch.Tensor:
    """``v`` as the kernel reads it: keys-contiguous or D-contiguous as stored, else a copy."""
    return v if keys_major(v) or v.stride(-1) == 1 else v.contiguous()


def _head_extent(t: torch.Tensor) -> int:
    """Elements one head of ``t`` [B, H, L, D] spans in memory."""
    return 1 + sum((n - 1) * s for n, s in zip(t.shape[2:], t.stride()[2:], strict=True))


def split_kv_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    kv_len: torch.Tensor | None = None,
    splits: int | None = None,
    kv_scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention of ``q`` [B, Hq, Lq, D] over ``k``/``v`` [B, Hkv, Lk, D] → (O, LSE fp32).

    ``kv_len`` (a one-element device tensor) limits the keys to the first ``kv_len``: the launch
    shape then depends only on ``Lk`` (the buffer's capacity), so a CUDA graph can replay it.
    ``kv_scales`` (K's and V's [B, Hkv, Lk] float32): ``k``/``v`` are fp8 (``kernels.quant``),
    dequantized tile by tile as they are read.
    """
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    q, k = _last_dim_contiguous(q, k)
    v = _readable_values(v)
    shape = _launch_shape(q, b, hkv, lk, splits, fp8=kv_scales is not None)
    n_splits, m_rows = shape[3], (hq // hkv) * lq
    o_part = torch.empty((n_splits, b, hkv, m_rows, d), dtype=torch.float32, device=q.device)
    l_part = torch.empty((n_splits, b, hkv, m_rows), dtype=torch.float32, device=q.device)
    _launch(q, k, v, o_part, l_part, 0, shape, scale, kv_len, kv_scales)
    # Rows of [B, Hkv, G*Lq] are exactly the rows of a contiguous [B, Hq, Lq].
    o_part = o_part.view(n_splits, b, hq, lq, d)
    l_part = l_part.view(n_splits, b, hq, lq)
    if n_splits == 1:
        return o_part[0].to(q.dtype), l_part[0]
    return merge_stacked(o_part, l_part, out_dtype=q.dtype)


def decode_attention(
    q: torch.Tensor,
    ctx_k: torch.Tensor | None,
    ctx_v: torch.Tensor | None,
    tail_k: torch.Tensor | None,
    tail_v: torch.Tensor | None,
    tail_len: torch.Tensor | None,
    scale: float,
    ctx_scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention of a few query rows over every context key and the first ``tail_len``
    tail keys, in three launches (context splits, tail splits, one merge of all partials) rather
    than two attention calls, a cast and a pairwise merge: the decode step's attention.
    Either part may be absent (``None`` or no keys). ``ctx_scales``: the context is fp8."""
    b, hq, lq, d = q.shape
    (q,) = _last_dim_contiguous(q)
    parts = []  # (keys, values, device length, fp8 scales, keys ahead of the device length)
    has_ctx = ctx_k is not None and ctx_k.shape[2] > 0
    has_tail = tail_k is not None and tail_k.shape[2] > 0
    if (
        has_ctx
        and has_tail
        and ctx_scales is None
        and tail_len is not None
        and _joined(ctx_k, ctx_v, tail_k, tail_v)
    ):
        # The tail lies right after the context in one buffer (engine.cache's joined layout): one
        # launch over both, the first ctx + tail_len keys.
        n_ctx = ctx_k.shape[2]
        size = (b, ctx_k.shape[1], n_ctx + tail_k.shape[2], d)
        parts.append(
            (
                ctx_k.as_strided(size, ctx_k.stride()),
                ctx_v.as_strided(size, ctx_v.stride()),
                tail_len,
                None,
                n_ctx,
            )
        )
        has_ctx = has_tail = False
    if has_ctx:
        (ctx_k,), ctx_v = _last_dim_contiguous(ctx_k), _readable_values(ctx_v)
        parts.append((ctx_k, ctx_v, None, ctx_scales, 0))
    if has_tail:
        tail_k, tail_v = _last_dim_contiguous(tail_k, tail_v)
        parts.append((tail_k, tail_v, tail_len, None, 0))
    if not parts:
        out = q.new_zeros(b, hq, lq, d)
        return out, torch.full((b, hq, lq), float("-inf"), dtype=torch.float32, device=q.device)
    hkv = parts[0][0].shape[1]
    shapes = [_launch_shape(q, b, hkv, k.shape[2], None, fp8=sc is not None) for k, _, _, sc, _ in parts]
    total = sum(s[3] for s in shapes)
    m_rows = (hq // hkv) * lq
    o_part = torch.empty((total, b, hkv, m_rows, d), dtype=torch.float32, device=q.device)
    l_part = torch.empty((total, b, hkv, m_rows), dtype=torch.float32, device=q.device)
    if _tail_joins(parts, shapes):  # an fp8 context and its tail: one launch (TAIL_IN_LAUNCH)
        (k, v, _, scales, _), (tk, tv, tail_len, _, _) = parts
        tail = (tk, tv, tail_len, shapes[1][3], shapes[1][4])
        _launch(q, k, v, o_part, l_part, 0, shapes[0], scale, None, scales, 0, tail)
    else:
        offset = 0
        for (k, v, length, scales, ahead), shape in zip(parts, shapes, strict=True):
            _launch(q, k, v, o_part, l_part, offset, shape, scale, length, scales, ahead)
            offset += shape[3]
    return merge_stacked(o_part.view(total, b, hq, lq, d), l_part.view(total, b, hq, lq), out_dtype=q.dtype)


# The decode step's tail attended by extra programs of the fp8 context's launch, not a launch of
# its own that waited for the context's to end: one dependent step a layer fewer (H200, 2026-12-02,
# docs/benchmarks.md).
TAIL_IN_LAUNCH = True


def _tail_joins(parts: list, shapes: list) -> bool:
    """Whether ``decode_attention``'s two parts, an fp8 context then a tail of device length, can
    share a launch: same row tiling and key tile size (their launch shapes' ``block_m``/``block_n``)."""
    if not (TAIL_IN_LAUNCH and len(parts) == 2):
        return False
    (_, _, ctx_len, ctx_scales, _), (_, _, tail_len, tail_scales, ahead) = parts
    same = shapes[0][:3] == shapes[1][:3] and shapes[0][5:] == shapes[1][5:]
    return (
        ctx_scales is not None
        and ctx_len is None
        and tail_scales is None
        and tail_len is not None
        and not ahead
        and same
    )


def _joined(ctx_k, ctx_v, tail_k, tail_v) -> bool:
    """Whether each tail tensor continues its context tensor in memory, with the same strides and
    a contiguous last dim: one strided view then covers both. Both must be views of one storage:
    two allocations that only happen to lie back to back are not one tensor's memory (a view
    over both would run past the context's storage)."""

    def follows(a: torch.Tensor, b: torch.Tensor) -> bool:
        return (
            a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.stride() == b.stride()
            and a.stride(-1) == 1
            and a.dtype == b.dtype
            and a.shape[:2] == b.shape[:2]
            and a.shape[3] == b.shape[3]
            and b.data_ptr() == a.data_ptr() + a.shape[2] * a.stride(2) * a.element_size()
        )

    return follows(ctx_k, tail_k) and follows(ctx_v, tail_v)


def supported(q: torch.Tensor) -> bool:
    """Head dims the kernels handle: a power of two from 16 to 256 (tl.arange needs it)."""
    d = q.shape[-1]
    return q.is_cuda and 16 <= d <= 256 and d == 2 ** int(math.log2(d))
