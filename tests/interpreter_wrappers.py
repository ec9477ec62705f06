"""``engine.fused``'s wrappers over Triton's interpreter on CPU (run through
tests/interpreter_checks.py): the wrappers' device test lets CPU tensors through, so a tiny
float16 model's decode step takes the kernels' paths as a GPU's does."""

from __future__ import annotations

import sys
import types

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM, Qwen2ForCausalLM

import engine.fused as wrappers
from engine.modelcall import call_model
from kernels import fused, gemv
from tests.helpers import tiny_config
from tests.interpreter_kernels import DT, rel_err


def _count_calls(owner, name: str, counts: dict[str, int]) -> None:
    fn = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        if kwargs.get("residual") is not None:  # a decoder layer's add made in the product's launch
            counts[name + "+residual"] = counts.get(name + "+residual", 0) + 1
        return fn(*args, **kwargs)

    setattr(owner, name, counted)


def _decode_logits(
    model, ids: torch.Tensor, steps: list[int] | None, count: int, counts: dict[str, int]
) -> tuple[list, list[int]]:
    """Logits of a prefill of ``ids`` and ``count`` one-token steps (feeding ``steps``, or the
    greedy tokens where None), and the tokens fed; ``counts`` cleared after the prefill."""
    cache, n = DynamicCache(), ids.shape[1]
    logits = [call_model(model, ids, torch.arange(n)[None], cache).logits[:, -1]]
    fed = []
    counts.clear()
    for step in range(count):
        token = steps[step] if steps is not None else int(logits[-1].argmax())
        fed.append(token)
        logits.append(
            call_model(model, torch.tensor([[token]]), torch.tensor([[n + step]]), cache).logits[:, -1]
        )
    return logits, fed


STEPS = 2  # decode steps after the prefill


def check_wrappers() -> dict:
    """``engine.fused`` over a tiny float16 Llama and Qwen2 (biased Q/K/V) on CPU: the wrappers'
    device test lets CPU tensors through, so a decode step takes the kernels' paths as a GPU's
    does; its logits are compared with eager transformers' (the same model before fusing)."""
    results = {}
    counts: dict[str, int] = {}
    wrappers._on_gpu = lambda x: True
    for name in ("gemv3", "gemv_silu_mul"):
        _count_calls(gemv, name, counts)
    for name in ("rope_pair", "rms_norm"):
        _count_calls(fused, name, counts)
    wrappers.F = types.SimpleNamespace(linear=F.linear)  # counted for engine.fused's calls only
    _count_calls(wrappers.F, "linear", counts)
    committed = dict(wrappers.NORM_IN_LAUNCH)
    cases = (
        ("llama", LlamaForCausalLM, False),
        ("qwen2", Qwen2ForCausalLM, False),
        ("llama", LlamaForCausalLM, True),
    )
    for arch, cls, all_norms in cases:
        # the committed choice of which norms run inside the products, then every one inside
        wrappers.NORM_IN_LAUNCH.update(dict.fromkeys(committed, True) if all_norms else committed)
        torch.manual_seed(8)
        # Qwen2 with its LM head tied to the embedding, as the small Qwen2 models have it.
        tied = {"tie_word_embeddings": arch == "qwen2"}
        config = tiny_config(arch, vocab=96, num_hidden_layers=2, initializer_range=0.1, **tied)
        model = cls(config).eval().to(DT)
        for module in model.modules():  # Qwen2's biases start at zero: make them count
            if arch == "qwen2" and hasattr(module, "q_proj"):
                for proj in (module.q_proj, module.k_proj, module.v_proj):
                    torch.nn.init.normal_(proj.bias, std=0.5)
        ids = torch.randint(0, 96, (1, 9))
        modeling = sys.modules[type(model.model.layers[0].self_attn).__module__]
        with torch.no_grad():
            eager, fed = _decode_logits(model, ids, None, STEPS, counts)
            wrappers.fuse_pointwise(model)
            try:
                out, _ = _decode_logits(model, ids, fed, STEPS, counts)
                calls = dict(counts)
                orders = _projection_orders(model.model.layers[0].self_attn, config.hidden_size)
            finally:  # the modeling module's rotary function back, for whatever runs next
                modeling.apply_rotary_pos_emb = modeling.apply_rotary_pos_emb.__wrapped__
        wrappers.NORM_IN_LAUNCH.update(committed)
        results[f"wrappers/{arch}{'/norms_in' if all_norms else ''}/decode"] = {
            "err_ulp": max(rel_err(a, b) for a, b in zip(out, eager, strict=True)),
            "calls": calls,
            "layers": config.num_hidden_layers,
            "steps": STEPS,
            "tied": model.lm_head.weight is model.model.embed_tokens.weight,
            "rope_in_launch": wrappers.ROPE_IN_LAUNCH,
            "norms_in_launch": sum(
                dict.fromkeys(committed, True).values() if all_norms else committed.values()
            ),
        }
        results.update({f"wrappers/{arch}/order/{name}": r for name, r in orders.items()})
    return results


