"""``global`` mode: dense causal attention through transformers' own sdpa (eager where the model
refuses sdpa), on one rank; the baseline Star Attention is measured against. Its cache is
transformers' ``DynamicCache`` whose layers append in place (``GrowingLayer``)
instead of re-concatenating every token."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from engine.events import Event, Progress
from engine.runner import EncodedContext, ModelRunner, finish_phase1
from engine.runplan import RunPlan


def encode_context(
    runner: ModelRunner, context: list[int], plan: RunPlan
) -> Generator[Event, None, EncodedContext]:
    """A plain causal prefill of the whole context."""
    runner.use_dense_attention()
    started = time.perf_counter()
    cache = growing_dynamic_cache(runner.model.config, room=plan.query_tokens + plan.max_tokens)
    runner.forward(context, 0, cache)
    runner.synchronize()
    mine = time.perf_counter() - started
    yield Progress(stage="phase1", done=1, total=1, rank=0, tokens=len(context))
    return (yield from finish_phase1(runner, plan, cache, started, mine))


def start_query(runner: ModelRunner, encoded: EncodedContext, capacity: int) -> DynamicCache:
    """The context's cache, without any earlier query's tokens, with room for ``capacity`` more."""
    runner.use_dense_attention()
    cache = encoded.cache
    extra = cache.get_seq_length() - encoded.tokens  # forget an earlier query's tokens
    if extra > 0:
        cache.crop(-extra)  # negative: "remove this many" in every transformers 5.x
    reserve_tokens(cache, capacity)
    return cache


def continue_query(runner: ModelRunner, encoded: EncodedContext, capacity: int) -> DynamicCache:
    """The context's cache with the conversation so far, with room for ``capacity`` more."""
    runner.use_dense_attention()
    reserve_tokens(encoded.cache, capacity)
    return encoded.cache


def decode_step(
    runner: ModelRunner, cache, position: int, eager: Callable[[int], torch.Tensor]
) -> Callable[[int], torch.Tensor]:
    return eager


class GrowingLayer(DynamicLayer):
    """transformers' ``DynamicLayer`` with its keys and values at the front of a buffer that has
    room for more: a new token is written in place. ``DynamicLayer`` concatenates the whole cache
    for every token, which on CPU took ~45% of a decode step at 3K tokens of context. ``keys`` and
    ``values`` stay what transformers expects (views of the filled part), so ``crop`` and the rest
    of ``DynamicLayer`` work unchanged. The first write (the prefill) leaves ``room`` tokens free."""

    def __init__(self, room: int = 0) -> None:
        super().__init__()
        self.room = room
        self.buffer_k: torch.Tensor | None = None
        self.buffer_v: torch.Tensor | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        start = self.get_seq_length() if self.is_initialized else 0
        length = key_states.shape[-2]
        if not self._fits(start + length):  # the planned room first, a quarter more after that
            self.reserve(
                length + (self.room if start == 0 else max(start // 4, 64)), key_states, value_states
            )
        stop = start + length
        self.buffer_k[..., start:stop, :] = key_states
        self.buffer_v[..., start:stop, :] = value_states
        self.keys, self.values = self.buffer_k[..., :stop, :], self.buffer_v[..., :stop, :]
        self.device, self.is_initialized = key_states.device, True
        return self.keys, self.values

    def reserve(
        self, room: int, key_like: torch.Tensor | None = None, value_like: torch.Tensor | None = None
    ) -> None:
        """Make room for ``room`` more tokens: one copy of the filled part, none if it has the room."""
        filled = self.get_seq_length() if self.is_initialized else 0
        if self._fits(filled + room):
            return
        key_like, value_like = (self.keys, self.values) if filled else (key_like, value_like)
        if key_like is None or value_like is None:
            self.room = max(self.room, room)  # nothing stored yet: the first update allocates
            return
        size = filled + room
        buffer_k = key_like.new_empty((*key_like.shape[:-2], size, key_like.shape[-1]))
        buffer_v = value_like.new_empty((*value_like.shape[:-2], size, value_like.shape[-1]))
        if filled:
            buffer_k[..., :filled, :] = self.keys
            buffer_v[..., :filled, :] = self.values
        self.buffer_k, self.buffer_v = buffer_k, buffer_v
        self.keys, self.values = buffer_k[..., :filled, :], buffer_v[..., :filled, :]

    def _fits(self, tokens: int) -> bool:
        """Whether the buffer holds ``keys``/``values`` (not tensors transformers put there itself,
        e.g. after reordering a batch) and has room for ``tokens`` in all."""
        k, v = self.buffer_k, self.buffer_v
        if k is None or v is None or tokens > k.shape[-2]:
            return False
        if not self.is_initialized or self.get_seq_length() == 0:
            return True
        return self.keys.data_ptr() == k.data_ptr() and self.values.data_ptr() == v.data_ptr()


def growing_dynamic_cache(config, room: int = 0) -> DynamicCache:
    """transformers' ``DynamicCache`` for ``config`` with every plain ``DynamicLayer`` a
    ``GrowingLayer`` leaving ``room`` tokens after the prefill (sliding-window layers keep their
    own, already bounded, storage)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = GrowingLayer
    return cache


def reserve_tokens(cache: Cache, room: int) -> None:
    """Room for ``room`` more tokens in every growing layer of ``cache`` (once per query; a copy
    only where the prefill left too little)."""
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            layer.reserve(room)
