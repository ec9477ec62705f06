"""Route a model's RMSNorm, SiLU MLP and rotary embedding through the fused kernels of
``kernels.fused`` (CUDA, on by default; ``EngineOptions.fused``).

The modeling code stays the model's own: norm and MLP modules of the known Llama-family classes
get a ``forward`` on the instance that calls the same submodules and parameters, and the modeling
module's ``apply_rotary_pos_emb`` is wrapped. For one decode token the projections (Q/K/V in one
launch, O, down, the LM head) and the MLP's gate/up/SiLU (one launch) go through
``kernels.gemv``, which streams the weights faster than cuBLAS's one-row GEMMs; a decoder
layer's residual adds, its input RMSNorm (``NORM_IN_LAUNCH``) and the rotation of Q and K, with the
token's K/V write into a CUDA graph's cache slot (``ROPE_IN_LAUNCH``), ride in those launches
(``_layer_forward``): a decode layer is 7 kernels (with attention and its merge). Every wrapper
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
_NORM = "_starcli_norm"  # set by _layer_forward on an MLP: the norm its next call applies first
_QKV_OF = "_starcli_qkv"  # an attention module's _QKV
# Several tokens: set by _layer_forward on the O/down projection for its next call only, the
# residual stream that call adds its product to in place (``_add_product_into``).
_INTO = "_starcli_into"
# On a hidden-state tensor a fused layer returned: made by us and handed only to the next layer,
# so that layer may add to it in place. A layer's input without it (the embedding's output, or
# anything a caller made) is never written.
_OWNED = "_starcli_owned"
# Which decode-step RMSNorms run inside the weight product that reads them (``kernels.gemv``'s
# ``norm=``) rather than as a kernel of their own. Q/K/V's launch (1,536 programs at the 8B shape)
# takes its norm for free; gate/up's (7,168 programs of two rows) paid 0.22 ms a step for the
# norm's weights and statistics in every program, four times the norm kernel it replaced
# (H200, 2026-12-02, docs/benchmarks.md): off.
NORM_IN_LAUNCH = {"qkv": True, "gate_up": False}
# Q and K rotated in the Q/K/V launch, K and V written there to the cache's tail slot under a CUDA
# graph (``kernels.gemv``'s ``rope=``/``dest=``): the RoPE and KV-write kernels, two dependent
# launches a layer that nothing could start ahead of, leave the decode step.
ROPE_IN_LAUNCH = True
# Several tokens: the O and down products add themselves to the residual stream in place, the MLP
# sliced by the layer (``_layer_tokens``); off, the layer is transformers' own.
ADDS_IN_PLACE = True
# (q, k) data pointers of the Q/K/V launch's rotated outputs, for the modeling code's call of
# ``apply_rotary_pos_emb`` that follows: it hands them back unchanged (and clears this).
_rotated: tuple[int, int] | None = None


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


def _norm_of(module: torch.nn.Module, x: torch.Tensor):
    """``(weight, eps)`` of a Llama-family RMSNorm that a weight product over the row ``x`` can
    apply in its own launch (``kernels.gemv.norm_fits``), else None."""
    if type(module).__name__ not in NORM_CLASSES or not hasattr(module, "variance_epsilon"):
        return None
    from kernels.gemv import norm_fits

    norm = (module.weight, module.variance_epsilon)
    return norm if norm_fits(x, norm) else None


def _mlp_takes(mlp: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether ``_mlp_forward`` makes gate/up/SiLU over ``x`` one ``gemv_silu_mul`` launch."""
    g, u = mlp.gate_proj, mlp.up_proj
    if not (_on_gpu(x) and _plain(g) and _plain(u) and g.bias is None and u.bias is None):
        return False
    from kernels.gemv import eligible

    return eligible(x, g.weight, u.weight)


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    norm = getattr(self, _NORM, None)  # the layer's norm, left to this launch (_layer_forward)
    setattr(self, _NORM, None)
    if _mlp_takes(self, x):  # one decode token: norm, both products and SiLU in one pass
        from kernels.gemv import gemv_silu_mul

        weights = None if norm is None else (norm.weight, norm.variance_epsilon)
        return self.down_proj(gemv_silu_mul(x, self.gate_proj.weight, self.up_proj.weight, norm=weights))
    if norm is not None:
        x = norm(x)
    g, u = self.gate_proj, self.up_proj
    gate, up = g(x), u(x)
    if _fusable(gate) and gate.dtype == up.dtype and gate.is_contiguous() and up.is_contiguous():
        from kernels.fused import silu_mul

        return self.down_proj(silu_mul(gate, up))
    return self.down_proj(self.act_fn(gate) * up)


