"""Exactness of the engine against the dense Hugging Face model, on tiny random models (fp32).

The references in tests/helpers.py use only transformers' own sdpa attention and DynamicCache,
so these tests compare our Star Attention against an independent implementation of the same
math, never against itself.
"""

from __future__ import annotations

import pytest
import torch

from engine import Engine, Request, Token
from engine.comm import Comm
from engine.errors import BadSettingError, ContextTooLongError, EmptyInputError
from engine.modelcall import call_model
from tests.helpers import (
    IdTokenizer,
    dense_greedy,
    reference_context_cache,
    reference_query_logits,
    settings_of,
    spawned_ranks,
    star_plan,
    tiny_config,
)


def drain(gen):
    """Run an event generator to its end and return its return value."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def greedy_tokens(engine, ctx, query, mode="star", steps=16, **kwargs):
    events = engine.run(Request(ctx, [query], settings_of(mode, steps, **kwargs)))
    return [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen2"])
@pytest.mark.parametrize("block", [60, 64, 500])
def test_star_with_one_block_gives_dense_greedy_tokens(arch, block, request):
    model = request.getfixturevalue(arch)
    ctx = torch.randint(0, 101, (60,), generator=torch.Generator().manual_seed(1)).tolist()
    query = [3, 14, 15, 92]
    expected = dense_greedy(model, ctx + query, 16)
    engine = Engine(model, IdTokenizer())
    assert greedy_tokens(engine, ctx, query, mode="star", block_size=block) == expected
    assert greedy_tokens(engine, ctx, query, mode="global") == expected


class PretendRank(Comm):
    """A single process playing rank ``rank`` of ``world`` for phase 1 (which needs no peers)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world_size = rank, world

    def gather_floats(self, value):
        return [value] * self.world_size


@pytest.mark.parametrize("anchor", [16, 5, 1])
@pytest.mark.parametrize("rank,world", [(0, 1), (0, 2), (1, 2), (2, 3)])
def test_phase1_anchor_once_equals_anchor_recomputed_per_block(tiny_llama, anchor, rank, world):
    """Our phase 1 (anchor computed once per rank, or taken from block 0) equals the paper's
    reference (dense model over [anchor, block] for every block) within 1e-6."""
    ctx = torch.randint(0, 101, (75,), generator=torch.Generator().manual_seed(2)).tolist()
    plan = star_plan(len(ctx), 16, anchor, world)
    engine = Engine(tiny_llama, IdTokenizer(), comm=PretendRank(rank, world))
    encoded = drain(engine.encode_context(ctx, plan))
    reference = reference_context_cache(tiny_llama, ctx, 16, anchor)
    start, stop = plan.layout.rank_span(rank)
    assert encoded.cache.context_len == stop - start
    for layer in range(tiny_llama.config.num_hidden_layers):
        k, v = encoded.cache.context_kv(layer)
        ref = reference.layers[layer]
        torch.testing.assert_close(k, ref.keys[:, :, start:stop], atol=1e-6, rtol=0)
        torch.testing.assert_close(v, ref.values[:, :, start:stop], atol=1e-6, rtol=0)
        assert encoded.cache.layers[layer].anchor_k is None  # dropped after phase 1


PHASE2_CASES = [  # (ranks, context tokens, block, anchor, rank 0 sends the anchor)
    (1, 50, 8, 8, False),
    (2, 50, 8, 8, False),
    (3, 50, 8, 3, False),  # uneven: 7 blocks, the last 2 tokens long
    (3, 10, 8, 1, False),  # two blocks for three ranks: one rank holds nothing
    (2, 50, 8, 8, True),
    (3, 50, 8, 3, True),
    (3, 10, 8, 1, True),
]
QUERY = [5, 6, 7, 8, 9]


