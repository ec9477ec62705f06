"""Star Attention for layers that use a variant: a sliding window, logit soft-capping or sinks
(the arguments transformers hands the attention function: ``sliding_window``, ``softcap``,
``s_aux``). A sibling of the plain paths in ``engine.attention``, which stay untouched.

Where tokens sit, for the window rule (DESIGN.md, "Attention variants that decoders use"):
- phase 1: ``[anchor, block]`` is one sequence, the anchor at ``0..a-1`` and the block right after
  it (block 0 has no anchor), whatever the RoPE positions (``global`` or ``local``);
- phase 2: every token at its global index: context token ``j`` at ``j``, the query and answer
  after the whole context. A query then sees only the last ``W`` tokens, wherever their rank.
Sinks add one partial, on one rank only (the query host in phase 2), so they count once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.cache import StarCache
from engine.errors import UnsupportedModelError
from kernels import empty_partial, merge_partials, positioned_attention_with_lse, sink_partial


@dataclass(frozen=True)
class Variant:
    """The variant one attention call uses; ``plain`` when it uses none."""

    window: int | None = None
    softcap: float | None = None
    sinks: torch.Tensor | None = None

    @property
    def plain(self) -> bool:
        return self.window is None and self.softcap is None and self.sinks is None

    @property
    def name(self) -> str:
        """What this variant uses, in words (for a refusal)."""
        used = [("sliding-window", self.window), ("soft-capped", self.softcap), ("sink", self.sinks)]
        return ", ".join(word for word, value in used if value is not None) + " attention layers"

    def attend(self, q, k, v, scale: float, q_start: int, k_start: int) -> tuple[torch.Tensor, torch.Tensor]:
        return positioned_attention_with_lse(q, k, v, scale, q_start, k_start, self.window, self.softcap)

    def with_sink(self, partials: list, q: torch.Tensor, v_dim: int) -> list:
        """``partials`` plus the sink's, where this layer has sinks."""
        return partials if self.sinks is None else [*partials, sink_partial(self.sinks, q, v_dim)]


def variant_of(module: torch.nn.Module, kwargs: dict) -> Variant:
    """The variant of this call, from the model's own arguments; refuses what it cannot honour."""
    config = getattr(module, "config", None)
    model_type = getattr(config, "model_type", None) or type(module).__name__
    if kwargs.get("is_causal") is False:
        raise UnsupportedModelError(model_type, "non-causal (bidirectional) attention")
    window, softcap, sinks = kwargs.get("sliding_window"), kwargs.get("softcap"), kwargs.get("s_aux")
    layer_types = getattr(config, "layer_types", None)
    layer = getattr(module, "layer_idx", None)
    if window is None and layer_types and layer is not None and layer_types[layer] == "sliding_attention":
        raise UnsupportedModelError(model_type, f"sliding-window layer {layer} called with no window")
    return Variant(int(window) if window else None, float(softcap) if softcap else None, sinks)


def merged(partials: list, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if len(partials) == 1:
        return partials[0]
    return merge_partials([o for o, _ in partials], [s for _, s in partials], out_dtype=dtype)


def anchor_attention(variant: Variant, query, key, value, scale) -> torch.Tensor:
    """The anchor alone: the start of the sequence, causal."""
    parts = [variant.attend(query, key, value, scale, 0, 0)]
    return merged(variant.with_sink(parts, query, value.shape[-1]), query.dtype)[0]


def block_attention(variant: Variant, query, key, value, anchor_k, anchor_v, scale) -> torch.Tensor:
    """A block right after the anchor (``[anchor, block]`` as one sequence)."""
    a = 0 if anchor_k is None else anchor_k.shape[2]
    parts = [variant.attend(query, key, value, scale, a, a)]
    if a:
        parts.append(variant.attend(query, anchor_k, anchor_v, scale, a, 0))
    return merged(variant.with_sink(parts, query, value.shape[-1]), query.dtype)[0]


def query_attention(variant: Variant, cache: StarCache, layer_idx: int, query, key, value, scale):
    """Phase 2 on this rank: its context spans at their global indices, the host's tail after the
    whole context (causal), the sink on the host; merged across ranks."""
    if cache.graph_slot is not None:  # positions move inside a graph: keep this path eager
        raise RuntimeError("attention variants run eagerly, not under a CUDA graph")
    q_start = cache.context_tokens + cache.query_offset
    ctx_k, ctx_v = cache.context_kv_dequantized(layer_idx, query.dtype)
    parts = []
    if ctx_k is not None:
        for local, (g_start, g_stop) in zip(cache.local_offsets(), cache.context_spans, strict=True):
            stop = local + g_stop - g_start
            k, v = ctx_k[:, :, local:stop], ctx_v[:, :, local:stop]
            parts.append(variant.attend(query, k, v, scale, q_start, g_start))
    if cache.comm.is_host:
        parts.append(variant.attend(query, key, value, scale, q_start, cache.context_tokens))
        parts = variant.with_sink(parts, query, value.shape[-1])
    if not parts:
        parts.append(empty_partial(query, value.shape[-1]))
    out, lse = merged(parts, query.dtype)
    return cache.comm.merge_across_ranks(out, lse)
