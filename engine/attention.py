"""The attention function transformers calls for ``attn_implementation="star"``.

The model's own modeling code computes Q/K/V and RoPE from the global ``position_ids`` we pass,
updates the ``StarCache`` and calls this function; what it computes depends on the cache's phase:

- ``anchor``: plain causal attention over the anchor tokens;
- ``block``: a context block attends fully to the anchor and causally to itself;
- ``query``: query/generated tokens attend to this rank's context with *no* mask, the host also
  causally to the tail, and the ranks' partials are merged by a distributed softmax.

Layers with a sliding window, soft-capping or sinks go to ``engine.variant_attention`` instead.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface

from engine import variant_attention as variants
from engine.cache import StarCache
from engine.delta_ranks import delta_attention
from engine.errors import UnsupportedModelError
from engine.modelcall import current_attention_kwargs
from engine.ring_attention import ring_attention
from engine.variant_attention import Variant, variant_of
from kernels import (
    attention_with_lse,
    attention_with_lse_fp8,
    block_attention,
    decode_attention,
    delta_block_attention,
    empty_partial,
    merge_partials,
)

ATTN_NAME = "star"


@torch.compiler.disable  # our kernels are already fused; compiled callers break the graph here
def star_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    star_cache: StarCache | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    if star_cache is None:  # a model whose layers drop the attention kwargs (StableLM)
        star_cache = current_attention_kwargs().get("star_cache")
    if star_cache is None:
        raise RuntimeError("star attention needs the engine's StarCache (pass star_cache=...)")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    variant = variant_of(module, kwargs)
    if not variant.plain:
        if star_cache.delta_stride:
            config = getattr(module, "config", None)
            model_type = getattr(config, "model_type", None) or type(module).__name__
            raise UnsupportedModelError(model_type, "--correction delta with " + variant.name)
        star_cache.eager_only = True
    if star_cache.output_unused(module.layer_idx):  # phase 1's last layer: K/V are in the cache
        return query.new_zeros(query.shape[0], query.shape[2], query.shape[1], value.shape[-1]), None
    if not variant.plain:
        out = _variant_attention(variant, star_cache, module.layer_idx, query, key, value, scale)
        return out.transpose(1, 2).contiguous(), None
    if star_cache.phase == "anchor":
        out, _ = attention_with_lse(query, key, value, scale, causal=True)
    elif star_cache.phase == "block":
        anchor_k, anchor_v = star_cache.anchor_kv(module.layer_idx)
        earlier = star_cache.earlier_kv(module.layer_idx) if star_cache.delta_stride else None
        if earlier is not None:
            scales = star_cache.earlier_scales(module.layer_idx)  # fp8: read as stored, not widened
            out = delta_block_attention(
                query, key, value, anchor_k, anchor_v, *earlier, scale, star_cache.delta_stride, scales
            )
        else:
            out, _ = block_attention(query, key, value, anchor_k, anchor_v, scale)
    elif star_cache.phase == "ring":
        out = ring_attention(query, key, value, scale, star_cache.comm, star_cache.ring_layout)
    elif star_cache.phase == "delta":
        out = delta_attention(star_cache, module.layer_idx, query, key, value, scale)
    else:
        out = _query_attention(star_cache, module.layer_idx, query, key, value, scale)
    return out.transpose(1, 2).contiguous(), None


def _variant_attention(variant: Variant, cache: StarCache, layer_idx: int, query, key, value, scale):
    """``engine.variant_attention`` for the phase the cache is in."""
    if cache.phase == "anchor":
        return variants.anchor_attention(variant, query, key, value, scale)
    if cache.phase == "block":
        anchor_k, anchor_v = cache.anchor_kv(layer_idx)
        return variants.block_attention(variant, query, key, value, anchor_k, anchor_v, scale)
    if cache.phase == "ring":
        return ring_attention(query, key, value, scale, cache.comm, cache.ring_layout, variant)
    return variants.query_attention(variant, cache, layer_idx, query, key, value, scale)


def _query_attention(cache: StarCache, layer_idx: int, query, key, value, scale) -> torch.Tensor:
    if query.shape[2] == 1 and cache.graph_slot is None:
        joined = cache.joined_kv(layer_idx, key.shape[2])
        if joined is not None:  # an eager decode step on the host: context and tail in one call
            out, lse = attention_with_lse(query, *joined, scale, causal=False)
            return cache.comm.merge_across_ranks(out, lse)
    ctx_k, ctx_v = cache.context_kv(layer_idx)
    ctx_scales = cache.context_scales(layer_idx)  # None unless the context KV is fp8
    if cache.graph_slot is not None:  # decode step under a CUDA graph: one fused pass
        host = cache.comm.is_host
        out, lse = decode_attention(
            query,
            ctx_k,
            ctx_v,
            key if host else None,
            value if host else None,
            cache.graph_kv_len if host else None,
            scale,
            ctx_scales,
        )
        return cache.comm.merge_across_ranks(out, lse)
    if ctx_k is None or ctx_k.shape[2] == 0:
        o, lse = empty_partial(query, value.shape[-1])  # a rank with no blocks
    elif ctx_scales is not None:
        o, lse = attention_with_lse_fp8(query, ctx_k, ctx_v, ctx_scales, scale)
    else:
        o, lse = attention_with_lse(query, ctx_k, ctx_v, scale, causal=False)
    outs, lses = [o], [lse]
    if cache.comm.is_host:
        o, lse = attention_with_lse(query, key, value, scale, causal=True)
        outs.append(o)
        lses.append(lse)
    out, lse = merge_partials(outs, lses, out_dtype=query.dtype) if len(outs) > 1 else (outs[0], lses[0])
    return cache.comm.merge_across_ranks(out, lse)


def register() -> None:
    """Make ``attn_implementation="star"`` known to transformers (idempotent)."""
    AttentionInterface.register(ATTN_NAME, star_attention_forward)
