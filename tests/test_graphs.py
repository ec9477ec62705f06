"""The graph-decode path's cache/attention hooks, checked eagerly on CPU: writing the tail at a
device index and attending to the first ``kv_len`` tail keys must give the eager step's logits.
(The capture itself needs CUDA: tests/test_kernels_gpu_decode.py.)"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from engine.api import Engine
from engine.graphs import DecodeStep, GraphDecodeStep
from tests.helpers import star_plan, tiny_config


class _Tok:
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return ""


def _engine():
    torch.manual_seed(0)
    config = tiny_config(
        "llama", vocab=100, num_hidden_layers=2, max_position_embeddings=512, eos_token_id=None
    )
    return Engine(LlamaForCausalLM(config).eval(), _Tok())


def _encode(engine, context):
    gen = engine.encode_context(context, star_plan(len(context), 16))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_graph_body_matches_eager_decode():
    engine = _engine()
    context, query = list(range(3, 43)), [7, 8, 9]
    results = []
    for use_graph_body in (False, True):
        cache = _encode(engine, context).cache
        with torch.inference_mode():
            cache.start_query(len(query) + 4)
            runner = engine.runner(star_plan(len(context), 16))
            runner.use_attention("star")
            runner.forward(query, len(context), cache)
            position = len(context) + len(query)
            logits = []
            if use_graph_body:
                step = GraphDecodeStep.__new__(GraphDecodeStep)  # the captured body, run eagerly
                step.model, step.cache = engine.model, cache
                step.token = torch.zeros((1, 1), dtype=torch.long)
                step.position = torch.full((1, 1), position)
                cache.graph_slot = torch.tensor([cache.tail_len])
                cache.graph_kv_len = torch.tensor([cache.tail_len + 1], dtype=torch.int32)
                for token in (11, 12, 13):
                    step.token.fill_(token)
                    logits.append(step._body().clone())
            else:
                for i, token in enumerate((11, 12, 13)):
                    logits.append(runner.forward([token], position + i, cache))
        results.append(torch.stack(logits))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_decode_step_on_cpu_stays_eager():
    engine = _engine()
    calls = []
    step = DecodeStep(
        engine.model, None, 0, torch.device("cpu"), lambda t: calls.append(t) or t, enabled=True
    )
    assert step(5) == 5 and calls == [5] and step.fallback_reason == "disabled"
