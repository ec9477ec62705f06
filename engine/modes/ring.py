"""``ring`` mode: exact causal attention over the same ranks, the baseline Star Attention is
measured against. Phase 1: the context is cut into ``2W`` chunks and rank ``r`` encodes chunks
``r`` and ``2W-1-r`` (``engine.plan.ZigzagLayout``), passing KV around the ring in every layer
(``engine.ring_attention``). Each rank keeps its own chunks' KV, so phase 2 and decoding are
star's, unchanged (its merge is exact for any split of the keys)."""

from __future__ import annotations

import time
from collections.abc import Generator

from engine.attention import ATTN_NAME
from engine.cache import StarCache
from engine.events import Event, Progress
from engine.modes.star import continue_query, decode_step, start_query
from engine.plan import ZigzagLayout
from engine.runner import EncodedContext, ModelRunner, finish_phase1
from engine.runplan import RunPlan

__all__ = ["continue_query", "decode_step", "encode_context", "start_query"]


def encode_context(
    runner: ModelRunner, context: list[int], plan: RunPlan
) -> Generator[Event, None, EncodedContext]:
    """This rank's two zigzag chunks, in one forward pass with ring attention in every layer."""
    comm = runner.comm
    layout = ZigzagLayout.from_plan(plan.layout)
    positions = layout.positions(comm.rank)
    layers, room = runner.model.config.num_hidden_layers, plan.query_tokens + plan.max_tokens
    cache = StarCache(layers, comm, len(positions), len(context), tail_room=room, kv_fp8=plan.kv_fp8)
    cache.phase, cache.block_offset, cache.ring_layout = "ring", 0, layout
    cache.context_spans = tuple(layout.span(c) for c in layout.chunks(comm.rank))
    runner.use_attention(ATTN_NAME)
    started = time.perf_counter()
    if positions:
        runner.forward_at([context[p] for p in positions], positions, cache)
    runner.synchronize()
    mine = time.perf_counter() - started
    yield Progress(stage="phase1", done=1, total=1, rank=comm.rank, tokens=len(positions))
    return (yield from finish_phase1(runner, plan, cache, started, mine))
