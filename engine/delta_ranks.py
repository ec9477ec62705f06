"""Phase 1 with the delta correction across ranks (issue 15; one rank: ``kernels.delta``).

A block's exact rows need every earlier block's keys *at the same layer*, and those live on other
ranks. So with ``--correction delta`` on several ranks, phase 1 runs layer-synchronously: each
rank runs one forward pass over all its blocks at their global positions (ring mode's shape), and
in every layer the attention function (cache phase ``delta``):

1. computes Star's output for each of its blocks (causal over the block, full over the anchor);
2. all-gathers its sampled rows (every ``stride``-th row of every block but block 0) with each
   row's cutoff (its block's first global index);
3. attends every rank's rows to its own keys before their cutoff (an empty partial where none is),
   and all-gathers those partials; each rank merges its rows' partials from every rank with the
   row's own causal partial by LSE: exact attention for the sampled rows;
4. adds each sampled row's difference to Star's output to the rows after it in its block.

Communication per layer and rank: the sampled queries (``n / stride`` rows of ``Hq x D`` over all
ranks, gathered by every rank) and the partials (``(D + 1)`` floats per row and head from every
rank). A rank with no blocks still takes part in both collectives of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import attention_with_lse, empty_partial, merge_partials, spread_deltas


@dataclass(frozen=True)
class DeltaBlocks:
    """This rank's blocks for the layer-synchronous pass: ``(local start, local stop, global
    start)`` each, in order; the rank's first global token; the anchor length; the stride."""

    spans: tuple[tuple[int, int, int], ...]
    rank_start: int
    anchor: int
    stride: int

    @property
    def holds_first_block(self) -> bool:
        return bool(self.spans) and self.spans[0][2] == 0


def delta_attention(cache, layer_idx: int, q, k, v, scale: float) -> torch.Tensor:
    """One layer of the layer-synchronous corrected phase 1 on this rank ([B, Hq, L, D])."""
    info: DeltaBlocks = cache.delta_blocks
    if info.holds_first_block:
        anchor_k, anchor_v = k[:, :, : info.anchor], v[:, :, : info.anchor]
    else:
        anchor_k, anchor_v = cache.anchor_kv(layer_idx)
    out = q.new_empty((*q.shape[:3], v.shape[-1]), dtype=torch.float32)
    rows_q, rows_o, rows_lse, cutoffs, groups = [], [], [], [], []
    for local_start, local_stop, global_start in info.spans:
        qb = q[:, :, local_start:local_stop]
        own_o, own_lse = attention_with_lse(
            qb, k[:, :, local_start:local_stop], v[:, :, local_start:local_stop], scale, causal=True
        )
        if global_start == 0 or anchor_k is None or anchor_k.shape[2] == 0:
            star = own_o.float()
        else:
            anchor = attention_with_lse(qb, anchor_k, anchor_v, scale, causal=False)
            star = merge_partials([own_o, anchor[0]], [own_lse, anchor[1]], out_dtype=torch.float32)[0]
        out[:, :, local_start:local_stop] = star
        if global_start > 0:
            rows = slice(0, local_stop - local_start, info.stride)
            rows_q.append(qb[:, :, rows])
            rows_o.append(own_o[:, :, rows])
            rows_lse.append(own_lse[:, :, rows])
            cutoffs.append(torch.full((rows_q[-1].shape[2],), global_start, dtype=torch.long))
            groups.append((local_start, local_stop))
    sampled = torch.cat(rows_q, dim=2) if rows_q else q[:, :, :0]
    cut = torch.cat(cutoffs) if cutoffs else torch.zeros(0, dtype=torch.long)
    far_o, far_lse = exchange(cache.comm, sampled, cut, k, v, info.rank_start, scale)
    if not groups:
        return out.to(q.dtype)
    own_o, own_lse = torch.cat(rows_o, dim=2), torch.cat(rows_lse, dim=2)
    exact = merge_partials([own_o, far_o], [own_lse, far_lse], out_dtype=torch.float32)[0]
    at = 0
    for local_start, local_stop in groups:
        length = local_stop - local_start
        count = -(-length // info.stride)
        block_exact = exact[:, :, at : at + count]
        at += count
        block = out[:, :, local_start:local_stop]
        spread_deltas(block, block_exact, info.stride, out=block)
    return out.to(q.dtype)


def exchange(comm, sampled, cut, k, v, rank_start: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial of this rank's sampled rows over every rank's keys before each row's cutoff
    (merged over ranks); ``k``/``v`` this rank's keys (None: it holds none)."""
    queries = comm.all_gather_rows(sampled, dim=2)
    cuts = comm.all_gather_rows(cut.to(sampled.device), dim=0)
    partials = []
    for rows, row_cut in zip(queries, cuts, strict=True):
        partials.append(_partial_before(rows, row_cut, k, v, rank_start, scale))
    packed = torch.cat([torch.cat([o.float(), lse.unsqueeze(-1)], dim=-1) for o, lse in partials], dim=2)
    mine = comm.rank
    start = sum(q.shape[2] for q in queries[:mine])
    stop = start + queries[mine].shape[2]
    gathered = comm.all_gather_rows(packed.contiguous(), dim=2, same_size=True)
    stacked = torch.stack([g[:, :, start:stop] for g in gathered])
    return merge_partials(stacked[..., :-1], stacked[..., -1], out_dtype=torch.float32)


def _partial_before(rows, row_cut, k, v, rank_start: int, scale: float):
    """``rows`` attended to this rank's keys whose global index is below their row's cutoff; the
    rows come grouped by block, so each run of equal cutoffs is one unmasked call."""
    v_dim = rows.shape[-1] if v is None else v.shape[-1]
    if rows.shape[2] == 0:
        return empty_partial(rows, v_dim)
    held = 0 if k is None else k.shape[2]
    outs, lses = [], []
    values, counts = torch.unique_consecutive(row_cut, return_counts=True)
    at = 0
    for cutoff, count in zip(values.tolist(), counts.tolist(), strict=True):
        group = rows[:, :, at : at + count]
        at += count
        keys = max(0, min(held, cutoff - rank_start))
        if keys == 0:
            o, lse = empty_partial(group, v_dim)
        else:
            o, lse = attention_with_lse(group, k[:, :, :keys], v[:, :, :keys], scale, causal=False)
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)
