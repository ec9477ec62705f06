"""Phase 1 does not run the last layer's attention or (Llama family) its MLP: only K and V are kept
(``engine.last_layer``). Checked on tiny random models against the paper's phase 1 done with
transformers' own dense model (``tests.helpers.reference_context_cache``), and by counting what
ran."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from engine import Engine, Request, Token, attention
from tests.helpers import IdTokenizer, dense_greedy, reference_context_cache, settings_of, star_plan

CTX = torch.randint(0, 101, (70,), generator=torch.Generator().manual_seed(5)).tolist()
BLOCK = 16
TINY = dict(
    vocab_size=101,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# family -> (config class, overrides, whether its layers are engine.fused.LAYER_CLASSES)
FAMILIES = {
    "llama": ("LlamaConfig", {}, True),
    "qwen3": ("Qwen3Config", {"head_dim": 16}, True),  # K normalised inside the attention module
    "gemma": ("GemmaConfig", {"head_dim": 16}, False),  # only the attention is skipped
}


def _model(family: str) -> torch.nn.Module:
    name, overrides, _ = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, name)(**TINY, **overrides)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def _encode(model) -> object:
    gen = Engine(model, IdTokenizer()).encode_context(CTX, star_plan(len(CTX), BLOCK, BLOCK))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


@pytest.mark.parametrize("family", sorted(FAMILIES))
@torch.no_grad()
def test_phase1_skips_the_last_layers_output_and_keeps_the_papers_cache(monkeypatch, family):
    model = _model(family)
    reference = reference_context_cache(copy.deepcopy(model), CTX, BLOCK, BLOCK)
    layers = model.model.layers
    mlp_calls = [0] * len(layers)
    for i, layer in enumerate(layers):
        layer.mlp.register_forward_hook(lambda *_a, i=i: mlp_calls.__setitem__(i, mlp_calls[i] + 1))
    attended: list[int] = []
    plain = attention.block_attention

    def counting(q, *args):
        attended.append(q.shape[2])
        return plain(q, *args)

    monkeypatch.setattr(attention, "block_attention", counting)
    encoded = _encode(model)

    blocks = -(-len(CTX) // BLOCK)
    assert len(attended) == (len(layers) - 1) * blocks  # every layer but the last, every block
    assert mlp_calls[:-1] == [blocks] * (len(layers) - 1)
    assert mlp_calls[-1] == (0 if FAMILIES[family][2] else blocks)
    for i in range(len(layers)):  # the last layer's K/V too: they come before what was skipped
        k, v = encoded.cache.context_kv(i)
        torch.testing.assert_close(k, reference.layers[i].keys, atol=1e-5, rtol=0)
        torch.testing.assert_close(v, reference.layers[i].values, atol=1e-5, rtol=0)


@torch.no_grad()
def test_the_query_and_answer_still_run_the_last_layer():
    """One block (exactly dense): the query's and the answer's tokens go through the whole last
    layer, so the greedy tokens are transformers' own."""
    model = _model("llama")
    query = [3, 14, 15, 92]
    expected = dense_greedy(copy.deepcopy(model), CTX + query, 6)
    events = Engine(model, IdTokenizer()).run(Request(CTX, [query], settings_of("star", 6, block_size=128)))
    assert [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0] == expected
