"""``ring`` mode is dense causal attention, exactly: real gloo processes (1-3 ranks, subgroups of
one 3-process job) must give the dense model's greedy tokens on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from engine.api import Engine, Request
from engine.plan import ZigzagLayout
from tests.helpers import IdTokenizer, dense_greedy, settings_of, spawned_ranks, tiny_config

CASES = [(1, 40), (2, 40), (3, 50), (3, 7)]  # (ranks, context tokens); 7 = uneven chunks of 1-2
QUERY = [5, 6, 7, 8, 9]
STEPS = 6


def _context(n: int) -> list[int]:
    return torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(n)).tolist()


def _rank(rank, procs, init_file, out_path):
    import torch.distributed as dist

    from engine.comm import DistComm

    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_config("llama")).eval()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        for case, (world, n) in enumerate(CASES):
            group = dist.new_group(list(range(world)))
            if rank >= world:
                continue
            engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cpu"), group))
            request = Request(_context(n), [QUERY], settings_of("ring", STEPS))
            tokens = [e.token_id for e in engine.run(request) if e.kind == "token" and e.token_id >= 0]
            if engine.comm.is_host:
                torch.save(tokens, f"{out_path}.{case}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ring_tokens():
    with spawned_ranks(_rank, 3) as out:
        yield [torch.load(f"{out}.{case}") for case in range(len(CASES))]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"w{w}-n{n}" for w, n in CASES])
def test_ring_gives_dense_greedy_tokens(tiny_llama, ring_tokens, case):
    world, n = CASES[case]
    assert ring_tokens[case] == dense_greedy(tiny_llama, _context(n) + QUERY, STEPS)


@pytest.mark.parametrize(("tokens", "world"), [(40, 2), (7, 3), (1000, 4), (9, 1)])
def test_zigzag_layout_covers_the_context_and_balances_it(tokens, world):
    layout = ZigzagLayout.build(tokens, world)
    held = sorted(p for r in range(world) for p in layout.positions(r))
    assert held == list(range(tokens))
    sizes = [len(layout.positions(r)) for r in range(world)]
    assert max(sizes) - min(sizes) <= 2
    plan = layout.as_plan()
    assert plan.anchor == 0 and plan.blocks_per_rank() == [2] * world
