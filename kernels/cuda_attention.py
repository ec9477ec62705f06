"""Attention with LSE on CUDA: cuDNN (fastest on Hopper, DESIGN.md), torch's flash as fallback, and
the Triton split-KV kernel when few query rows face many keys.

The fused kernels want equal query/KV head counts and align a causal mask top-left, while the
engine asks for grouped-query attention with a bottom-right causal mask. ``gqa_attention_with_lse``
bridges the two exactly, on any device, so its logic is tested on CPU too:

- a ``grouped`` backend (cuDNN takes ``Hkv < Hq`` as it is) gets the grouped heads directly: no
  copy of K/V, none of Q, and its output keeps Q's memory layout (transformers hands Q over as a
  ``[B, L, H, D]`` buffer viewed as ``[B, H, L, D]``), so the caller's transpose back is free;
- otherwise unmasked attention folds the ``G`` query heads of a KV head into the query length
  (``[B, Hkv, G*Lq, D]``) and causal attention repeats the KV heads (8-15% of the causal kernel's
  time at 16K on an H100, docs/benchmarks.md);
- causal attention with ``Lq < Lk`` is the unmasked prefix ``[0, Lk-Lq)`` merged with the causal
  square ``[Lk-Lq, Lk)``; with ``Lq == 1`` it is simply unmasked;
- a causal square of few query rows (phase 2's query over itself and a conversation's tail) goes to
  a backend with no per-shape setup (``few_causal``: flash): cuDNN builds an execution graph for
  every new shape and stride, hundreds of ms each (sglang #4650 measured ~400 ms), which every
  question of a new length and every regrown conversation tail would pay before its first token.

``GQA_STRATEGY`` says which of the two the unmasked and the causal case use (bench/probe_phase1.py
measures both).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels.merge import merge_partials
from kernels.reference import attention_with_lse_math, empty_partial

DenseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, bool], tuple[torch.Tensor, torch.Tensor]]
FewFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
MergeFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]

# Query rows per KV head (G * Lq) up to which the split-KV kernel beats a fused prefill kernel,
# whose grid has only ceil(rows / 128) tiles per head and leaves most SMs idle.
FEW_QUERY_ROWS = 512

# The backend of few-row causal squares: "flash" (no per-shape setup) or "cudnn" (as every other
# causal call; bench/chat_followup_gpu.py --few-causal cudnn measures the difference).
FEW_CAUSAL_BACKEND = "flash"

# "native": hand the grouped heads to the ``grouped`` backend; "fold"/"repeat": the equal-head
# workarounds above. Either falls back to the workaround when the grouped backend refuses.
GQA_STRATEGY = {"unmasked": "native", "causal": "native"}


def gqa_attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    causal: bool,
    dense: DenseFn,
    few: FewFn | None = None,
    merge: MergeFn = merge_partials,
    grouped: DenseFn | None = None,
    few_causal: DenseFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped-query, bottom-right-causal attention with LSE over ``dense`` (equal heads; causal
    only with ``Lq == Lk``), ``few`` (unmasked, grouped heads, few query rows), ``grouped``
    (like ``dense`` but takes ``Hkv < Hq``; may raise RuntimeError to decline) and ``few_causal``
    (like ``dense``, for causal squares of few query rows)."""
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    if lq == 0 or lk == 0:
        return empty_partial(q, v.shape[-1])
    groups = hq // hkv
    if causal and lq == 1:
        causal = False  # the last query token sees every key
    if causal and lq > lk:  # leading queries see no key at all: rare, left to the reference
        return attention_with_lse_math(q, k, v, scale, causal=True)
    if causal and lq < lk:
        cut = lk - lq
        fns = (dense, few, merge, grouped, few_causal)
        head = gqa_attention_with_lse(q, k[:, :, :cut], v[:, :, :cut], scale, False, *fns)
        tail = gqa_attention_with_lse(q, k[:, :, cut:], v[:, :, cut:], scale, True, *fns)
        return merge([head[0], tail[0]], [head[1], tail[1]], out_dtype=q.dtype)
    if not causal and few is not None and groups * lq <= FEW_QUERY_ROWS:
        return few(q, k, v, scale)
    if causal and few_causal is not None and groups * lq <= FEW_QUERY_ROWS:  # Lq == Lk here
        if groups > 1:  # a few rows of keys: repeating them costs nothing
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        return few_causal(q, k, v, scale, True)
    if groups > 1 and grouped is not None and GQA_STRATEGY["causal" if causal else "unmasked"] == "native":
        try:
            return grouped(q, k, v, scale, causal)
        except RuntimeError:  # shapes or strides the grouped backend declines: equal heads below
            pass
    if not causal:
        folded = q.reshape(b, hkv, groups * lq, d)
        out, lse = dense(folded, k, v, scale, False)
        return out.reshape(b, hq, lq, v.shape[-1]), lse.reshape(b, hq, lq)
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    return dense(q, k, v, scale, True)


