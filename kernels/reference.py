"""Plain-torch attention with log-sum-exp, the ground truth every faster kernel is checked against.

Shapes follow transformers' attention interface: ``q`` is ``[B, Hq, Lq, D]``, ``k``/``v`` are
``[B, Hkv, Lk, D]`` with ``Hq`` a multiple of ``Hkv`` (grouped-query attention). The LSE is
returned in float32 as ``[B, Hq, Lq]`` so that partial results over disjoint key sets can be
merged exactly (see :func:`kernels.merge.merge_partials`).

``causal`` means *bottom-right aligned*: query ``i`` of ``Lq`` sees keys ``0 .. Lk - Lq + i``.
That is what a chunk of new tokens at the end of a key sequence needs; for ``Lq == Lk`` it is the
ordinary causal mask.
"""

from __future__ import annotations

import functools

import torch

# Scores materialised per query chunk are capped at this many elements (~256 MB of float32).
_SCORE_BUDGET = 1 << 26


def empty_partial(q: torch.Tensor, v_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial result of attending to no keys: O = 0, LSE = -inf (merges as a no-op)."""
    b, h, lq, d = q.shape
    out = q.new_zeros(b, h, lq, v_dim or d)
    lse = torch.full((b, h, lq), float("-inf"), dtype=torch.float32, device=q.device)
    return out, lse


def attention_with_lse_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    causal: bool = False,
    *,
    q_start: int | None = None,
    k_start: int = 0,
    window: int | None = None,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention computed in float32 with explicit scores; returns (O in q's dtype, LSE fp32).

    The one float32 ground truth: every masked variant is this loop with another mask. By default
    the mask is ``causal`` (bottom-right) or none. Given ``q_start``, queries and keys sit on one
    axis instead (query ``i`` at ``q_start + i``, key ``j`` at ``k_start + j``): a key is visible
    when it does not follow the query and, with ``window``, lies fewer than ``window`` tokens before
    it; ``softcap`` applies ``cap * tanh(s / cap)`` to the scaled scores before the mask
    (``kernels.variants.masked_attention_with_lse_math``).
    """
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    if lk == 0 or lq == 0:
        return empty_partial(q, v.shape[-1])
    if q_start is None and causal:
        q_start, k_start = lk - lq, 0  # bottom-right: the queries are the keys' last lq positions
    groups = hq // hkv
    # [B, Hkv, G, Lq, D] lets every query head of a group share its KV head without copying K/V.
    qg = q.float().reshape(b, hkv, groups, lq, d)
    kf, vf = k.float(), v.float()
    cols = torch.arange(lk, device=q.device).unsqueeze(0) + k_start
    chunk = max(1, _SCORE_BUDGET // max(1, hq * lk * b))
    outs, lses = [], []
    for start in range(0, lq, chunk):
        stop = min(lq, start + chunk)
        scores = torch.einsum("bhgqd,bhkd->bhgqk", qg[:, :, :, start:stop], kf) * scale
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if q_start is not None:
            rows = torch.arange(start, stop, device=q.device).unsqueeze(1) + q_start
            hidden = cols > rows
            if window is not None:
                hidden = hidden | (cols <= rows - window)
            scores = scores.masked_fill(hidden, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        # A fully masked row has lse = -inf; exp(-inf - -inf) would be NaN, so shift by 0 there.
        safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
        probs = torch.exp(scores - safe.unsqueeze(-1))
        outs.append(torch.einsum("bhgqk,bhkd->bhgqd", probs, vf))
        lses.append(lse)
    out = torch.cat(outs, dim=3).reshape(b, hq, lq, v.shape[-1])
    lse = torch.cat(lses, dim=3).reshape(b, hq, lq)
    return out.to(q.dtype), lse


def attention_with_lse_cpu_flash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's fused CPU flash kernel, which returns the LSE. Its causal mask is top-left aligned,
    so a causal call with ``1 < Lq != Lk`` goes to the math version; one query token sees every key
    either way (the decode step), so it runs unmasked.

    Grouped-query K/V go in as they are where the kernel takes them (``flash_takes_gqa``): copying
    them to every query head cost more than the attention itself when decoding on CPU.
    """
    lq, lk = q.shape[2], k.shape[2]
    if causal and lq == 1:
        causal = False
    if lk == 0 or lq == 0 or (causal and lq != lk):
        return attention_with_lse_math(q, k, v, scale, causal)
    # the kernel reads each row along D without looking at its stride: a transposed view (an
    # fp8 cache's V) gave wrong output, silently
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and not flash_takes_gqa():
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
    return out, lse.float()


@functools.cache
def flash_takes_gqa() -> bool:
    """Whether this torch's CPU flash kernel attends several query heads to one K/V head itself
    (checked once, against the math version, on a tiny input)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 3, 8, generator=g)
    k, v = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 5, 8, generator=g)
    try:
        out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=0.3)[0]
    except RuntimeError:
        return False
    expected, _ = attention_with_lse_math(q, k, v, 0.3)
    return out.shape == expected.shape and bool(torch.allclose(out, expected, atol=1e-5))
