"""Triton matrix-vector products for the decode step: one token times the model's weights.

A decode step reads every weight once for one row of activations, so it runs at the speed the
weights stream from memory. cuBLAS serves a one-row product with GEMM tiles (64 x 8, split over K
with a separate reduction kernel for the narrow projections): on an H200 at Llama-3.1-8B's shape
the Q/K/V projections took 28 µs in three launches where these kernels take 16 in one
(docs/gemv-sweep.json). Each program takes a few whole rows of the weight and streams them in wide
tiles, reducing over K inside the program: no second kernel, nothing to split. Two products are
fused where the model computes them from the same input:

- ``gemv3``: Q, K and V from one hidden state in one launch (three weights, three outputs);
- ``gemv_silu_mul``: ``silu(x @ gate.T) * (x @ up.T)``, the MLP's first half, in one launch, with
  the two results rounded to the model's dtype before the product as eager transformers does.

What sits right before or after a product can ride in its launch: the RMSNorm of its input
(``norm=``), a residual add (``residual=``), and for Q/K/V the rotary embedding and the token's
K/V write into a cache slot (``rope=``, ``dest=``), each rounded where the model's own code rounds.

Fewer launches counted as much as faster ones: a decode step is ~450 memory-bound kernels in a CUDA
graph, each boundary costing about a microsecond, and the whole step at 128K went from 10.46 ms
(cuBLAS) to 9.48 with these (docs/benchmarks.md). Sums are in float32 as cuBLAS's, in another
order, so results agree to the model dtype's rounding (tests/test_gemv_gpu.py, and
tests/test_kernels_interpreter.py on CPU under Triton's interpreter).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from kernels.pdl import launch_options, pdl

# Launch shape per product (rows per program, K per tile, warps, pipeline stages, K unrolled):
# the fastest inside a whole decode step on an H200 at Llama-3.1-8B's shapes, among the best of
# each kind timed alone in a CUDA graph (bench/decode_profile.py --tune-in-step, bench/gemv_sweep.py,
# docs/gemv-sweep.json). ``down`` is the MLP's down projection (K = 14336 there). ``{"cublas": 1}``
# hands a kind to cuBLAS (``F.linear``), where that was the faster inside the step.
GEMV_CONFIG: dict[str, dict[str, int]] = {
    # Timed inside the whole step (48 tokens at 128K, bf16 KV) after 2026-12-02's 16-byte weight
    # loads and PDL: each within 0.02-0.05 ms of the shapes chosen before, that is within the
    # spread of one call; down on Triton beat cuBLAS by 0.05 ms (8.180 against 8.233), where its
    # launch joins the PDL chain and carries the residual add (docs/decode-profile-s9e.json).
    "qkv": {"block_n": 4, "block_k": 1024, "num_warps": 4, "num_stages": 1, "unroll": 1},
    "linear": {"block_n": 2, "block_k": 1024, "num_warps": 8, "num_stages": 1, "unroll": 1},
    "down": {"block_n": 2, "block_k": 1024, "num_warps": 4, "num_stages": 4, "unroll": 0},
    "gate_up": {"block_n": 2, "block_k": 2048, "num_warps": 8, "num_stages": 1, "unroll": 1},
}


@triton.jit
def _dot_rows(
    x_ptr,
    w_ptr,
    rows,
    n,
    K: tl.constexpr,
    stride_w,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN: tl.constexpr,
    UNROLL: tl.constexpr,
    STAGES: tl.constexpr,
    NORM_W=None,
    rstd=1.0,
):
    """float32 ``w[rows] @ x`` for ``BLOCK_N`` row indices (rows past ``n`` give 0). A loop over K of
    multiply-adds; ``UNROLL``: the loop unrolled (``K`` is a constant), so that every tile's loads
    are issued before the first product waits on one (the faster on an H200 at 4096-wide K).
    ``NORM_W``: ``x`` is first RMS-normalised (``_normed``, ``rstd`` from ``_rstd``)."""
    acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    if UNROLL:
        for k0 in tl.static_range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            ok = (rows < n)[:, None] & (cols < K)[None, :]
            w = tl.load(w_ptr + rows[:, None].to(tl.int64) * stride_w + cols[None, :], mask=ok, other=0.0)
            x = tl.load(x_ptr + cols, mask=cols < K, other=0.0)
            if NORM_W is not None:
                x = _normed(x, cols, K, NORM_W, rstd)
            acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
    else:
        # ``tl.range``'s own stage count: Triton pipelines a loop without dots only when asked
        # there (the launch's ``num_stages`` left this loop waiting on each tile's loads).
        for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
            cols = k0 + tl.arange(0, BLOCK_K)
            if EVEN:
                w = tl.load(w_ptr + rows[:, None].to(tl.int64) * stride_w + cols[None, :])
                x = tl.load(x_ptr + cols)
            else:
                ok = (rows < n)[:, None] & (cols < K)[None, :]
                w = tl.load(w_ptr + rows[:, None].to(tl.int64) * stride_w + cols[None, :], mask=ok, other=0.0)
                x = tl.load(x_ptr + cols, mask=cols < K, other=0.0)
            if NORM_W is not None:
                x = _normed(x, cols, K, NORM_W, rstd)
            acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
    return tl.sum(acc, 1)


@triton.jit
def _rstd(x_ptr, K: tl.constexpr, KN: tl.constexpr, eps):
    """``rsqrt(mean(x**2) + eps)`` of the whole row ``x`` (``KN``: K rounded up to a power of two),
    in float32 as ``kernels.fused.rms_norm``."""
    cols = tl.arange(0, KN)
    x = tl.load(x_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
    return tl.math.rsqrt(tl.sum(x * x, axis=0) / K + eps)


@triton.jit
def _normed(x, cols, K: tl.constexpr, NORM_W, rstd):
    """Columns ``cols`` of RMSNorm's output, rounded where the model's norm rounds: the normalised
    row to its dtype, then its product with the weight (``kernels.fused.rms_norm``)."""
    normed = (x.to(tl.float32) * rstd).to(x.dtype)
    w = tl.load(NORM_W + cols, mask=cols < K, other=0.0)
    return (w.to(tl.float32) * normed.to(tl.float32)).to(x.dtype)


@triton.jit
def _whole_rows(w_ptr, rows, n, K: tl.constexpr, stride_w, KP: tl.constexpr):
    """``w[rows]`` whole, one tile of ``KP`` (K rounded up to a power of two) columns: a PDL launch
    issues every weight load before it waits for its input."""
    cols = tl.arange(0, KP)
    ok = (rows < n)[:, None] & (cols < K)[None, :]
    return tl.load(w_ptr + rows[:, None].to(tl.int64) * stride_w + cols[None, :], mask=ok, other=0.0)


@triton.jit
def _row(x_ptr, K: tl.constexpr, KP: tl.constexpr, NORM_W=None, eps=0.0):
    """The input row as one ``KP``-wide tile, RMS-normalised first with ``NORM_W``."""
    cols = tl.arange(0, KP)
    x = tl.load(x_ptr + cols, mask=cols < K, other=0.0)
    if NORM_W is not None:  # the whole row is here: its statistics need no second read
        xf = x.to(tl.float32)
        x = _normed(x, cols, K, NORM_W, tl.math.rsqrt(tl.sum(xf * xf, axis=0) / K + eps))
    return x


@triton.jit
def _times_x(w, x):
    """float32 ``w @ x`` for rows ``_whole_rows`` loaded and the row ``_row`` loaded."""
    return tl.sum(w.to(tl.float32) * x.to(tl.float32)[None, :], 1)


# The weights' row strides are specialised on (a model's never change): Triton then knows each row
# starts 16-byte aligned and loads 16 bytes at a time. Left unspecialised, as they were until
# 2026-12-02, every weight element was a load of its own (the sm_90 PTX: 64 two-byte loads a tile
# where 8 of 16 bytes do).
@triton.jit
def _rotated(out, head, j0, COS, SIN, HALF: tl.constexpr, HB: tl.constexpr, dt: tl.constexpr):
    """Rotary embedding of one program's rows of Q or K: ``out`` holds the (float32) products of
    rows ``head*D + j0 + [0, HB)`` then their partners ``+ HALF``. Each product is rounded to the
    model's dtype first (the projection's output), then rotated as ``kernels.fused.rope_pair``
    rotates it (each product with cos/sin rounded, then the sum). Returns both halves and their
    index within the head."""
    pair = tl.reshape(out.to(dt).to(tl.float32), (2, HB))
    first = tl.arange(0, 2)[:, None] == 0
    x1 = tl.sum(tl.where(first, pair, 0.0), 0)
    x2 = tl.sum(tl.where(first, 0.0, pair), 0)
    d = j0 + tl.arange(0, HB)
    c1 = tl.load(COS + d).to(tl.float32)
    c2 = tl.load(COS + HALF + d).to(tl.float32)
    s1 = tl.load(SIN + d).to(tl.float32)
    s2 = tl.load(SIN + HALF + d).to(tl.float32)
    y1 = (x1 * c1).to(dt).to(tl.float32) + (-(x2 * s1)).to(dt).to(tl.float32)
    y2 = (x2 * c2).to(dt).to(tl.float32) + (x1 * s2).to(dt).to(tl.float32)
    return y1.to(dt), y2.to(dt), d


@triton.jit(do_not_specialize=["N1", "N2", "N3"])
def _gemv3_kernel(
    X, W1, W2, W3, B1, B2, B3, Y1, Y2, Y3, N1, N2, N3, K: tl.constexpr, sw1, sw2, sw3,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr,
    UNROLL: tl.constexpr, STAGES: tl.constexpr, RES=None, PDL: tl.constexpr = False,
    KP: tl.constexpr = 0, NORM_W=None, eps=0.0, KN: tl.constexpr = 0,
    HALF: tl.constexpr = 0, HB: tl.constexpr = 1, COS=None, SIN=None,
    DK=None, DV=None, SLOT=None, sdk_h=0, sdk_l=0, sdv_h=0, sdv_l=0,
):  # fmt: skip
    """``HALF`` > 0 (half the head dimension): the first two weights are Q and K, rotated in this
    launch (``COS``/``SIN``: the token's [2 * HALF] vectors), each program taking ``HB`` (half of
    ``BLOCK_N``) rows of a head and their rotation partners ``HALF`` further. ``DK``/``DV``: K and V are also
    written into a cache's [heads, slots, D] buffers at the device index ``SLOT``."""
    if PDL:  # kernels.pdl: the next kernel may launch; this one's input is read after the wait
        gdc_launch_dependents()
    tile = tl.program_id(0)
    t1 = tl.cdiv(N1, BLOCK_N)
    t2 = tl.cdiv(N2, BLOCK_N)
    # Which of the (up to) three weights this program's rows belong to.
    if tile < t1:
        w, bias, y, n, sw, local = W1, B1, Y1, N1, sw1, tile
    elif tile < t1 + t2:
        w, bias, y, n, sw, local = W2, B2, Y2, N2, sw2, tile - t1
    else:
        w, bias, y, n, sw, local = W3, B3, Y3, N3, sw3, tile - t1 - t2
    r = tl.arange(0, BLOCK_N)
    rotate = False
    head = 0
    j0 = 0
    if HALF > 0:
        rotate = tile < t1 + t2
        head = local // (HALF // HB)
        j0 = (local % (HALF // HB)) * HB
    if rotate:  # half the rows from each half of a head: every row's rotation partner is here
        rows = head * (2 * HALF) + j0 + (r % HB) + (r // HB) * HALF
    else:
        rows = local * BLOCK_N + r
    if KP > 0:  # the weights loaded whole before the wait (``_prefetch``)
        rows_w = _whole_rows(w, rows, n, K, sw, KP)
        if PDL:
            gdc_wait()
        out = _times_x(rows_w, _row(X, K, KP, NORM_W, eps))
    else:
        if PDL:
            gdc_wait()
        rstd = 1.0
        if NORM_W is not None:
            rstd = _rstd(X, K, KN, eps)
        out = _dot_rows(X, w, rows, n, K, sw, BLOCK_N, BLOCK_K, EVEN, UNROLL, STAGES, NORM_W, rstd)
    ok = rows < n
    dt = y.dtype.element_ty
    if HAS_BIAS:
        # F.linear rounds the product to the output dtype only after adding the bias
        out += tl.load(bias + rows, mask=ok, other=0.0).to(tl.float32)
    if RES is not None:  # the decoder layer's ``residual + linear(x)``: the product rounded first
        res = tl.load(RES + rows, mask=ok, other=0.0).to(tl.float32)
        out = out.to(dt).to(tl.float32) + res
    if HALF > 0:
        if rotate:
            y1, y2, d = _rotated(out, head, j0, COS, SIN, HALF, HB, dt)
            first = head * (2 * HALF) + d
            tl.store(y + first, y1)
            tl.store(y + first + HALF, y2)
            if DK is not None:
                if tile >= t1:  # K: its cache slot too
                    dst = DK + head.to(tl.int64) * sdk_h + tl.load(SLOT).to(tl.int64) * sdk_l + d
                    tl.store(dst, y1)
                    tl.store(dst + HALF, y2)
        else:
            tl.store(y + rows, out.to(dt), mask=ok)
            if DV is not None:  # V: its cache slot too
                dst = DV + (rows // (2 * HALF)).to(tl.int64) * sdv_h + tl.load(SLOT).to(tl.int64) * sdv_l
                tl.store(dst + rows % (2 * HALF), out.to(dt), mask=ok)
    else:
        tl.store(y + rows, out.to(dt), mask=ok)


@triton.jit(do_not_specialize=["N"])
def _gemv_silu_kernel(
    X, WG, WU, Y, N, K: tl.constexpr, sg, su,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr, UNROLL: tl.constexpr,
    STAGES: tl.constexpr, PDL: tl.constexpr = False, KP: tl.constexpr = 0,
    NORM_W=None, eps=0.0, KN: tl.constexpr = 0,
):  # fmt: skip
    if PDL:
        gdc_launch_dependents()
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    dt = Y.dtype.element_ty
    # Each product rounded to the model's dtype (the Linear's output), then SiLU rounded, then the
    # product rounded: eager ``act_fn(gate_proj(x)) * up_proj(x)``.
    if KP > 0:
        wg = _whole_rows(WG, rows, N, K, sg, KP)
        wu = _whole_rows(WU, rows, N, K, su, KP)
        if PDL:
            gdc_wait()
        x = _row(X, K, KP, NORM_W, eps)
        g = _times_x(wg, x).to(dt).to(tl.float32)
        u = _times_x(wu, x).to(dt).to(tl.float32)
    else:
        if PDL:
            gdc_wait()
        rstd = 1.0
        if NORM_W is not None:
            rstd = _rstd(X, K, KN, eps)
        g = _dot_rows(X, WG, rows, N, K, sg, BLOCK_N, BLOCK_K, EVEN, UNROLL, STAGES, NORM_W, rstd)
        u = _dot_rows(X, WU, rows, N, K, su, BLOCK_N, BLOCK_K, EVEN, UNROLL, STAGES, NORM_W, rstd)
        g = g.to(dt).to(tl.float32)
        u = u.to(dt).to(tl.float32)
    act = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
    tl.store(Y + rows, (act * u).to(dt), mask=rows < N)


def eligible(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    """One row of a bf16/fp16 activation against contiguous 2-D weights of its dtype and device
    (the caller decides which devices: ``engine.fused`` sends CUDA tensors)."""
    if not (x.dtype in (torch.bfloat16, torch.float16) and x.is_contiguous()):
        return False
    k = x.shape[-1]
    if x.numel() != k:
        return False
    return all(
        w.dim() == 2 and w.dtype == x.dtype and w.shape[1] == k and w.is_contiguous() and w.device == x.device
        for w in weights
    )


def _prefetch(on: bool, cfg: dict, k: int, block_n: int, weights: int = 1) -> int:
    """Columns of the one tile a PDL launch loads its rows' weights in before it waits, or 0 (wait
    first, then the configured loop): only unrolled shapes (which load every tile up front anyway)
    whose rows take at most 64 registers a thread."""
    kp = triton.next_power_of_2(k)
    fits = block_n * kp * weights <= 128 * cfg["num_warps"] * 32  # bf16 elements: 64 registers
    return kp if on and cfg.get("unroll") and fits else 0


Norm = tuple[torch.Tensor, float]  # an RMSNorm before the product: its weight [K] and epsilon


def norm_fits(x: torch.Tensor, norm: Norm) -> bool:
    """Whether a product over the row ``x`` can take ``norm`` into its launch: a contiguous weight
    of the row's length and dtype on its device."""
    w = norm[0]
    return (
        w.dim() == 1
        and w.shape[0] == x.shape[-1]
        and w.dtype == x.dtype
        and w.is_contiguous()
        and w.device == x.device
    )


Rope = tuple[torch.Tensor, torch.Tensor]  # one token's rotary cos and sin, [D] each
Dest = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # cache K, V [1, Hkv, slots, D]; the slot


def rope_fits(x: torch.Tensor, weights: list[torch.Tensor], rope: Rope, kind: str = "qkv") -> bool:
    """Whether ``gemv3`` can rotate Q and K in its launch: Q, K and V given, whole heads of an even
    size ``D`` that the launch shape's row pairs tile, cos/sin contiguous [D] in ``x``'s dtype, and
    the launch shape not on cuBLAS."""
    cos, sin = rope
    cfg = GEMV_CONFIG[kind]
    d = cos.shape[-1] if cos.dim() == 1 else -1
    block_n = cfg.get("block_n", 0)
    return (
        len(weights) == 3
        and not cfg.get("cublas")
        and d > 0
        and d % 2 == 0
        and block_n % 2 == 0
        and (d // 2) % (block_n // 2) == 0
        and all(w.shape[0] % d == 0 for w in weights)
        and all(
            t.shape == (d,) and t.is_contiguous() and t.dtype == x.dtype and t.device == x.device
            for t in rope
        )
        and sin.shape == cos.shape
    )


def dest_fits(x: torch.Tensor, weights: list[torch.Tensor], dest: Dest, d: int) -> bool:
    """Whether ``dest``'s buffers take this launch's K and V at its slot: batch 1, the K/V heads of
    ``weights`` of size ``d``, a contiguous last dim, ``x``'s dtype and device."""
    dk, dv, slot = dest
    return (
        all(t.dim() == 4 and t.shape[0] == 1 and t.shape[3] == d and t.stride(3) == 1 for t in (dk, dv))
        and dk.shape[1] * d == weights[1].shape[0]
        and dv.shape[1] * d == weights[2].shape[0]
        and all(t.dtype == x.dtype and t.device == x.device for t in (dk, dv))
        and slot.numel() == 1
        and slot.dtype in (torch.int32, torch.int64)
        and slot.device == x.device
    )


def _rope_args(rope: Rope | None, dest: Dest | None, block_n: int) -> dict:
    if rope is None:
        return {}
    args = {"HALF": rope[0].shape[0] // 2, "HB": block_n // 2, "COS": rope[0], "SIN": rope[1]}
    if dest is not None:
        dk, dv, slot = dest
        args.update(DK=dk, DV=dv, SLOT=slot, sdk_h=dk.stride(1), sdk_l=dk.stride(2))
        args.update(sdv_h=dv.stride(1), sdv_l=dv.stride(2))
    return args


def _norm_args(norm: Norm | None, k: int) -> dict:
    if norm is None:
        return {}
    return {"NORM_W": norm[0], "eps": float(norm[1]), "KN": triton.next_power_of_2(k)}


def _apply_norm(x: torch.Tensor, norm: Norm | None) -> torch.Tensor:
    if norm is None:
        return x
    from kernels.fused import rms_norm

    return rms_norm(x, norm[0], norm[1])


def _even(k: int, block_k: int, block_n: int, *ns: int) -> bool:
    return k % block_k == 0 and all(n % block_n == 0 for n in ns)


def gemv3(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None] | None = None,
    kind: str = "qkv",
    residual: torch.Tensor | None = None,
    norm: Norm | None = None,
    rope: Rope | None = None,
    dest: Dest | None = None,
) -> list[torch.Tensor]:
    """``[x @ w.T (+ b) for w in weights]`` for one row ``x`` [..., K] and one to three weights
    [N_i, K], in one launch; each result has ``x``'s leading shape and ``N_i`` last.
    ``residual`` (one weight only; contiguous, the output's shape and dtype): ``residual + x @ w.T``
    in the same launch, rounded as eager's two steps are. ``norm`` (an RMSNorm's weight [K] and
    epsilon): ``x`` is normalised first, in the same launch (``norm_fits``). ``rope`` (the token's
    cos and sin, [D] each; Q, K and V given, ``rope_fits``): Q and K come out rotated, as
    ``kernels.fused.rope_pair`` rotates them; ``dest`` (a cache's K and V [1, Hkv, slots, D] and a
    one-element device index): K and V are also written at that slot, as ``kernels.fused.write_slot``
    writes them."""
    if not 1 <= len(weights) <= 3:
        raise ValueError("gemv3 takes one to three weights")
    if residual is not None and (len(weights) != 1 or residual.numel() != weights[0].shape[0]):
        raise ValueError("a residual goes with one weight and has its output's size")
    biases = list(biases) if biases is not None else [None] * len(weights)
    has_bias = any(b is not None for b in biases)
    if has_bias and any(b is None for b in biases):
        raise ValueError("either every weight has a bias or none does")
    cfg = GEMV_CONFIG[kind]
    if (rope is not None or dest is not None) and not (
        rope is not None and rope_fits(x, weights, rope, kind)
    ):
        raise ValueError("rotary embedding in the Q/K/V launch: see rope_fits for the shapes it takes")
    if dest is not None and not dest_fits(x, weights, dest, rope[0].shape[0]):
        raise ValueError("K/V cache slot in the Q/K/V launch: see dest_fits for the buffers it takes")
    if cfg.get("cublas"):  # the kind's products are faster as cuBLAS's one-row GEMMs
        x = _apply_norm(x, norm)
        outs = [torch.nn.functional.linear(x, w, b) for w, b in zip(weights, biases, strict=True)]
        return outs if residual is None else [residual + outs[0]]
    k = x.shape[-1]
    outs = [torch.empty((*x.shape[:-1], w.shape[0]), dtype=x.dtype, device=x.device) for w in weights]
    block_n, block_k = cfg["block_n"], cfg["block_k"]
    ns = [w.shape[0] for w in weights]
    pad = 3 - len(weights)
    w3 = weights + [weights[0]] * pad
    b3 = (biases + [biases[0]] * pad) if has_bias else [w3[0]] * 3  # any pointer when unused
    y3 = outs + [outs[0]] * pad
    n3 = ns + [0] * pad
    tiles = sum(triton.cdiv(n, block_n) for n in ns)
    on = pdl(x)
    _gemv3_kernel[(tiles,)](
        x,
        *w3,
        *b3,
        *y3,
        *n3,
        k,
        *(w.stride(0) for w in w3),
        HAS_BIAS=has_bias,
        RES=residual,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        EVEN=_even(k, block_k, block_n, *ns),
        UNROLL=bool(cfg.get("unroll", 0)),
        STAGES=cfg["num_stages"],
        PDL=on,
        KP=_prefetch(on, cfg, k, block_n),
        **_norm_args(norm, k),
        **_rope_args(rope, dest, block_n),
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
        **launch_options(on),
    )
    return outs


def gemv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kind: str = "linear",
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (plus ``residual``) for one row ``x``; ``kind`` names the
    launch shape (``down``: the MLP's long-K product)."""
    return gemv3(x, [weight], None if bias is None else [bias], kind=kind, residual=residual)[0]


def gemv_silu_mul(
    x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, norm: Norm | None = None
) -> torch.Tensor:
    """``silu(x @ gate.T) * (x @ up.T)`` for one row ``x``, the gate and up weights [N, K];
    ``norm`` as for ``gemv3``."""
    if gate.shape != up.shape:
        raise ValueError("gate and up weights must have one shape")
    n, k = gate.shape
    cfg = GEMV_CONFIG["gate_up"]
    if cfg.get("cublas"):
        from kernels.fused import silu_mul

        x = _apply_norm(x, norm)
        return silu_mul(torch.nn.functional.linear(x, gate), torch.nn.functional.linear(x, up))
    y = torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    block_n, block_k = cfg["block_n"], cfg["block_k"]
    tiles = triton.cdiv(n, block_n)
    on = pdl(x)
    _gemv_silu_kernel[(tiles,)](
        x,
        gate,
        up,
        y,
        n,
        k,
        gate.stride(0),
        up.stride(0),
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        EVEN=_even(k, block_k, block_n, n),
        UNROLL=bool(cfg.get("unroll", 0)),
        STAGES=cfg["num_stages"],
        PDL=on,
        KP=_prefetch(on, cfg, k, block_n, 2),
        **_norm_args(norm, k),
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
        **launch_options(on),
    )
    return y