def _cudnn(q, k, v, scale, causal):
    res = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q, k, v, None, True, 0.0, causal, False, scale=scale
    )
    return res[0], res[1]


def _flash(q, k, v, scale, causal):
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
    return res[0], res[1]


_BACKENDS: dict[str, Callable] = {"cudnn": _cudnn, "flash": _flash}
_order = ["cudnn", "flash"]


def dense_cuda(q, k, v, scale, causal):
    """Equal-head fused attention with LSE: cuDNN, falling back to flash where cuDNN refuses the
    shapes or is missing."""
    b, h, lq, _ = q.shape
    last: Exception | None = None
    for name in list(_order):
        try:
            out, lse = _BACKENDS[name](q, k, v, scale, causal)
            return out, lse.reshape(b, h, lq).float()
        except RuntimeError as exc:  # unsupported shape/dtype on this backend
            last = exc
    raise RuntimeError(f"no fused CUDA attention accepted these inputs: {last}")


def attention_with_lse_cuda(q, k, v, scale, causal=False):
    """The CUDA entry registered in ``kernels.dispatch``; float32 and odd head dims go to the math
    version, the rest to cuDNN/flash/Triton."""
    from kernels import triton_attention as tri

    if q.dtype not in (torch.float16, torch.bfloat16) or not tri.supported(q) or q.shape[-1] > 128:
        return attention_with_lse_math(q, k, v, scale, causal)
    few_causal = flash_first_cuda if FEW_CAUSAL_BACKEND == "flash" else None
    return gqa_attention_with_lse(
        q, k, v, scale, causal, dense_cuda, tri.split_kv_attention, merge_cuda, grouped_cuda, few_causal
    )


def flash_first_cuda(q, k, v, scale, causal):
    """Equal-head fused attention with LSE, flash first: its kernels are built ahead of time, so
    a new shape costs nothing before it runs; cuDNN where flash refuses the inputs."""
    try:
        out, lse = _flash(q, k, v, scale, causal)
        return out, lse.reshape(q.shape[0], q.shape[1], q.shape[2]).float()
    except RuntimeError:
        return dense_cuda(q, k, v, scale, causal)


def grouped_cuda(q, k, v, scale, causal):
    """cuDNN over grouped heads as they are (no K/V repeat, no Q fold); RuntimeError if declined."""
    if "cudnn" not in _order:
        raise RuntimeError("cuDNN is not among the backends in use")
    out, lse = _cudnn(q, k, v, scale, causal)
    return out, lse.reshape(q.shape[0], q.shape[1], q.shape[2]).float()


def merge_cuda(outs, lses, out_dtype=None):
    """``merge_partials`` through the one-pass Triton kernel (lists of two without stacking)."""
    from kernels import triton_attention as tri

    if isinstance(outs, torch.Tensor):
        return tri.merge_stacked(outs, lses, out_dtype)
    outs, lses = list(outs), list(lses)
    dtype = out_dtype or outs[0].dtype
    if len(outs) == 2 and outs[0].stride(-1) == 1 and outs[1].stride(-1) == 1:
        return tri.merge_pair(outs[0], lses[0].float(), outs[1], lses[1].float(), dtype)
    return tri.merge_stacked(torch.stack(outs), torch.stack([x.float() for x in lses]), dtype)