def _projection_orders(attn: torch.nn.Module, hidden: int) -> dict:
    """Q/K/V projections called in other orders than the modeling code's, and K/V on another input
    than Q's: every result must still be its own ``F.linear``."""
    x, other = torch.randn(1, 1, hidden, dtype=DT), torch.randn(1, 1, hidden, dtype=DT)
    orders = {
        "k_q_v": [("k", x), ("q", x), ("v", x)],
        "q_v_k": [("q", x), ("v", x), ("k", x)],
        "q_then_kv_of_other": [("q", x), ("k", other), ("v", other)],
        "q_k_v_twice": [("q", x), ("k", x), ("v", x), ("q", other), ("k", other), ("v", other)],
    }
    results = {}
    for order, calls in orders.items():
        worst = 0.0
        for which, inp in calls:
            mod = getattr(attn, f"{which}_proj")
            bias = None if mod.bias is None else mod.bias.double()
            worst = max(worst, rel_err(mod(inp), F.linear(inp.double(), mod.weight.double(), bias)))
        results[order] = {"err_ulp": worst}
    return results


def check_layer_tokens() -> dict:
    """``engine.fused``'s decoder layer over several tokens (a prefill of 9, the MLP over slices of
    4): logits against eager transformers' (the same model before fusing), the O and down
    products added in place (counted), and the layer-0 input, which the embedding made and no
    fused layer owns, left as it was."""
    from engine.chunked import chunk_mlps

    wrappers._on_gpu = lambda x: True
    results = {}
    calls = {"into": 0}
    original = wrappers._add_product_into

    def counted(into, x, linear):
        calls["into"] += 1
        return original(into, x, linear)

    for arch, cls in (("llama", LlamaForCausalLM), ("qwen2", Qwen2ForCausalLM)):
        torch.manual_seed(9)
        config = tiny_config(arch, vocab=96, num_hidden_layers=3, initializer_range=0.1)
        model = cls(config).eval().to(DT)
        ids = torch.randint(0, 96, (1, 9))
        modeling = sys.modules[type(model.model.layers[0].self_attn).__module__]
        embedded: list = []
        hook = model.model.embed_tokens.register_forward_hook(
            lambda module, args, out, kept=embedded: kept.append((out, out.clone()))
        )
        with torch.no_grad():
            eager = call_model(model, ids, torch.arange(9)[None], DynamicCache()).logits
            wrappers.fuse_pointwise(model)
            chunk_mlps(model, 4)
            wrappers._add_product_into = counted
            calls["into"] = 0
            try:
                out = call_model(model, ids, torch.arange(9)[None], DynamicCache()).logits
            finally:
                wrappers._add_product_into = original
                modeling.apply_rotary_pos_emb = modeling.apply_rotary_pos_emb.__wrapped__
                hook.remove()
        layers = config.num_hidden_layers
        results[f"layer_tokens/{arch}"] = {
            "err_ulp": rel_err(out, eager),
            "adds_in_place": calls["into"],
            # O of every layer but the first (its input is the embedding's), down over 3 slices
            "expected": (layers - 1) + layers * 3,
            "embedding_kept": bool(torch.equal(embedded[-1][0], embedded[-1][1])),
        }
    return results
