"""``global`` mode: dense causal attention through transformers' own sdpa, on one rank; the
baseline Star Attention is measured against."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import torch
from transformers import DynamicCache

from engine.events import Event, Progress
from engine.runner import EncodedContext, ModelRunner, finish_phase1
from engine.runplan import RunPlan


def encode_context(
    runner: ModelRunner, context: list[int], plan: RunPlan
) -> Generator[Event, None, EncodedContext]:
    """A plain causal prefill of the whole context."""
    runner.use_attention("sdpa")
    started = time.perf_counter()
    cache = DynamicCache(config=runner.model.config)
    runner.forward(context, 0, cache)
    runner.synchronize()
    mine = time.perf_counter() - started
    yield Progress(stage="phase1", done=1, total=1, rank=0, tokens=len(context))
    return (yield from finish_phase1(runner, plan, cache, started, mine))


def start_query(runner: ModelRunner, encoded: EncodedContext, capacity: int) -> DynamicCache:
    """The context's cache, without any earlier query's tokens."""
    runner.use_attention("sdpa")
    cache = encoded.cache
    extra = cache.get_seq_length() - encoded.tokens  # forget an earlier query's tokens
    if extra > 0:
        cache.crop(-extra)  # negative: "remove this many" in every transformers 5.x
    return cache


def decode_step(
    runner: ModelRunner, cache, position: int, eager: Callable[[int], torch.Tensor]
) -> Callable[[int], torch.Tensor]:
    return eager
