"""Phase 1 keeps each layer's K and V, nothing else: the last layer's attention output and MLP need
not run there.

A context block's forward pass exists to fill the cache. At the last decoder layer, K and V come
from the layer's input (its norm and two projections); the layer's attention output, its MLP and
the final norm only feed the block's logits, which phase 1 discards. So in phases ``anchor`` and
``block`` (``StarCache.output_unused``) the attention function returns without attending
(``engine.attention``), and for the Llama-family layers of ``engine.fused.LAYER_CLASSES`` this
module's forward stops the layer after its attention module has written K and V (its O projection
runs on a zero output; no MLP). At 32 layers that is 1/32 of phase 1's attention and most of 1/32
of its matmuls (docs/benchmarks.md). Nothing on the way to K and V changes, so neither does the
cache (tests/test_last_layer.py checks it against the paper's phase 1 on the dense model).

Other layer classes still skip the attention itself; their MLP then runs on a zero output.
"""

from __future__ import annotations

import types

import torch

from engine.modelcall import current_attention_kwargs

_MARK = "_starcli_kv_only"


def _kv_only_forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    forward = getattr(self, _MARK)
    cache = kwargs.get("star_cache")
    if cache is None:  # a model whose layers drop the attention kwargs (as engine.attention reads)
        cache = current_attention_kwargs().get("star_cache")
    output_unused = getattr(cache, "output_unused", None)
    if args or output_unused is None or not output_unused(self.self_attn.layer_idx):
        return forward(hidden_states, *args, **kwargs)
    # The attention module projects K and V, rotates K and hands both to the cache (its attention
    # call returns at once); what it returns, and everything after it in the layer, is unused.
    self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
    return hidden_states


def skip_unused_output(model: torch.nn.Module) -> bool:
    """Give the last decoder layer of ``model`` (a Llama-family class) ``_kv_only_forward`` around
    whatever forward it has now (idempotent; a forward replaced since, e.g. by ``engine.fused``,
    is wrapped anew). Returns whether the layer is covered."""
    from engine.fused import LAYER_CLASSES

    layers = [m for m in model.modules() if type(m).__name__ in LAYER_CLASSES]
    if not layers:
        return False
    last = layers[-1]
    if not (hasattr(last, "self_attn") and hasattr(last, "input_layernorm")):
        return False
    if not hasattr(last.self_attn, "layer_idx"):
        return False
    current = last.forward
    if getattr(current, "__func__", None) is not _kv_only_forward:
        setattr(last, _MARK, current)
        last.forward = types.MethodType(_kv_only_forward, last)
    return True
