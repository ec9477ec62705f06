"""Attention with LSE for the variants decoders use: sliding windows, logit soft-capping, sinks.

Every call places its queries and keys on one sequence axis: query ``i`` is at ``q_start + i``,
key ``j`` at ``k_start + j``. A key is visible when it does not follow the query and, with a
window ``W``, lies fewer than ``W`` tokens before it (transformers' ``kv_idx > q_idx - W``).
Soft-capping is ``cap * tanh(s / cap)`` on the scaled scores, before the mask, as transformers'
eager attention does it. A sink (gpt-oss) is a per-head logit with no value: one more partial
(``sink_partial``) in the LSE merge.

Keys that no query can see are sliced away first, so a windowed decode step over a long context
costs ``W`` keys. What is left goes to the fast kernels when it is plain (every key visible, or a
bottom-right causal square) and soft-capping is off; otherwise, on CUDA, to the Triton kernel in
``kernels.triton_variants`` (positions, window and soft-cap in one flash pass), and elsewhere to
explicit float32 scores here, the ground truth the kernel is tested against.
"""

from __future__ import annotations

import torch

from kernels.dispatch import attention_with_lse, reference_only
from kernels.reference import attention_with_lse_math, empty_partial


def sink_partial(
    sinks: torch.Tensor, q: torch.Tensor, v_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial a per-head sink logit adds: O = 0 and LSE = the sink, for every query row."""
    b, h, lq, d = q.shape
    out = q.new_zeros(b, h, lq, v_dim or d)
    lse = sinks.detach().float().reshape(1, h, 1).expand(b, h, lq).contiguous()
    return out, lse


def positioned_attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    q_start: int,
    k_start: int = 0,
    window: int | None = None,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` (at ``q_start ..``) over ``k``/``v`` (at ``k_start ..``) with the causal
    rule, an optional window and optional soft-capping; returns ``(O, LSE)`` (see module doc)."""
    lq, lk = q.shape[2], k.shape[2]
    q_last = q_start + lq - 1
    lo = k_start if window is None else max(k_start, q_start - window + 1)
    hi = min(k_start + lk, q_last + 1)  # exclusive: keys after the last query are never visible
    if lq == 0 or hi <= lo:
        return empty_partial(q, v.shape[-1])
    k, v = k[:, :, lo - k_start : hi - k_start], v[:, :, lo - k_start : hi - k_start]
    k_start, lk = lo, hi - lo
    window_covers = window is None or q_last - k_start < window
    if softcap is None and window_covers:
        if k_start + lk - 1 <= q_start:  # every key precedes every query
            return attention_with_lse(q, k, v, scale, causal=False)
        if k_start + lk - lq == q_start:  # keys end with the queries: bottom-right causal
            return attention_with_lse(q, k, v, scale, causal=True)
    if q.is_cuda and not reference_only():
        fused = _fused_cuda()
        if fused is not None and fused.supported(q):
            return fused.positioned_attention(q, k, v, scale, q_start, k_start, window, softcap)
    return masked_attention_with_lse_math(q, k, v, scale, q_start, k_start, window, softcap)


def _fused_cuda():
    """``kernels.triton_variants``, imported on the first CUDA call; ``None`` without Triton."""
    try:
        from kernels import triton_variants
    except ImportError:
        return None
    return triton_variants


def masked_attention_with_lse_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    q_start: int,
    k_start: int,
    window: int | None,
    softcap: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 ground truth for ``positioned_attention_with_lse``: explicit scores and mask
    (``kernels.reference.attention_with_lse_math`` with positions, the one copy of that math)."""
    return attention_with_lse_math(
        q, k, v, scale, q_start=q_start, k_start=k_start, window=window, softcap=softcap
    )
