"""Delta Attention's correction of a Star Attention phase-1 block (Willette, Lee, Hwang 2025).

Star's block attention sees the anchor and the block itself, not the blocks in between, and that
shifts the distribution of the attention outputs. The correction computes exact attention for
every ``stride``-th query row of the block (rows ``0, s, 2s, ..``) over every earlier context key
plus the block itself (causal), takes the difference to Star's output on those rows, and adds it
to the rows that follow each sampled row up to the next one (row ``j`` gets the delta of row
``s * (j // s)``: the sampled row at or before it, as the paper repeats each delta over its group).
Sampled rows get the exact output itself, so ``stride = 1`` *is* dense causal attention.

The block's own causal partial is shared by Star's output and the exact rows: the exact rows cost
one unmasked call of ``L / s`` queries over the earlier keys, and the merges. On a GPU the rest is
memory traffic over the block's rows, kept to one pass: the delta is broadcast over each group of
``s`` rows (no repeated copy) and added straight into the output, which is allocated in the
``[B, L, H, D]`` layout transformers transposes back to, so that transpose copies nothing.
"""

from __future__ import annotations

import torch

from kernels.dispatch import attention_with_lse, attention_with_lse_fp8, merge_partials


def delta_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    anchor_k: torch.Tensor | None,
    anchor_v: torch.Tensor | None,
    earlier_k: torch.Tensor,
    earlier_v: torch.Tensor,
    scale: float,
    stride: int,
    earlier_scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Star's block attention (anchor + causal block) with the delta correction from exact rows
    over ``earlier_k``/``earlier_v`` (every context key before the block, the anchor's included;
    ``earlier_scales``: they are an fp8 cache's values, read as phase 2 reads them).

    Shapes as ``kernels.dispatch.block_attention``; returns the output ``[B, Hq, L, D]`` in
    ``q``'s dtype (the LSE of a corrected row is not defined: nothing downstream needs it)."""
    if stride < 1:
        raise ValueError(f"the delta stride must be at least 1 (got {stride})")
    own_o, own_lse = attention_with_lse(q, k, v, scale, causal=True)
    if anchor_k is None or anchor_k.shape[2] == 0:
        star = own_o.float()
    else:
        anchor_o, anchor_lse = attention_with_lse(q, anchor_k, anchor_v, scale, causal=False)
        star = merge_partials([own_o, anchor_o], [own_lse, anchor_lse], out_dtype=torch.float32)[0]
    if earlier_k.shape[2] == 0:
        return star.to(q.dtype)
    rows = slice(0, q.shape[2], stride)
    sampled = q[:, :, rows].contiguous()
    if earlier_scales is not None:
        far_o, far_lse = attention_with_lse_fp8(sampled, earlier_k, earlier_v, earlier_scales, scale)
    else:
        far_o, far_lse = attention_with_lse(sampled, earlier_k, earlier_v, scale, causal=False)
    exact = merge_partials(
        [own_o[:, :, rows], far_o], [own_lse[:, :, rows], far_lse], out_dtype=torch.float32
    )[0]
    b, h, length, d = star.shape
    out = torch.empty((b, length, h, d), dtype=q.dtype, device=q.device).transpose(1, 2)
    return spread_deltas(star, exact, stride, out)


def spread_deltas(star: torch.Tensor, exact: torch.Tensor, stride: int, out: torch.Tensor) -> torch.Tensor:
    """``out`` = Star's rows plus the delta (``exact`` minus Star) of the sampled row at or before
    each, the sampled rows (every ``stride``-th) ``exact`` itself; ``out`` may be ``star``.

    ``star`` [..., L, D] float32; ``exact`` [..., ceil(L / stride), D]; ``out`` like ``star``, any
    float dtype and strides. One pass over the rows: each delta is broadcast over its group."""
    length = star.shape[-2]
    delta = exact.float() - star[..., ::stride, :]
    full = length - length % stride
    if full:
        groups = (full // stride, stride)
        torch.add(
            star[..., :full, :].unflatten(-2, groups),
            delta[..., : full // stride, :].unsqueeze(-2),
            out=out[..., :full, :].unflatten(-2, groups),
        )
    if full < length:  # a last, shorter group
        torch.add(star[..., full:, :], delta[..., full // stride :, :], out=out[..., full:, :])
    out[..., ::stride, :] = exact  # exact, not exact up to the subtraction's rounding
    return out
