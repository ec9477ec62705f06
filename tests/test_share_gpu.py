"""Anchor sharing over NCCL (needs 2 CUDA GPUs): rank 1's phase-1 KV with the anchor sent by rank 0
equals its KV with the anchor recomputed, and greedy answers agree."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.helpers import spawned_ranks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


def _rank(rank, procs, init_file, out_path):
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.api import Engine
    from engine.comm import DistComm
    from tests.helpers import IdTokenizer, star_plan

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=1024,
            intermediate_size=2048,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=128,
            vocab_size=1000,
            max_position_embeddings=16384,
        )
        model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
        engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cuda", rank)))
        ctx = torch.randint(0, 1000, (9000,), generator=torch.Generator().manual_seed(5)).tolist()
        shared_plan = star_plan(len(ctx), 2048, None, 2, share=True, max_tokens=8, query_tokens=4)
        assert shared_plan.layout.anchor_shared
        kv, tokens = {}, {}
        for share in (True, False):  # the same blocks on the same ranks, the anchor sent or recomputed
            layout = dataclasses.replace(shared_plan.layout, anchor_shared=share)
            gen = engine.encode_context(ctx, dataclasses.replace(shared_plan, layout=layout))
            try:
                while True:
                    next(gen)
            except StopIteration as stop:
                encoded = stop.value
            kv[share] = [torch.cat(encoded.cache.context_kv(i), 0).cpu() for i in range(4)]
            events = engine.answer(encoded, [5, 6, 7, 8])
            tokens[share] = [e.token_id for e in events if e.kind == "token" and e.token_id >= 0]
        torch.save({"kv": kv, "tokens": tokens, "plan": shared_plan.blocks_per_rank()}, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_shared_anchor_equals_recomputed_anchor_over_nccl():
    with spawned_ranks(_rank, 2) as out:
        results = [torch.load(f"{out}.{r}") for r in range(2)]
    for res in results:
        for shared, recomputed in zip(res["kv"][True], res["kv"][False], strict=True):
            # anchor = block size: the same forward on either GPU, so equal up to kernel choice
            rel = float((shared.double() - recomputed.double()).norm() / recomputed.double().norm())
            assert rel < 1e-3, rel
    host = results[1]["tokens"]
    assert len(host[True]) == 8 and host[True] == host[False]
