"""Route a model's RMSNorm, SiLU MLP and rotary embedding through the fused kernels of
``kernels.fused`` (CUDA, on by default; ``EngineOptions.fused``).

The modeling code stays the model's own: norm and MLP modules of the known Llama-family classes
get a ``forward`` on the instance that calls the same submodules and parameters, and the modeling
module's ``apply_rotary_pos_emb`` is wrapped. For one decode token the projections (Q/K/V in one
launch, O, down, the LM head) and the MLP's gate/up/SiLU (one launch) go through
``kernels.gemv``, which streams the weights faster than cuBLAS's one-row GEMMs. Every wrapper
checks its inputs and hands anything it was not written for (CPU tensors, float32, odd head
sizes, another ``unsqueeze_dim``, several tokens) to the original code, so CPU runs and the
exactness tests see eager transformers unchanged.

Unlike ``EngineOptions.compile`` (``engine.compiled``) this costs no compilation on first use beyond
three small Triton kernels (cached on disk by Triton), which matters for a command-line tool:
compiling took 15 s on first use and 9 s with a warm cache on an H100 (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import sys
import types

import torch
import torch.nn.functional as F

from engine.support import FUSED_MODEL_TYPES

# Classes whose forward is exactly Llama's (weight * norm(x).to(dtype); down(act(gate) * up)).
NORM_CLASSES = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"}
MLP_CLASSES = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"}
ATTENTION_CLASSES = {"LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention"}
# Decoder layers whose forward is Llama's (norm, attention, add; norm, MLP, add) in transformers 5.
LAYER_CLASSES = {"LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"}
ROPE_MODEL_TYPES = FUSED_MODEL_TYPES
_MARK = "_starcli_fused"
_KIND = "_starcli_gemv_kind"
_RESIDUAL = "_starcli_residual"  # set by _layer_forward for the projection's next call only


def _on_gpu(x: torch.Tensor) -> bool:
    """The one device test of every wrapper (tests/interpreter_checks.py lets CPU tensors through
    it, to run the wrappers over Triton's interpreter)."""
    return x.is_cuda


def _fusable(x: torch.Tensor) -> bool:
    return _on_gpu(x) and x.dtype in (torch.bfloat16, torch.float16)


def _norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if _fusable(hidden_states) and w.dtype == hidden_states.dtype and hidden_states.is_contiguous():
        if hidden_states.shape[-1] == w.shape[-1] and w.is_contiguous():
            from kernels.fused import rms_norm

            return rms_norm(hidden_states, w, self.variance_epsilon)
    return type(self).forward(self, hidden_states)


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    g, u = self.gate_proj, self.up_proj
    if _on_gpu(x) and _plain(g) and _plain(u) and g.bias is None and u.bias is None:
        from kernels.gemv import eligible, gemv_silu_mul

        if eligible(x, g.weight, u.weight):  # one decode token: both products and SiLU in one pass
            return self.down_proj(gemv_silu_mul(x, g.weight, u.weight))
    gate, up = g(x), u(x)
    if _fusable(gate) and gate.dtype == up.dtype and gate.is_contiguous() and up.is_contiguous():
        from kernels.fused import silu_mul

        return self.down_proj(silu_mul(gate, up))
    return self.down_proj(self.act_fn(gate) * up)


def _plain(module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear


def _bias_ok(bias: torch.Tensor | None, x: torch.Tensor) -> bool:
    return bias is None or (bias.dtype == x.dtype and bias.is_contiguous() and bias.device == x.device)


def _linear_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, one decode token read through ``kernels.gemv``; plus the residual
    ``_layer_forward`` left for this call, if any (added in the product's launch)."""
    residual = getattr(self, _RESIDUAL, None)
    setattr(self, _RESIDUAL, None)
    if _on_gpu(x):
        from kernels.gemv import eligible, gemv

        fits = residual is None or (residual.dtype == x.dtype and residual.is_contiguous())
        if fits and eligible(x, self.weight) and _bias_ok(self.bias, x):
            return gemv(x, self.weight, self.bias, kind=getattr(self, _KIND, "linear"), residual=residual)
    out = F.linear(x, self.weight, self.bias)
    return out if residual is None else residual + out


def _layer_forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """A Llama-family decoder layer's own forward, except that for one decode token on the GPU
    its two residual adds are made by the O and down projections' launches (``_linear_forward``
    takes the residual from the module): two kernels a layer fewer, the same roundings."""
    o_proj, down = self.self_attn.o_proj, self.mlp.down_proj
    if args or not (_fusable(hidden_states) and hidden_states.numel() == hidden_states.shape[-1]):
        return type(self).forward(self, hidden_states, *args, **kwargs)
    residual = hidden_states.contiguous()
    try:
        setattr(o_proj, _RESIDUAL, residual)
        hidden_states, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
        setattr(down, _RESIDUAL, hidden_states)
        return self.mlp(self.post_attention_layernorm(hidden_states))
    finally:
        setattr(o_proj, _RESIDUAL, None)
        setattr(down, _RESIDUAL, None)


def _fuse_layer(module: torch.nn.Module) -> int:
    """Install ``_layer_forward`` where both projections that take its residuals run
    ``_linear_forward`` (so that each adds it, on any path)."""
    o_proj = getattr(getattr(module, "self_attn", None), "o_proj", None)
    down = getattr(getattr(module, "mlp", None), "down_proj", None)
    fused = [getattr(m, "forward", None) for m in (o_proj, down)]
    if not all(getattr(f, "__func__", None) is _linear_forward for f in fused):
        return 0
    module.forward = types.MethodType(_layer_forward, module)
    setattr(module, _MARK, True)
    return 1


class _QKV:
    """The Q, K and V projections of one attention module: for one decode token all three come
    from one launch (``kernels.gemv.gemv3``) when Q's is asked for, and K's and V's calls, which the
    modeling code makes next on the same input, return theirs. Any other order or input takes
    ``F.linear``, so the result never depends on the call order, only the speed."""

    def __init__(self, q: torch.nn.Linear, k: torch.nn.Linear, v: torch.nn.Linear):
        self.mods = (q, k, v)
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def project(self, which: int, x: torch.Tensor) -> torch.Tensor:
        mod = self.mods[which]
        if which == 0:
            self.pending = None
        if which == 0 and _on_gpu(x):
            weights = [m.weight for m in self.mods]
            biases = [m.bias for m in self.mods]
            from kernels.gemv import eligible, gemv3

            same_bias = all(b is None for b in biases) or all(b is not None for b in biases)
            if same_bias and eligible(x, *weights) and all(_bias_ok(b, x) for b in biases):
                q, k, v = gemv3(x, weights, None if biases[0] is None else biases)
                self.pending = (x, k, v)
                return q
        elif self.pending is not None and self.pending[0] is x:
            out = self.pending[which]
            if which == 2:
                self.pending = None
            return out
        return F.linear(x, mod.weight, mod.bias)


def _fuse_projections(module: torch.nn.Module) -> int:
    """Route an attention module's Q/K/V (together) and O projections through ``kernels.gemv``."""
    names = ("q_proj", "k_proj", "v_proj")
    if not all(_plain(getattr(module, n, None)) for n in names):
        return 0
    qkv = _QKV(*(getattr(module, n) for n in names))
    for which, name in enumerate(names):
        mod = getattr(module, name)
        mod.forward = functools.partial(qkv.project, which)
        setattr(mod, _MARK, True)
    count = 3
    o_proj = getattr(module, "o_proj", None)
    if _plain(o_proj):
        count += _fuse_linear(o_proj)
    return count


def _fuse_linear(module: torch.nn.Module, kind: str = "linear") -> int:
    """``kind``: the launch shape ``kernels.gemv`` uses (``down``: the MLP's long-K product)."""
    if not _plain(module) or getattr(module, _MARK, False):
        return 0
    module.forward = types.MethodType(_linear_forward, module)
    setattr(module, _MARK, True)
    setattr(module, _KIND, kind)
    return 1


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
        from kernels.fused import rope_pair

        return rope_pair(q, k, cos, sin)

    setattr(apply_rotary_pos_emb, _MARK, True)
    apply_rotary_pos_emb.__wrapped__ = original
    return apply_rotary_pos_emb


def fuse_pointwise(model: torch.nn.Module) -> dict[str, int]:
    """Install the fused paths on ``model`` (idempotent); returns how many of each were installed."""
    counts = {"norm": 0, "mlp": 0, "rope": 0, "gemv": 0, "layer": 0}
    act_ok = getattr(model.config, "hidden_act", None) in ("silu", "swish")
    known = getattr(model.config, "model_type", None) in FUSED_MODEL_TYPES
    for module in list(model.modules()):
        name = type(module).__name__
        if getattr(module, _MARK, False):
            continue
        if known and name in ATTENTION_CLASSES and not getattr(getattr(module, "q_proj", None), _MARK, False):
            counts["gemv"] += _fuse_projections(module)
        if known and name in MLP_CLASSES:
            counts["gemv"] += _fuse_linear(getattr(module, "down_proj", None), kind="down")
        if name in NORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_norm_forward, module)
            setattr(module, _MARK, True)
            counts["norm"] += 1
        elif name in MLP_CLASSES and act_ok and all(hasattr(module, a) for a in ("gate_proj", "up_proj")):
            module.forward = types.MethodType(_mlp_forward, module)
            setattr(module, _MARK, True)
            counts["mlp"] += 1
    if known:
        counts["gemv"] += _fuse_linear(getattr(model, "lm_head", None))
        for module in list(model.modules()):  # after the projections, which the layers' adds need
            if type(module).__name__ in LAYER_CLASSES and not getattr(module, _MARK, False):
                counts["layer"] += _fuse_layer(module)
    if getattr(model.config, "model_type", None) in ROPE_MODEL_TYPES:
        for cls in {type(m) for m in model.modules()}:
            modeling = sys.modules.get(cls.__module__)
            fn = getattr(modeling, "apply_rotary_pos_emb", None)
            if fn is not None and not getattr(fn, _MARK, False) and cls.__name__.endswith("Attention"):
                modeling.apply_rotary_pos_emb = _wrap_rope(fn)
                counts["rope"] += 1
    return counts
