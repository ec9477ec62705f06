"""Route a model's RMSNorm, SiLU MLP and rotary embedding through the fused kernels of
``kernels.fused`` (CUDA, on by default; ``EngineOptions.fused``).

The modeling code stays the model's own: norm and MLP modules of the known Llama-family classes
get a ``forward`` on the instance that calls the same submodules and parameters, and the modeling
module's ``apply_rotary_pos_emb`` is wrapped. Every wrapper checks its inputs and hands anything
it was not written for (CPU tensors, float32, odd head sizes, another ``unsqueeze_dim``) to the
original code, so CPU runs and the exactness tests see eager transformers unchanged.

Unlike ``EngineOptions.compile`` (``engine.compiled``) this costs no compilation on first use beyond
three small Triton kernels (cached on disk by Triton), which matters for a command-line tool:
compiling took 15 s on first use and 9 s with a warm cache on an H100 (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import types

import torch

from engine.support import FUSED_MODEL_TYPES

# Classes whose forward is exactly Llama's (weight * norm(x).to(dtype); down(act(gate) * up)).
NORM_CLASSES = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"}
MLP_CLASSES = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"}
ROPE_MODEL_TYPES = FUSED_MODEL_TYPES
_MARK = "_starcli_fused"


def _fusable(x: torch.Tensor) -> bool:
    return x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)


def _norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if _fusable(hidden_states) and w.dtype == hidden_states.dtype and hidden_states.is_contiguous():
        if hidden_states.shape[-1] == w.shape[-1] and w.is_contiguous():
            from kernels.fused import rms_norm

            return rms_norm(hidden_states, w, self.variance_epsilon)
    return type(self).forward(self, hidden_states)


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    gate, up = self.gate_proj(x), self.up_proj(x)
    if _fusable(gate) and gate.dtype == up.dtype and gate.is_contiguous() and up.is_contiguous():
        from kernels.fused import silu_mul

        return self.down_proj(silu_mul(gate, up))
    return self.down_proj(self.act_fn(gate) * up)


def _wrap_rope(original):
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        unsqueeze_dim = kwargs.get("unsqueeze_dim", args[0] if args else 1)
        extra = len(args) > 1 or any(key != "unsqueeze_dim" for key in kwargs)
        ok = not extra and unsqueeze_dim == 1 and q.dim() == 4 and k.dim() == 4 and cos.dim() == 3
        if ok:
            d = q.shape[-1]
            half = d // 2
            ok = (
                _fusable(q)
                and q.dtype == k.dtype == cos.dtype == sin.dtype
                and d % 2 == 0
                and half & (half - 1) == 0
                and k.shape[-1] == d
                and cos.shape == sin.shape
                and cos.shape[-1] == d
                and cos.shape[1] == q.shape[2] == k.shape[2]
                and cos.shape[0] in (1, q.shape[0])
                and q.stride(-1) == k.stride(-1) == cos.stride(-1) == sin.stride(-1) == 1
            )
        if not ok:
            return original(q, k, cos, sin, *args, **kwargs)
        from kernels.fused import rope

        return rope(q, cos, sin), rope(k, cos, sin)

    setattr(apply_rotary_pos_emb, _MARK, True)
    apply_rotary_pos_emb.__wrapped__ = original
    return apply_rotary_pos_emb


def fuse_pointwise(model: torch.nn.Module) -> dict[str, int]:
    """Install the fused paths on ``model`` (idempotent); returns how many of each were installed."""
    counts = {"norm": 0, "mlp": 0, "rope": 0}
    act_ok = getattr(model.config, "hidden_act", None) in ("silu", "swish")
    for module in model.modules():
        name = type(module).__name__
        if getattr(module, _MARK, False):
            continue
        if name in NORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_norm_forward, module)
            setattr(module, _MARK, True)
            counts["norm"] += 1
        elif name in MLP_CLASSES and act_ok and all(hasattr(module, a) for a in ("gate_proj", "up_proj")):
            module.forward = types.MethodType(_mlp_forward, module)
            setattr(module, _MARK, True)
            counts["mlp"] += 1
    if getattr(model.config, "model_type", None) in ROPE_MODEL_TYPES:
        for cls in {type(m) for m in model.modules()}:
            modeling = sys.modules.get(cls.__module__)
            fn = getattr(modeling, "apply_rotary_pos_emb", None)
            if fn is not None and not getattr(fn, _MARK, False) and cls.__name__.endswith("Attention"):
                modeling.apply_rotary_pos_emb = _wrap_rope(fn)
                counts["rope"] += 1
    return counts
