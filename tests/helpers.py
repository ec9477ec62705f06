"""Test helpers: tiny configs, a stand-in tokenizer, and the *reference* Star Attention computed
with nothing but the dense Hugging Face model (sdpa + DynamicCache), independent of our code."""

from __future__ import annotations

import torch
from transformers import DynamicCache, LlamaConfig, Qwen2Config

from engine.modelcall import call_model


def tiny_config(arch: str, vocab: int = 101, **overrides):
    """A tiny Llama or Qwen2 config (fp32 tests in seconds); ``overrides`` replace its fields."""
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    common.update(overrides)
    if arch == "llama":
        return LlamaConfig(**common)
    return Qwen2Config(**common, use_sliding_window=False)


class IdTokenizer:
    """Decodes ids as space-separated numbers: enough for greedy-token comparisons."""

    eos_token_id = None
    chat_template = None
    bos_token = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [int(t) for t in text.split()]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" {i}" for i in ids)


@torch.no_grad()
def dense_greedy(model, ids: list[int], steps: int) -> list[int]:
    """The dense model's greedy continuation, recomputing the full sequence every step."""
    model.set_attn_implementation("sdpa")
    seq = list(ids)
    for _ in range(steps):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids) :]


@torch.no_grad()
def reference_context_cache(model, ctx: list[int], block: int, anchor: int) -> DynamicCache:
    """The paper's phase 1 done naively with the dense model: block 0 causally; every other
    block as the sequence [anchor, block] (anchor recomputed per block) keeping the block's KV."""
    model.set_attn_implementation("sdpa")
    keys = [[] for _ in range(model.config.num_hidden_layers)]
    values = [[] for _ in range(model.config.num_hidden_layers)]
    for start in range(0, len(ctx), block):
        stop = min(start + block, len(ctx))
        a = min(anchor, block, len(ctx)) if start > 0 else 0
        ids = ctx[:a] + ctx[start:stop]
        pos = list(range(a)) + list(range(start, stop))
        cache = DynamicCache(config=model.config)
        call_model(model, torch.tensor([ids]), torch.tensor([pos]), cache, logits_to_keep=0)
        for i, layer in enumerate(cache.layers):
            keys[i].append(layer.keys[:, :, a:])
            values[i].append(layer.values[:, :, a:])
    full = DynamicCache(config=model.config)
    for i in range(model.config.num_hidden_layers):
        full.update(torch.cat(keys[i], dim=2), torch.cat(values[i], dim=2), i)
    return full


@torch.no_grad()
def reference_query_logits(model, cache: DynamicCache, n: int, query: list[int]) -> torch.Tensor:
    """Dense attention of the query over the given context KV plus itself (causal)."""
    model.set_attn_implementation("sdpa")
    pos = torch.arange(n, n + len(query)).unsqueeze(0)
    out = call_model(model, torch.tensor([query]), pos, cache, logits_to_keep=0)
    return out.logits[0]
