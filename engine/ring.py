"""``ring`` mode: exact causal attention over the same ranks, the baseline Star Attention is
measured against (ring-flash-attention's zigzag variant, on the shared LSE merge).

Phase 1: the context is cut into ``2W`` chunks and rank ``r`` encodes chunks ``r`` and
``2W-1-r`` (zigzag: every rank gets the same causal work). In every layer the ranks pass their
KV around the ring with non-blocking sends while attending to the KV they hold; the partials are
merged by LSE, which makes the result dense causal attention exactly. Each rank keeps its own
chunks' KV, so phase 2 and decoding are star's, unchanged (its merge is exact for any split of
the keys).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from engine.cache import StarCache
from engine.events import ContextEncoded, Event, Progress
from engine.modelcall import call_model
from engine.plan import BlockPlan
from kernels import attention_with_lse, merge_partials


@dataclass(frozen=True)
class ZigzagLayout:
    """Chunk ``i`` is ``[bounds[i], bounds[i+1])``; rank ``r`` holds chunks ``r`` and ``2W-1-r``."""

    bounds: tuple[int, ...]
    world_size: int

    @classmethod
    def build(cls, tokens: int, world_size: int) -> ZigzagLayout:
        parts = 2 * world_size
        sizes = [tokens // parts + (1 if i < tokens % parts else 0) for i in range(parts)]
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        return cls(tuple(bounds), world_size)

    def chunks(self, rank: int) -> tuple[int, int]:
        return rank, 2 * self.world_size - 1 - rank

    def span(self, chunk: int) -> tuple[int, int]:
        return self.bounds[chunk], self.bounds[chunk + 1]

    def length(self, chunk: int) -> int:
        return self.bounds[chunk + 1] - self.bounds[chunk]

    def positions(self, rank: int) -> list[int]:
        a, b = (self.span(c) for c in self.chunks(rank))
        return list(range(*a)) + list(range(*b))

    def as_plan(self, block_size: int) -> BlockPlan:
        """A ``BlockPlan`` view (no anchor) so that stats and phase 2 treat ring like star."""
        parts = 2 * self.world_size
        blocks = tuple(self.span(i) for i in range(parts))
        ranks = tuple(self.chunks(r) for r in range(self.world_size))
        return BlockPlan(self.bounds[-1], block_size, 0, blocks, ranks)


def ring_attention(q, k, v, scale: float, comm, layout: ZigzagLayout) -> torch.Tensor:
    """Exact causal attention of this rank's two chunks over every rank's chunks (see module doc).

    ``q`` [B, Hq, La+Lb, D], ``k``/``v`` [B, Hkv, La+Lb, D]; returns O like ``q``.
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
        if step == 0:
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
    out_a, _ = merge_partials([o for o, _ in parts_a], [s for _, s in parts_a], out_dtype=q.dtype)
    out_b, _ = merge_partials([o for o, _ in parts_b], [s for _, s in parts_b], out_dtype=q.dtype)
    return torch.cat([out_a, out_b], dim=2)


def _peer(group, rank: int) -> int:
    return dist.get_global_rank(group, rank) if group is not None else rank


def encode_ring(engine, context: list[int], block_size: int = 0) -> Iterator[Event]:
    """Phase 1 of ``ring`` mode on this rank; returns an ``EncodedContext`` (like star's)."""
    from engine.api import EncodedContext
    from engine.attention import ATTN_NAME

    comm = engine.comm
    layout = ZigzagLayout.build(len(context), comm.world_size)
    positions = layout.positions(comm.rank)
    cache = StarCache(engine.model.config.num_hidden_layers, comm, len(positions), len(context))
    cache.mode, cache.block_offset, cache.ring_layout = "ring", 0, layout
    engine._set_attention(ATTN_NAME)
    started = time.perf_counter()
    with torch.inference_mode():
        if positions:
            ids = torch.tensor([[context[p] for p in positions]], dtype=torch.long, device=engine.device)
            pos = torch.tensor([positions], dtype=torch.long, device=engine.device)
            call_model(engine.model, ids, pos, cache, star_cache=cache)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    mine = time.perf_counter() - started
    yield Progress(stage="phase1", done=1, total=1, rank=comm.rank, tokens=len(positions))
    comm.barrier()
    seconds = time.perf_counter() - started
    per_rank = comm.gather_floats(mine)
    plan = layout.as_plan(block_size or max(1, layout.length(0)))
    if comm.is_host:
        yield ContextEncoded(
            context_tokens=len(context),
            blocks=2 * comm.world_size,
            blocks_per_rank=plan.blocks_per_rank(),
            seconds=seconds,
        )
    return EncodedContext(len(context), plan, cache, seconds, per_rank)