def _plain(module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear


def _bias_ok(bias: torch.Tensor | None, x: torch.Tensor) -> bool:
    return bias is None or (bias.dtype == x.dtype and bias.is_contiguous() and bias.device == x.device)


def _add_product_into(into: torch.Tensor, x: torch.Tensor, linear: torch.nn.Module) -> torch.Tensor:
    """``into += linear(x)`` in place (``into`` contiguous). Without a bias it is one GEMM whose
    epilogue reads ``into`` (cuBLAS's beta = 1): the product is never written on its own and no add
    kernel reads it back, at 16K tokens of the 8B shape 268 MB of traffic less per add. The sum is
    rounded once, where eager rounds the product and then the sum."""
    rows = into.view(-1, into.shape[-1])
    if _plain(linear) and linear.bias is None and x.dtype == into.dtype:
        rows.addmm_(x.reshape(-1, x.shape[-1]), linear.weight.t())
    else:
        rows.add_(linear(x).reshape(rows.shape))
    return into


def _linear_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, one decode token read through ``kernels.gemv``; plus the residual
    ``_layer_forward`` left for this call, if any (added in the product's launch), or the residual
    stream it adds to in place (``_INTO``, several tokens)."""
    into = getattr(self, _INTO, None)
    if into is not None:
        setattr(self, _INTO, None)
        return _add_product_into(into, x, self)
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
    takes the residual from the module); its input RMSNorm, the rotation of Q and K and (under a
    CUDA graph) the cache write of K and V are made by the Q/K/V launch (``_QKV``, ``_plan_rope``),
    and the post-attention RMSNorm by gate/up's where ``NORM_IN_LAUNCH`` says so (``_mlp_forward``):
    up to six kernels a layer fewer, the same roundings. A product that would not take its norm
    gets the norm applied first, as before."""
    o_proj, down = self.self_attn.o_proj, self.mlp.down_proj
    if args or not _fusable(hidden_states):
        return type(self).forward(self, hidden_states, *args, **kwargs)
    if hidden_states.numel() != hidden_states.shape[-1]:
        if ADDS_IN_PLACE:
            return _layer_tokens(self, hidden_states, kwargs)
        return type(self).forward(self, hidden_states, **kwargs)
    residual = hidden_states.contiguous()
    qkv: _QKV | None = getattr(self.self_attn, _QKV_OF, None)
    written = None
    try:
        setattr(o_proj, _RESIDUAL, residual)
        x = residual
        if (
            NORM_IN_LAUNCH["qkv"]
            and qkv is not None
            and _norm_of(self.input_layernorm, x) is not None
            and qkv.takes(x)
        ):
            qkv.norm = self.input_layernorm
        else:
            x = self.input_layernorm(x)
        written = _plan_rope(self, qkv, x, kwargs) if qkv is not None and qkv.takes(x) else None
        if written is not None:
            written[0].written_slot = written[1]  # the cache's own write of this layer's K/V is done
        hidden_states, _ = self.self_attn(hidden_states=x, **kwargs)
        setattr(down, _RESIDUAL, hidden_states)
        norm = self.post_attention_layernorm
        if (
            NORM_IN_LAUNCH["gate_up"]
            and getattr(self.mlp, _MARK, False)
            and _norm_of(norm, hidden_states) is not None
        ):
            if _mlp_takes(self.mlp, hidden_states):
                setattr(self.mlp, _NORM, norm)
                return self.mlp(hidden_states)
        return self.mlp(norm(hidden_states))
    finally:
        setattr(o_proj, _RESIDUAL, None)
        setattr(down, _RESIDUAL, None)
        setattr(self.mlp, _NORM, None)
        if qkv is not None:
            qkv.norm = qkv.rope = None
        if written is not None:
            written[0].written_slot = None


def _layer_tokens(self, hidden_states: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The layer over several tokens (phase 1's blocks, a query): its own steps, except that the
    O and down products add themselves to the residual stream in place (``_add_product_into``),
    and the MLP runs over ``engine.chunked``'s slices of tokens here, each slice's down product
    added into its rows. That leaves out both add kernels and the copy of each slice's output
    into a whole: ~1% of phase 1 at 128K on the H200 (docs/benchmarks.md).

    The layer's input is written only if a fused layer made it (``_OWNED``); otherwise the first
    sum is a new tensor, which this layer then owns. The engine never asks the model for its
    hidden states, so no one else holds a layer's output when the next layer adds to it."""
    from engine.chunked import chunk_tokens

    mlp, o_proj = self.mlp, self.self_attn.o_proj
    if not (getattr(mlp, _MARK, False) and hidden_states.dim() == 3 and hidden_states.is_contiguous()):
        return type(self).forward(self, hidden_states, **kwargs)
    owned = getattr(hidden_states, _OWNED, False)
    x = self.input_layernorm(hidden_states)
    setattr(o_proj, _INTO, hidden_states if owned else None)
    try:
        out, _ = self.self_attn(hidden_states=x, **kwargs)
    finally:
        setattr(o_proj, _INTO, None)
    h = out if out is hidden_states else hidden_states + out
    normed = self.post_attention_layernorm(h)
    tokens = h.shape[1]
    size = chunk_tokens(mlp) if h.shape[0] == 1 else None  # rows of one sequence are contiguous
    size = size or tokens
    for start in range(0, tokens, size):
        part = normed[:, start : start + size]
        gate, up = mlp.gate_proj(part), mlp.up_proj(part)
        if _fusable(gate) and gate.dtype == up.dtype and gate.is_contiguous() and up.is_contiguous():
            from kernels.fused import silu_mul

            act = silu_mul(gate, up)
        else:
            act = mlp.act_fn(gate) * up
        del gate, up
        _add_product_into(h[:, start : start + size], act, mlp.down_proj)
        del act
    setattr(h, _OWNED, True)
    return h


def _plan_rope(layer: torch.nn.Module, qkv: _QKV, x: torch.Tensor, kwargs: dict):
    """Hand the token's RoPE (and, where the cache writes K/V at a CUDA graph's slot, that write)
    to the layer's Q/K/V launch when it can take them (``ROPE_IN_LAUNCH``; a rotary function this
    module installed, to hand the rotated Q/K back; no Q/K norm between projection and rotation,
    as Qwen3 has; whole heads). Returns (cache, layer index) when the cache's write is taken."""
    attn = layer.self_attn
    modeling = sys.modules.get(type(attn).__module__)
    rotary = getattr(modeling, "apply_rotary_pos_emb", None)
    embeddings = kwargs.get("position_embeddings")
    if not (ROPE_IN_LAUNCH and getattr(rotary, _MARK, False) and embeddings is not None):
        return None
    if hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
        return None
    cos, sin = embeddings
    head_dim = getattr(attn, "head_dim", None)
    if not (
        cos.dim() == 3 and cos.shape[:2] == (1, 1) and cos.shape[-1] == head_dim and sin.shape == cos.shape
    ):
        return None
    from kernels.gemv import dest_fits, rope_fits

    rope = (cos.reshape(-1), sin.reshape(-1))
    weights = [m.weight for m in qkv.mods]
    if not rope_fits(x, weights, rope):
        return None
    cache = kwargs.get("star_cache")
    idx = getattr(attn, "layer_idx", None)
    dest = None
    if getattr(cache, "graph_slot", None) is not None and cache.phase == "query" and cache.comm.is_host:
        tail = cache.layers[idx]
        candidate = (tail.tail_k, tail.tail_v, cache.graph_slot)
        if tail.tail_k is not None and dest_fits(x, weights, candidate, head_dim):
            dest = candidate
    qkv.rope = (rope, dest)
    return (cache, idx) if dest is not None else None


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
        # The RMSNorm the next Q call applies to its input first (set by _layer_forward, which has
        # checked ``takes``); K's and V's calls on that same input get the normalised products.
        self.norm: torch.nn.Module | None = None
        self.normed: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, its norm) if unfused
        # The token's rotary cos/sin and, under a CUDA graph, the cache slot K and V go to, for the
        # next Q call (set by _layer_forward, which has checked ``takes`` and the shapes).
        self.rope: tuple[tuple[torch.Tensor, torch.Tensor], tuple | None] | None = None

    def takes(self, x: torch.Tensor) -> bool:
        """Whether Q/K/V over ``x`` are one ``gemv3`` launch."""
        if not _on_gpu(x):
            return False
        from kernels.gemv import eligible

        biases = [m.bias for m in self.mods]
        same_bias = all(b is None for b in biases) or all(b is not None for b in biases)
        return (
            same_bias and eligible(x, *(m.weight for m in self.mods)) and all(_bias_ok(b, x) for b in biases)
        )

    def project(self, which: int, x: torch.Tensor) -> torch.Tensor:
        global _rotated
        mod = self.mods[which]
        if which == 0:
            self.pending = self.normed = None
            norm, self.norm = self.norm, None
            rope, self.rope = self.rope, None
            if self.takes(x):
                from kernels.gemv import gemv3

                biases = [m.bias for m in self.mods]
                weights = None if norm is None else (norm.weight, norm.variance_epsilon)
                q, k, v = gemv3(
                    x,
                    [m.weight for m in self.mods],
                    None if biases[0] is None else biases,
                    norm=weights,
                    rope=None if rope is None else rope[0],
                    dest=None if rope is None else rope[1],
                )
                _rotated = None if rope is None else (q.data_ptr(), k.data_ptr())
                self.pending = (x, k, v)
                return q
            if rope is not None:
                raise RuntimeError("rotary embedding planned for a Q/K/V launch that did not happen")
            if norm is not None:  # not one launch after all: normalise here, for K and V too
                self.normed = (x, norm(x))
                x = self.normed[1]
        elif self.pending is not None and self.pending[0] is x:
            out = self.pending[which]
            if which == 2:
                self.pending = None
            return out
        elif self.normed is not None and self.normed[0] is x:
            x = self.normed[1]
        return F.linear(x, mod.weight, mod.bias)


def _fuse_projections(module: torch.nn.Module) -> int:
    """Route an attention module's Q/K/V (together) and O projections through ``kernels.gemv``."""
    names = ("q_proj", "k_proj", "v_proj")
    if not all(_plain(getattr(module, n, None)) for n in names):
        return 0
    qkv = _QKV(*(getattr(module, n) for n in names))
    setattr(module, _QKV_OF, qkv)
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
        global _rotated
        if _rotated is not None:  # rotated already, in the Q/K/V launch (_QKV.project)
            done, _rotated = _rotated, None
            if done == (q.data_ptr(), k.data_ptr()):
                return q, k
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
