"""The delta correction over 2 and 3 gloo ranks (``engine.delta_ranks``), in real processes:
stride 1 is dense attention (each rank's cache is transformers' dense KV of its span, the answer
dense greedy's tokens), also with a rank that holds no block; a larger stride gives one rank's
corrected tokens."""

from __future__ import annotations

import pytest
import torch

from engine import Engine, Request, Token
from engine.settings import Correction, GenerationSettings, RunSettings
from tests.helpers import IdTokenizer, dense_greedy, spawned_ranks, tiny_config
from tests.test_delta_correction import dense_kv, drain

CASES = [  # (ranks, context tokens, block, anchor, stride)
    (2, 75, 16, 16, 1),
    (3, 75, 16, 5, 1),
    (3, 20, 16, 16, 1),  # two blocks for three ranks: one rank holds nothing
    (3, 75, 16, 16, 4),
]
QUERY = [3, 14, 15, 92]
STEPS = 8


def run_settings(block: int, anchor: int, stride: int) -> RunSettings:
    return RunSettings(
        block_size=block,
        anchor_size=anchor,
        generation=GenerationSettings.plain(max_tokens=STEPS),
        correction=Correction.DELTA,
        delta_stride=stride,
    )


def context(n: int) -> list[int]:
    return torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(6)).tolist()


def _rank(rank, procs, init_file, out_path):
    import torch.distributed as dist
    from transformers import LlamaForCausalLM

    from engine.comm import DistComm

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config("llama")).eval()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        for case, (world, n, block, anchor, stride) in enumerate(CASES):
            group = dist.new_group(list(range(world)))
            if rank >= world:
                continue
            engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cpu"), group))
            ctx = context(n)
            plan = engine.plan(run_settings(block, anchor, stride), n, len(QUERY))
            encoded = drain(engine.encode_context(ctx, plan))
            start, stop = plan.layout.rank_span(rank)
            layers = [encoded.cache.context_kv(i) for i in range(3)]
            kv = [tuple(None if t is None else t.clone() for t in pair) for pair in layers]
            events = engine.answer(encoded, QUERY)  # over this very encoding
            tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
            torch.save({"span": (start, stop), "kv": kv, "tokens": tokens}, f"{out_path}.{case}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results():
    with spawned_ranks(_rank, max(case[0] for case in CASES)) as out:
        yield {c: [torch.load(f"{out}.{c}.{r}") for r in range(CASES[c][0])] for c in range(len(CASES))}


@pytest.mark.parametrize("case", range(3), ids=[f"w{w}-n{n}-a{a}" for w, n, _, a, _ in CASES[:3]])
def test_stride_one_over_ranks_is_dense(tiny_llama, results, case):
    world, n, *_ = CASES[case]
    ctx = context(n)
    dense = dense_kv(tiny_llama, ctx)
    held = 0
    for result in results[case]:
        start, stop = result["span"]
        held += stop - start
        for layer, (k, v) in enumerate(result["kv"]):
            if stop == start:
                assert k is None or k.shape[2] == 0
                continue
            torch.testing.assert_close(k, dense.layers[layer].keys[:, :, start:stop], atol=1e-5, rtol=0)
            torch.testing.assert_close(v, dense.layers[layer].values[:, :, start:stop], atol=1e-5, rtol=0)
    assert held == n
    assert results[case][-1]["tokens"] == dense_greedy(tiny_llama, ctx + QUERY, STEPS)


def test_a_larger_stride_over_ranks_gives_one_ranks_tokens(tiny_llama, results):
    world, n, block, anchor, stride = CASES[3]
    ctx = context(n)
    events = Engine(tiny_llama, IdTokenizer()).run(Request(ctx, [QUERY], run_settings(block, anchor, stride)))
    alone = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
    assert results[3][-1]["tokens"] == alone
