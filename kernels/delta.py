"""Delta Attention's correction of a Star Attention phase-1 block (Willette, Lee, Hwang 2025).

Star's block attention sees the anchor and the block itself, not the blocks in between, and that
shifts the distribution of the attention outputs. The correction computes exact attention for
every ``stride``-th query row of the block (rows ``0, s, 2s, ..``) over every earlier context key
plus the block itself (causal), takes the difference to Star's output on those rows, and adds it
to the rows that follow each sampled row up to the next one (row ``j`` gets the delta of row
``s * (j // s)``: the sampled row at or before it, as the paper repeats each delta over its group).
Sampled rows get the exact output itself, so ``stride = 1`` *is* dense causal attention.

The block's own causal partial is shared by Star's output and the exact rows: the exact rows cost
one unmasked call of ``L / s`` queries over the earlier keys, and the merges.
"""

from __future__ import annotations

import torch

from kernels.dispatch import attention_with_lse, merge_partials


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
) -> torch.Tensor:
    """Star's block attention (anchor + causal block) with the delta correction from exact rows
    over ``earlier_k``/``earlier_v`` (every context key before the block, the anchor's included).

    Shapes as ``kernels.dispatch.block_attention``; returns the output ``[B, Hq, L, D]`` in
    ``q``'s dtype (the LSE of a corrected row is not defined: nothing downstream needs it)."""
    if stride < 1:
        raise ValueError(f"the delta stride must be at least 1 (got {stride})")
    length = q.shape[2]
    own_o, own_lse = attention_with_lse(q, k, v, scale, causal=True)
    if anchor_k is None or anchor_k.shape[2] == 0:
        star = own_o.float()
    else:
        anchor_o, anchor_lse = attention_with_lse(q, anchor_k, anchor_v, scale, causal=False)
        star = merge_partials([own_o, anchor_o], [own_lse, anchor_lse], out_dtype=torch.float32)[0]
    if earlier_k.shape[2] == 0:
        return star.to(q.dtype)
    rows = slice(0, length, stride)
    sampled = q[:, :, rows].contiguous()
    far_o, far_lse = attention_with_lse(sampled, earlier_k, earlier_v, scale, causal=False)
    exact = merge_partials(
        [own_o[:, :, rows], far_o], [own_lse[:, :, rows], far_lse], out_dtype=torch.float32
    )[0]
    delta = exact - star[:, :, rows]
    out = star + delta.repeat_interleave(stride, dim=2)[:, :, :length]
    out[:, :, rows] = exact  # the sampled rows are exact, not exact up to the subtraction's rounding
    return out.to(q.dtype)
