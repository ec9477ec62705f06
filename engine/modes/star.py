"""``star`` mode: Star Attention (the paper). Phase 1 encodes each block behind the anchor with no
communication; phase 2 attends the query exactly to every rank's blocks (``engine.attention``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import torch

from engine import graphs
from engine.attention import ATTN_NAME
from engine.cache import AnchorShare, StarCache
from engine.delta_ranks import DeltaBlocks, exchange
from engine.events import Event, Progress
from engine.runner import EncodedContext, ModelRunner, finish_phase1
from engine.runplan import RunPlan
from engine.settings import Correction


def encode_context(
    runner: ModelRunner, context: list[int], plan: RunPlan
) -> Generator[Event, None, EncodedContext]:
    """This rank's blocks, each behind the anchor (computed once, or received from rank 0)."""
    runner.use_attention(ATTN_NAME)
    layout, comm = plan.layout, runner.comm
    rank = comm.rank
    own = layout.ranks[rank]
    start, stop = layout.rank_span(rank)
    layers, room = runner.model.config.num_hidden_layers, plan.query_tokens + plan.max_tokens
    cache = StarCache(layers, comm, stop - start, len(context), tail_room=room, kv_fp8=plan.kv_fp8)
    cache.context_spans = ((start, stop),)
    cache.delta_stride = plan.delta_stride if plan.correction == Correction.DELTA else 0
    started = time.perf_counter()
    if cache.delta_stride and comm.world_size > 1:
        yield from _encode_layer_synchronous(runner, context, plan, cache)
        cache.drop_anchor()
        runner.synchronize()
        return (yield from finish_phase1(runner, plan, cache, started, time.perf_counter() - started))
    share = _anchor_share(runner, plan, cache)
    if share is None and layout.rank_needs_anchor(rank) and own[0] != 0:
        cache.phase = "anchor"
        runner.forward(context[: layout.anchor], 0, cache)
        yield Progress(stage="anchor", done=1, total=1, rank=rank, tokens=layout.anchor)
    for done, i in enumerate(own, start=1):
        b_start, b_stop = layout.blocks[i]
        cache.start_block(b_start - start)
        cache.anchor_send = share if i == 0 else None  # rank 0 sends the anchor during block 0
        cache.keep_anchor = layout.anchor if i == 0 and layout.rank_needs_anchor(rank) else 0
        runner.forward(context[b_start:b_stop], plan.block_position(i), cache)
        cache.anchor_send, cache.keep_anchor = None, 0
        if i == 0 and layout.rank_needs_anchor(rank):
            cache.use_anchor_from_context(layout.anchor)
        yield Progress(stage="phase1", done=done, total=len(own), rank=rank, tokens=b_stop - b_start)
    if share is not None:
        share.finish()
    cache.drop_anchor()
    runner.synchronize()
    return (yield from finish_phase1(runner, plan, cache, started, time.perf_counter() - started))


def _encode_layer_synchronous(
    runner: ModelRunner, context: list[int], plan: RunPlan, cache: StarCache
) -> Generator[Event, None, None]:
    """The delta correction on several ranks (``engine.delta_ranks``): all of this rank's blocks in
    one forward pass, so that every layer's exchange of sampled rows meets every rank at that
    layer. Each rank computes its own anchor (a broadcast would interleave with the exchange)."""
    layout, rank = plan.layout, runner.comm.rank
    own = layout.ranks[rank]
    start, stop = layout.rank_span(rank)
    if layout.rank_needs_anchor(rank) and own[0] != 0:
        cache.phase = "anchor"
        runner.forward(context[: layout.anchor], 0, cache)
        yield Progress(stage="anchor", done=1, total=1, rank=rank, tokens=layout.anchor)
    blocks = [layout.blocks[i] for i in own]
    spans = tuple((b_start - start, b_stop - start, b_start) for b_start, b_stop in blocks)
    cache.delta_blocks = DeltaBlocks(spans, start, layout.anchor, cache.delta_stride)
    cache.phase, cache.block_offset = "delta", 0
    if own:
        runner.forward(context[start:stop], start, cache)
    else:
        _take_part_without_blocks(runner, cache)
    cache.delta_blocks = None
    yield Progress(stage="phase1", done=len(own), total=len(own), rank=rank, tokens=stop - start)


def _take_part_without_blocks(runner: ModelRunner, cache: StarCache) -> None:
    """A rank holding no block still joins every layer's exchange (with no rows and no keys)."""
    config = runner.model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    dtype = next(runner.model.parameters()).dtype
    rows = torch.empty((1, heads, 0, head_dim), dtype=dtype, device=runner.device)
    cut = torch.zeros(0, dtype=torch.long)
    for _ in range(config.num_hidden_layers):
        exchange(cache.comm, rows, cut, None, None, 0, 1.0)


def _anchor_share(runner: ModelRunner, plan: RunPlan, cache: StarCache) -> AnchorShare | None:
    """This rank's side of the anchor transfer, or None where every rank computes its own."""
    layout, comm = plan.layout, runner.comm
    world = comm.world_size
    if not (layout.anchor_shared and layout.anchor > 0 and world > 1 and comm.can_broadcast):
        return None
    if not any(layout.rank_needs_anchor(r) for r in range(1, world)):
        return None
    config = runner.model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    shape = (1, kv_heads, layout.anchor, head_dim)
    layers = config.num_hidden_layers
    if comm.rank == 0:
        return AnchorShare(comm, layers, layout.anchor, True, shape)
    dtype = next(runner.model.parameters()).dtype
    share = AnchorShare(comm, layers, layout.anchor, False, shape, dtype=dtype, device=runner.device)
    cache.anchor_recv = share
    return share


def start_query(runner: ModelRunner, encoded: EncodedContext, capacity: int) -> StarCache:
    """The rank's context cache, ready for a query of up to ``capacity`` tokens with its answer."""
    runner.use_attention(ATTN_NAME)
    cache = encoded.cache
    cache.start_query(capacity)
    return cache


def continue_query(runner: ModelRunner, encoded: EncodedContext, capacity: int) -> StarCache:
    """The rank's cache with the conversation so far, ready for ``capacity`` more tokens."""
    runner.use_attention(ATTN_NAME)
    cache = encoded.cache
    cache.continue_query(capacity, encoded.tail_tokens)
    return cache


def decode_step(
    runner: ModelRunner, cache: StarCache, position: int, eager: Callable[[int], torch.Tensor]
) -> graphs.DecodeStep:
    """The decode step replayed as a CUDA graph where possible (``EngineOptions.cuda_graphs``)."""
    return graphs.DecodeStep(runner.model, cache, position, runner.device, eager, runner.options.cuda_graphs)
