"""The engine's Python API: a model, a context, one or more queries in; events out.

Every rank runs the same ``Engine.run`` (SPMD); only the query host yields tokens and stats,
every rank yields its own phase-1 progress.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from transformers import DynamicCache

from engine import attention, compiled, fused, graphs, ring
from engine.cache import AnchorShare, StarCache
from engine.chat import encode
from engine.comm import Comm
from engine.errors import BadSettingError, ContextTooLongError, EmptyInputError
from engine.events import ContextEncoded, Event, Progress, QueryStarted, Stats
from engine.generate import DecodeResult, GenerationSettings, decode_loop
from engine.modelcall import call_model
from engine.plan import BlockPlan, CostModel, plan_blocks

MODES = ("star", "global", "ring")


@dataclass
class Request:
    """What to compute. ``context`` and each query are text or token ids; queries are
    answered one after another over one phase-1 encoding of the context."""

    context: str | list[int]
    queries: list[str | list[int]]
    mode: str = "star"
    block_size: int = 2048
    anchor_size: int | None = None  # None: same as the block size
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        data["generation"] = GenerationSettings(**data.get("generation", {}))
        return cls(**data)


@dataclass
class EncodedContext:
    """Phase 1's result on one rank, reusable by any number of queries."""

    tokens: int
    plan: BlockPlan | None
    cache: StarCache | DynamicCache
    seconds: float
    rank_seconds: list[float] = field(default_factory=list)  # each rank's own phase-1 time


