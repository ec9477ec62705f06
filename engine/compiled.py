"""Optional ``torch.compile`` of the model's pointwise work (``EngineOptions.compile``, CUDA only).

Phase 1 at 16K-token blocks spends ~20% of its GPU time outside matmuls and attention (H100
profile, docs/benchmarks.md): RMSNorm's float32 round trips, RoPE on strided views, SiLU-times-up.
Compiling the norm, MLP and attention modules fuses those; the cache update and the attention
function are excluded (``torch.compiler.disable``), so the compiled graphs break around them and
our kernels run as they are. Off by default: the first compile costs tens of seconds.
"""

from __future__ import annotations

import torch

_SUFFIXES = ("RMSNorm", "MLP", "Attention")


def compile_pointwise(model: torch.nn.Module) -> int:
    """Compile every norm, MLP and attention module in place (dynamic shapes: one graph serves
    every block length); returns how many modules were wrapped."""
    # Layer indices are plain ints on the modules: without this every layer would recompile.
    torch._dynamo.config.allow_unspec_int_on_nn_module = True
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith(_SUFFIXES):
            module.compile(dynamic=True)
            count += 1
    return count
