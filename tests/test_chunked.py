"""Phase 1's bounded transients (issue 16): the MLP over slices of tokens (``engine.chunked``)
computes what the whole block does, and no mode computes logits for the context's tokens.
Checked on tiny random Llamas in float32 against transformers' own dense model, unchunked."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaForCausalLM

from engine import Engine, Request, Token, runner
from engine.chunked import chunk_mlps
from tests.helpers import (
    IdTokenizer,
    dense_greedy,
    reference_context_cache,
    settings_of,
    star_plan,
    tiny_config,
)

CTX = torch.randint(0, 101, (60,), generator=torch.Generator().manual_seed(3)).tolist()
QUERY = [3, 14, 15, 92]
STEPS = 8


def fresh_llama() -> LlamaForCausalLM:
    """A model of this test's own: chunking is installed on the instance and stays there."""
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config("llama")).eval()


def drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


@torch.no_grad()
def test_a_chunked_mlp_equals_the_whole_block():
    model = fresh_llama()
    x = torch.randn(1, 37, model.config.hidden_size)
    whole = [layer.mlp(x) for layer in model.model.layers]
    assert chunk_mlps(model, 5) == model.config.num_hidden_layers
    for layer, expected in zip(model.model.layers, whole):
        out = layer.mlp(x)
        assert out.shape == expected.shape
        # Equal up to float32 rounding (a GEMM of 5 rows may block its sums unlike one of 37).
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_chunking_wraps_the_current_forward_once():
    model = fresh_llama()
    mlp = model.model.layers[0].mlp
    calls = []
    plain = mlp.forward

    def counting(x):
        calls.append(x.shape[1])
        return plain(x)

    mlp.forward = counting  # as engine.fused replaces it
    chunk_mlps(model, 4)
    chunk_mlps(model, 4)  # again: not a chunk of chunks
    mlp(torch.randn(1, 10, model.config.hidden_size))
    assert calls == [4, 4, 2]
    calls.clear()
    mlp(torch.randn(1, 1, model.config.hidden_size))  # a decode step: one call, no copy
    assert calls == [1]


@pytest.mark.parametrize("mode, kwargs", [("global", {}), ("star", {"block_size": 64}), ("ring", {})])
def test_the_engine_with_chunked_mlps_gives_the_dense_models_tokens(monkeypatch, mode, kwargs):
    """Blocks of 60 tokens through MLPs chunked by 7: the same greedy tokens as transformers'
    dense model over the whole sequence (one star block, global and ring are exactly dense)."""
    monkeypatch.setattr(runner, "MLP_CHUNK_TOKENS", 7)
    model = fresh_llama()
    expected = dense_greedy(copy.deepcopy(model), CTX + QUERY, STEPS)
    engine = Engine(model, IdTokenizer())
    events = engine.run(Request(CTX, [QUERY], settings_of(mode, STEPS, **kwargs)))
    assert [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0] == expected
    assert model.model.layers[0].mlp._starcli_chunked[1] == 7


def test_star_phase1_with_chunked_mlps_equals_the_papers_reference(monkeypatch):
    monkeypatch.setattr(runner, "MLP_CHUNK_TOKENS", 7)
    model = fresh_llama()
    reference = reference_context_cache(copy.deepcopy(model), CTX, 16, 16)
    encoded = drain(Engine(model, IdTokenizer()).encode_context(CTX, star_plan(len(CTX), 16)))
    for layer in range(model.config.num_hidden_layers):
        k, v = encoded.cache.context_kv(layer)
        torch.testing.assert_close(k, reference.layers[layer].keys, atol=1e-5, rtol=0)
        torch.testing.assert_close(v, reference.layers[layer].values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode, kwargs", [("global", {}), ("star", {"block_size": 16}), ("ring", {})])
def test_no_mode_computes_logits_for_context_tokens(mode, kwargs):
    """The LM head sees one row per forward pass (phase 1's blocks, the query, each decode step):
    the logits of a 64K-token block would be 31 GiB in float32 at the 8B shape."""
    model = fresh_llama()
    rows: list[int] = []
    model.lm_head.register_forward_hook(lambda _module, args, _out: rows.append(args[0].shape[1]))
    events = Engine(model, IdTokenizer()).run(Request(CTX, [QUERY], settings_of(mode, 3, **kwargs)))
    assert sum(1 for e in events if isinstance(e, Token)) == 3
    forwards = {"global": 1, "star": 4, "ring": 1}[mode] + 1 + 2  # phase 1, the query, 2 decode steps
    assert rows == [1] * forwards