def position_limit(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


class Engine:
    """Star Attention (and the dense baseline) over a transformers causal LM."""

    def __init__(self, model, tokenizer, comm: Comm | None = None, load_s: float = 0.0):
        attention.register()
        self.model = model
        self.tokenizer = tokenizer
        self.comm = comm or Comm()
        self.load_s = load_s
        self.device = next(model.parameters()).device
        if compiled.compile_enabled(self.device):
            compiled.compile_pointwise(model)
        elif fused.fused_enabled(self.device):  # fused Triton norm/MLP/RoPE: no compile on first use
            fused.fuse_pointwise(model)
        self.eos_ids = _eos_ids(model, tokenizer)

    # --- public ---------------------------------------------------------------------------
    def run(self, request: Request) -> Iterator[Event]:
        """Validate, encode the context once, answer every query; yields events as they happen."""
        if request.mode not in MODES:
            raise BadSettingError(f"unknown attention mode {request.mode!r}; choose one of {MODES}")
        request.generation.validate()
        context = self._ids(request.context, "context")
        if not request.queries:
            raise EmptyInputError("no query given: ask at least one question")
        queries = [self._ids(q, "query") for q in request.queries]
        limit = position_limit(self.model)
        for q in queries:
            needed = len(context) + len(q) + request.generation.max_tokens
            if limit is not None and needed > limit:
                raise ContextTooLongError(needed, limit, len(context), len(q), request.generation.max_tokens)
        if request.mode == "global" and self.comm.world_size > 1:
            raise BadSettingError("global (dense) attention runs on one rank; use --nproc 1 or star")
        plan = None
        if request.mode == "star":
            # Validates block/anchor sizes before any work starts.
            plan = plan_blocks(
                len(context),
                request.block_size,
                request.anchor_size,
                self.comm.world_size,
                CostModel.for_config(self.model.config),
                share_anchor=self.shares_anchor,
            )
        if request.mode == "ring":  # exact causal ring attention over the same ranks (engine/ring.py)
            if len(context) < 2 * self.comm.world_size:
                raise BadSettingError(f"ring mode needs at least {2 * self.comm.world_size} context tokens")
            encoded = yield from ring.encode_ring(self, context, request.block_size)
        else:
            encoded = yield from self.encode_context(context, plan)
        for index, q in enumerate(queries):
            yield from self.answer(encoded, q, request.generation, index, request)

    def encode_context(self, context: list[int], plan: BlockPlan | None) -> Iterator[Event]:
        """Phase 1 (star) or a dense causal prefill (global); returns an ``EncodedContext``."""
        with torch.inference_mode():
            if plan is None:
                return (yield from self._encode_dense(context))
            return (yield from self._encode_star(context, plan))

    def answer(
        self,
        encoded: EncodedContext,
        query: list[int],
        settings: GenerationSettings,
        index: int = 0,
        request: Request | None = None,
    ) -> Iterator[Event]:
        """Phase 2 and decoding for one query over an encoded context."""
        n, m = encoded.tokens, len(query)
        if self.comm.is_host:
            yield QueryStarted(query=index, query_tokens=m)
        started = time.perf_counter()
        sink: list[DecodeResult] = []
        with torch.inference_mode():
            if isinstance(encoded.cache, StarCache):
                cache = encoded.cache
                cache.start_query(m + settings.max_tokens)
                self._set_attention(attention.ATTN_NAME)
            else:
                cache = encoded.cache
                extra = cache.get_seq_length() - n  # forget an earlier query's tokens
                if extra > 0:
                    cache.crop(-extra)  # negative: "remove this many" in every transformers 5.x
                self._set_attention("sdpa")
            position = n + m
            logits = self._forward(query, n, cache)

            def step(token: int) -> torch.Tensor:
                nonlocal position
                out = self._forward([token], position, cache)
                position += 1
                return out

            decode = step
            if isinstance(cache, StarCache):  # replay the step as a CUDA graph where possible
                decode = graphs.DecodeStep(self.model, cache, position, self.device, step)
            try:
                yield from decode_loop(
                    logits, decode, self.comm, settings, self.tokenizer, self.eos_ids, index, started, sink
                )
            finally:
                if isinstance(decode, graphs.DecodeStep):
                    decode.close()
                    self.last_decode_step = decode  # capture time and fallback reason, for benchmarks
        result = sink[0]
        if self.comm.is_host:
            plan = encoded.plan
            rate = (result.tokens - 1) / result.decode_s if result.tokens > 1 and result.decode_s > 0 else 0.0
            yield Stats(
                query=index,
                answer=result.text,
                mode="star" if plan else "global",
                world_size=self.comm.world_size,
                block_size=plan.block_size if plan else n,
                anchor_size=plan.anchor if plan else 0,
                context_tokens=n,
                query_tokens=m,
                generated_tokens=result.tokens,
                stop_reason=result.stop_reason,
                load_s=self.load_s,
                context_encoding_s=encoded.seconds,
                ttft_s=result.ttft_s,
                decode_s=result.decode_s,
                decode_tokens_per_s=rate,
                blocks_per_rank=plan.blocks_per_rank() if plan else [1],
            )

    # --- phases ---------------------------------------------------------------------------
    def _encode_dense(self, context: list[int]) -> Iterator[Event]:
        self._set_attention("sdpa")
        started = time.perf_counter()
        cache = DynamicCache(config=self.model.config)
        self._forward(context, 0, cache)
        seconds = time.perf_counter() - started
        yield Progress(stage="phase1", done=1, total=1, rank=0, tokens=len(context))
        yield ContextEncoded(context_tokens=len(context), blocks=1, blocks_per_rank=[1], seconds=seconds)
        return EncodedContext(len(context), None, cache, seconds)

    def _encode_star(self, context: list[int], plan: BlockPlan) -> Iterator[Event]:
        self._set_attention(attention.ATTN_NAME)
        rank = self.comm.rank
        own = plan.ranks[rank]
        start, stop = plan.rank_span(rank)
        cache = StarCache(self.model.config.num_hidden_layers, self.comm, stop - start, len(context))
        started = time.perf_counter()
        share = self._anchor_share(plan, cache)
        if share is None and plan.rank_needs_anchor(rank) and own[0] != 0:
            cache.mode = "anchor"
            self._forward(context[: plan.anchor], 0, cache)
            yield Progress(stage="anchor", done=1, total=1, rank=rank, tokens=plan.anchor)
        for done, i in enumerate(own, start=1):
            b_start, b_stop = plan.blocks[i]
            cache.start_block(b_start - start)
            cache.anchor_send = share if i == 0 else None  # rank 0 sends the anchor during block 0
            self._forward(context[b_start:b_stop], b_start, cache)
            cache.anchor_send = None
            if i == 0 and plan.rank_needs_anchor(rank):
                cache.use_anchor_from_context(plan.anchor)
            yield Progress(stage="phase1", done=done, total=len(own), rank=rank, tokens=b_stop - b_start)
        if share is not None:
            share.finish()
        cache.drop_anchor()
        if self.device.type == "cuda":  # GPU work is asynchronous: time it, not its launches
            torch.cuda.synchronize(self.device)
        mine = time.perf_counter() - started
        self.comm.barrier()
        seconds = time.perf_counter() - started
        per_rank = self.comm.gather_floats(mine)
        if self.comm.is_host:
            yield ContextEncoded(
                context_tokens=len(context),
                blocks=len(plan.blocks),
                blocks_per_rank=plan.blocks_per_rank(),
                seconds=seconds,
            )
        return EncodedContext(len(context), plan, cache, seconds, per_rank)

    # --- helpers --------------------------------------------------------------------------
    @property
    def shares_anchor(self) -> bool:
        """Whether star plans let rank 0 send the anchor's KV instead of every rank recomputing
        it (several ranks of a process group; ``STARCLI_SHARE_ANCHOR=0`` turns it off)."""
        return (
            self.comm.world_size > 1
            and self.comm.can_broadcast
            and os.environ.get("STARCLI_SHARE_ANCHOR", "1") != "0"
        )

    def _anchor_share(self, plan: BlockPlan, cache: StarCache) -> AnchorShare | None:
        """This rank's side of the anchor transfer, or None where every rank computes its own."""
        world = self.comm.world_size
        if not (plan.anchor_shared and plan.anchor > 0 and world > 1 and self.comm.can_broadcast):
            return None
        if not any(plan.rank_needs_anchor(r) for r in range(1, world)):
            return None
        config = self.model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        shape = (1, kv_heads, plan.anchor, head_dim)
        layers = config.num_hidden_layers
        if self.comm.rank == 0:
            return AnchorShare(self.comm, layers, plan.anchor, True, shape)
        dtype = next(self.model.parameters()).dtype
        share = AnchorShare(self.comm, layers, plan.anchor, False, shape, dtype=dtype, device=self.device)
        cache.anchor_recv = share
        return share

    def _forward(self, ids: list[int], position: int, cache) -> torch.Tensor:
        """Run the model on ``ids`` at global positions ``position ..``; return the last logits."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        positions = torch.arange(position, position + len(ids), device=self.device).unsqueeze(0)
        extra = {"star_cache": cache} if isinstance(cache, StarCache) else {}
        return call_model(self.model, input_ids, positions, cache, **extra).logits[:, -1]

    def _set_attention(self, name: str) -> None:
        if self.model.config._attn_implementation != name:
            self.model.set_attn_implementation(name)

    def _ids(self, value: str | list[int], what: str) -> list[int]:
        ids = encode(self.tokenizer, value) if isinstance(value, str) else list(value)
        if not ids:
            raise EmptyInputError(f"the {what} is empty: give it at least one token of text")
        return ids


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids
