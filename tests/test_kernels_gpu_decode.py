"""The CUDA-graph decode step against the eager step on a small random Llama (needs CUDA)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class _Tok:
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return ""


def _run(graph: bool) -> torch.Tensor:
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.api import Engine
    from engine.graphs import DecodeStep
    from tests.helpers import star_plan

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=1000,
        max_position_embeddings=8192,
        eos_token_id=None,
    )
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    engine = Engine(model, _Tok())
    context = torch.randint(0, 1000, (3000,)).tolist()
    plan = star_plan(len(context), 1024, max_tokens=20, query_tokens=5)
    gen = engine.encode_context(context, plan)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        cache = stop.value.cache
    with torch.inference_mode():
        cache.start_query(5 + 20)
        runner = engine.runner(plan)
        runner.use_attention("star")
        runner.forward([1, 2, 3, 4, 5], len(context), cache)
        position = len(context) + 5

        def eager(token, _pos=[position]):  # noqa: B006 - a counter local to this run
            out = runner.forward([token], _pos[0], cache)
            _pos[0] += 1
            return out

        step = DecodeStep(model, cache, position, torch.device("cuda"), eager, enabled=True)
        if not graph:
            step.fallback_reason = "disabled"
        logits = [step(t).float().clone() for t in range(10, 22)]
        assert (step.graph is not None) == graph, step.fallback_reason
        step.close()
    return torch.stack(logits)


def test_graph_replay_matches_eager_step():
    graph, eager = _run(True), _run(False)
    rel = float((graph - eager).norm() / eager.norm())
    assert rel < 1e-2, rel
