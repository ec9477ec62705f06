"""What every attention mode needs to drive the model: its device and ranks, a forward pass at
given positions, the attention implementation to use, and the phase-1 result they hand back."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import torch

from engine import chunked, compiled, fused, last_layer
from engine.cache import StarCache
from engine.comm import Comm
from engine.events import ContextEncoded, Event
from engine.modelcall import call_model
from engine.runplan import RunPlan
from engine.settings import MLP_CHUNK_TOKENS, EngineOptions, Kernels
from engine.support import needs_eager_attention
from kernels import use_reference_kernels


@dataclass
class EncodedContext:
    """Phase 1's result on one rank, reusable by any number of queries."""

    tokens: int
    plan: RunPlan
    cache: StarCache | object  # a StarCache, or transformers' DynamicCache in global mode
    seconds: float
    rank_seconds: list[float] = field(default_factory=list)  # each rank's own phase-1 time
    context_cache: str = "off"  # hit (loaded from disk), miss (encoded, then saved) or off
    save_s: float = 0.0
    # A conversation (``Engine.answer(follow_up=True)``): tokens after the context that the query
    # host's tail holds, and the sampled tokens not yet fed to the model (the last answer's final
    # token, or its end-of-sequence token), which a follow-up feeds first.
    tail_tokens: int = 0
    pending: list[int] = field(default_factory=list)


class ModelRunner:
    """The model of one rank and the engine options it runs under."""

    def __init__(self, model: torch.nn.Module, comm: Comm, options: EngineOptions):
        self.model, self.comm, self.options = model, comm, options
        self.device = next(model.parameters()).device
        use_reference_kernels(options.kernels == Kernels.REFERENCE)
        if self.device.type == "cuda":
            if options.compile:
                compiled.compile_pointwise(model)
            elif options.fused:  # fused Triton norm/MLP/RoPE: no compile on first use
                fused.fuse_pointwise(model)
        if not (self.device.type == "cuda" and options.compile):  # compiled MLPs run whole
            chunked.chunk_mlps(model, MLP_CHUNK_TOKENS)
        last_layer.skip_unused_output(model)  # after engine.fused, whose layer forward it wraps

    def forward(self, ids: list[int], position: int, cache) -> torch.Tensor:
        """Run the model on ``ids`` at positions ``position ..``; return the last token's logits."""
        return self.forward_at(ids, list(range(position, position + len(ids))), cache)

    def forward_at(self, ids: list[int], positions: list[int], cache) -> torch.Tensor:
        """Run the model on ``ids`` at the given positions; return the last token's logits."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        position_ids = torch.tensor([positions], dtype=torch.long, device=self.device)
        extra = {"star_cache": cache} if isinstance(cache, StarCache) else {}
        return call_model(self.model, input_ids, position_ids, cache, **extra).logits[:, -1]

    def use_attention(self, name: str) -> None:
        """Make transformers call attention implementation ``name`` (``sdpa``, ``star``)."""
        if self.model.config._attn_implementation != name:
            self.model.set_attn_implementation(name)

    def use_dense_attention(self) -> None:
        """transformers' own sdpa, or its eager attention where sdpa would drop a variant (soft-capping,
        sinks) or the model refuses sdpa. Decided from the config, not from whether transformers
        accepts sdpa: transformers 5.17 accepted it for Gemma 2 and silently skipped the soft-cap."""
        if needs_eager_attention(self.model.config):
            self.use_attention("eager")
            return
        if self.model.config._attn_implementation in ("sdpa", "eager"):
            return
        try:
            self.model.set_attn_implementation("sdpa")
        except (ValueError, ImportError):
            self.model.set_attn_implementation("eager")

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that a timer measures the work and not its launch."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def finish_phase1(
    runner: ModelRunner, plan: RunPlan, cache, started: float, mine: float
) -> Generator[Event, None, EncodedContext]:
    """The end of every mode's phase 1: wait for every rank, gather each rank's own time
    (``mine``), announce the encoding from the query host, hand back the ``EncodedContext``."""
    comm = runner.comm
    comm.barrier()
    seconds = time.perf_counter() - started
    per_rank = comm.gather_floats(mine)
    if comm.is_host:
        yield ContextEncoded(
            context_tokens=plan.context_tokens,
            blocks=plan.blocks,
            blocks_per_rank=plan.blocks_per_rank(),
            seconds=seconds,
        )
    return EncodedContext(plan.context_tokens, plan, cache, seconds, per_rank)
