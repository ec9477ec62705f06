"""Exact causal attention of this rank's two zigzag chunks over every rank's chunks: the
attention ``ring`` mode's phase 1 computes in every layer (ring-flash-attention's zigzag variant,
on the shared LSE merge).

In every layer the ranks pass their KV around the ring with non-blocking sends while attending to
the KV they hold; the partials are merged by LSE, which makes the result dense causal attention
exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from engine.plan import ZigzagLayout
from kernels import attention_with_lse, merge_partials


def ring_attention(q, k, v, scale: float, comm, layout: ZigzagLayout, variant=None) -> torch.Tensor:
    """Exact causal attention of this rank's two chunks over every rank's chunks (see module doc).

    ``q`` [B, Hq, La+Lb, D], ``k``/``v`` [B, Hkv, La+Lb, D]; returns O like ``q``. ``variant``
    (``engine.variant_attention.Variant``, not plain): every chunk pair at its global indices, so
    windows and soft-capping apply as in dense attention; the sink is added once per query.
    """
    world, rank = comm.world_size, comm.rank
    mine_a, mine_b = layout.chunks(rank)
    la = layout.length(mine_a)
    qa, qb = q[:, :, :la], q[:, :, la:]
    parts_a: list[tuple[torch.Tensor, torch.Tensor]] = []
    parts_b: list[tuple[torch.Tensor, torch.Tensor]] = []
    kv = torch.stack([k, v])  # one buffer travels: [2, B, Hkv, L, D]
    group = getattr(comm, "group", None)
    for step in range(world):
        owner = (rank - step) % world
        pending, incoming = [], None
        if step < world - 1:  # start passing KV on before computing on it (overlap)
            source = (rank - step - 1) % world
            length = sum(layout.length(c) for c in layout.chunks(source))
            incoming = kv.new_empty((*kv.shape[:3], length, kv.shape[-1]))
            ops = [
                dist.P2POp(dist.isend, kv, _peer(group, (rank + 1) % world), group),
                dist.P2POp(dist.irecv, incoming, _peer(group, (rank - 1) % world), group),
            ]
            pending = dist.batch_isend_irecv(ops)
        first = layout.length(layout.chunks(owner)[0])
        k_first, v_first = kv[0][:, :, :first], kv[1][:, :, :first]
        if variant is not None:
            k_a, k_b = (layout.span(c)[0] for c in layout.chunks(owner))
            k_rest, v_rest = kv[0][:, :, first:], kv[1][:, :, first:]
            for parts, qx, chunk in ((parts_a, qa, mine_a), (parts_b, qb, mine_b)):
                q_start = layout.span(chunk)[0]
                parts.append(variant.attend(qx, k_first, v_first, scale, q_start, k_a))
                parts.append(variant.attend(qx, k_rest, v_rest, scale, q_start, k_b))
        elif step == 0:
            parts_a.append(attention_with_lse(qa, k_first, v_first, scale, causal=True))
            parts_b.append(attention_with_lse(qb, k_first, v_first, scale, causal=False))
            parts_b.append(
                attention_with_lse(qb, kv[0][:, :, first:], kv[1][:, :, first:], scale, causal=True)
            )
        elif owner < rank:  # its early chunk precedes both of mine; its late chunk follows both
            parts_a.append(attention_with_lse(qa, k_first, v_first, scale, causal=False))
            parts_b.append(attention_with_lse(qb, k_first, v_first, scale, causal=False))
        else:  # both its chunks precede my late chunk; neither precedes my early one
            parts_b.append(attention_with_lse(qb, kv[0], kv[1], scale, causal=False))
        for work in pending:
            work.wait()
        if incoming is not None:
            kv = incoming
    if variant is not None:
        parts_a = variant.with_sink(parts_a, qa, v.shape[-1])
        parts_b = variant.with_sink(parts_b, qb, v.shape[-1])
    out_a, _ = merge_partials([o for o, _ in parts_a], [s for _, s in parts_a], out_dtype=q.dtype)
    out_b, _ = merge_partials([o for o, _ in parts_b], [s for _, s in parts_b], out_dtype=q.dtype)
    return torch.cat([out_a, out_b], dim=2)


def _peer(group, rank: int) -> int:
    return dist.get_global_rank(group, rank) if group is not None else rank