def _phase2_rank(rank, procs, init_file, out_path):
    """One real process running every case on a subgroup of the first ``world`` processes:
    phase 1 on its blocks, then the query and one decode step."""
    import torch.distributed as dist

    from engine.comm import DistComm

    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_config("llama")).eval()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        for case, (world, n, block, anchor, share) in enumerate(PHASE2_CASES):
            group = dist.new_group(list(range(world)))
            if rank >= world:
                continue
            engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cpu"), group))
            ctx = torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(3)).tolist()
            plan = star_plan(n, block, anchor, world, share=share)
            assert plan.layout.anchor_shared == (share and plan.layout.anchor > 0)
            encoded = drain(engine.encode_context(ctx, plan))
            cache = encoded.cache
            cache.start_query(len(QUERY) + 1)
            with torch.inference_mode():
                positions = torch.arange(n, n + len(QUERY)).unsqueeze(0)
                q = call_model(model, torch.tensor([QUERY]), positions, cache, 0, star_cache=cache).logits[0]
                positions = torch.tensor([[n + len(QUERY)]])
                d = call_model(model, torch.tensor([[7]]), positions, cache, 0, star_cache=cache).logits[0]
            result = {"query": q, "decode": d, "blocks": encoded.plan.blocks_per_rank()}
            torch.save(result, f"{out_path}.{case}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def phase2_results():
    with spawned_ranks(_phase2_rank, max(case[0] for case in PHASE2_CASES)) as out:
        yield {
            case: [torch.load(f"{out}.{case}.{r}") for r in range(PHASE2_CASES[case][0])]
            for case in range(len(PHASE2_CASES))
        }


@pytest.mark.parametrize(
    "case",
    range(len(PHASE2_CASES)),
    ids=[f"w{w}-n{n}-b{b}-a{a}{'-shared' if s else ''}" for w, n, b, a, s in PHASE2_CASES],
)
def test_phase2_over_ranks_equals_dense_attention_over_the_same_keys(tiny_llama, phase2_results, case):
    world, n, block, anchor, _ = PHASE2_CASES[case]
    results = phase2_results[case]
    if n == 10:
        assert 0 in results[0]["blocks"]
    ctx = torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(3)).tolist()
    cache = reference_context_cache(tiny_llama, ctx, block, anchor)
    ref_query = reference_query_logits(tiny_llama, cache, n, QUERY)
    ref_decode = reference_query_logits(tiny_llama, cache, n + len(QUERY), [7])
    for result in results:  # every rank computes the same merged attention
        torch.testing.assert_close(result["query"], ref_query, atol=1e-5, rtol=0)
        torch.testing.assert_close(result["decode"], ref_decode, atol=1e-5, rtol=0)


def test_several_queries_reuse_one_encoding(tiny_llama):
    ctx = torch.randint(0, 101, (40,), generator=torch.Generator().manual_seed(4)).tolist()
    engine = Engine(tiny_llama, IdTokenizer())
    queries = [[1, 2, 3], [4, 5], [1, 2, 3]]
    events = list(engine.run(Request(ctx, queries, settings_of("star", 6, block_size=16))))
    encodings = [e for e in events if e.kind == "context_encoded"]
    assert len(encodings) == 1
    answers = {e.query: e.answer for e in events if e.kind == "stats"}
    assert answers[0] == answers[2]  # the tail of query 1 did not leak into query 2


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(context=[], queries=[[1]]), EmptyInputError, "context is empty"),
        (dict(context="", queries=[[1]]), EmptyInputError, "context is empty"),
        (dict(context=[1, 2], queries=[[]]), EmptyInputError, "query is empty"),
        (dict(context=[1, 2], queries=[]), EmptyInputError, "no query"),
        (dict(context=[1, 2], queries=[[1]], block_size=0), BadSettingError, "block size must be at least 1"),
        (dict(context=[1, 2], queries=[[1]], block_size=4, anchor_size=8), BadSettingError, "anchor size 8"),
        (dict(context=[1, 2], queries=[[1]], mode="ring-of-fire"), BadSettingError, "unknown attention mode"),
        (
            dict(context=[1] * 1000, queries=[[1] * 20], steps=30, mode="global"),  # star: local positions
            ContextTooLongError,
            r"context \(1000\) \+ query \(20\) \+ max tokens \(30\) = 1050 .* limit of 1024",
        ),
        (dict(context=[1], queries=[[1]], steps=0), BadSettingError, "max tokens"),
    ],
)
def test_bad_requests_raise_documented_errors(tiny_llama, kwargs, error, words):
    engine = Engine(tiny_llama, IdTokenizer())
    context, queries = kwargs.pop("context"), kwargs.pop("queries")
    settings = dict(mode=kwargs.pop("mode", "star"), steps=kwargs.pop("steps", 16))
    with pytest.raises(error, match=words):
        list(engine.run(Request(context, queries, settings_of(**settings, **kwargs))))
