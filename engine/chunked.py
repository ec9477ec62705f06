"""Run each MLP over a long block a slice of tokens at a time (issue 16).

The MLP's gate, up and their product are ``3 x tokens x intermediate`` activations: 5.25 GiB for a
64K-token block at Llama-3.1-8B's shape in bf16, 21 GiB for a 256K dense prefill, and phase 1's
largest transient by far. The MLP treats every token on its own, so running it over slices of
``MLP_CHUNK_TOKENS`` and writing each slice's output into one buffer computes the same result
(tests/test_chunked.py) with the intermediates bounded by the slice. The attention projections are
left whole: their outputs are Q, K and V themselves, which attention needs in full, so slicing
them would save nothing.

As ``engine.fused`` does, the model's own MLP modules get a ``forward`` on the instance that calls
the one they had (transformers' or the fused one), so the modeling code stays the model's.
"""

from __future__ import annotations

import types

import torch

_MARK = "_starcli_chunked"


def _chunkable(module: torch.nn.Module) -> bool:
    """A dense MLP: a module named ``*MLP`` that is not a mixture of experts (those route per
    token too, but return router logits beside the output in some families)."""
    name = type(module).__name__
    return name.endswith("MLP") and not any(hasattr(module, a) for a in ("experts", "router", "gate"))


def _chunked_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    forward, size = getattr(self, _MARK)
    tokens = x.shape[-2] if x.dim() == 3 else 0
    if args or kwargs or tokens <= size:
        return forward(x, *args, **kwargs)
    first = forward(x[:, :size])
    out = first.new_empty((x.shape[0], tokens, first.shape[-1]))
    out[:, :size] = first
    del first
    for start in range(size, tokens, size):
        out[:, start : start + size] = forward(x[:, start : start + size])
    return out


def chunk_tokens(module: torch.nn.Module) -> int | None:
    """The slice of tokens ``chunk_mlps`` gave this MLP, or None (it runs whole). A caller that
    runs the MLP's steps itself (``engine.fused``'s layer over several tokens) slices by it too."""
    entry = getattr(module, _MARK, None)
    return entry[1] if entry else None


def chunk_mlps(model: torch.nn.Module, tokens: int) -> int:
    """Make every dense MLP of ``model`` run over at most ``tokens`` tokens at a time, around
    whatever ``forward`` it has now (idempotent: a forward replaced since, e.g. by
    ``engine.fused``, is wrapped anew); returns how many MLPs are chunked."""
    count = 0
    for module in model.modules():
        if not _chunkable(module):
            continue
        current = module.forward
        if getattr(current, "__func__", None) is _chunked_forward:
            forward = getattr(module, _MARK)[0]
        else:
            forward = current
        setattr(module, _MARK, (forward, tokens))
        module.forward = types.MethodType(_chunked_forward, module)
        count += 1
    return count
