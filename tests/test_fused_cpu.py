"""The fused-kernel wrappers (engine.fused) leave CPU runs exactly as eager transformers."""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from tests.helpers import tiny_config


def test_fused_wrappers_fall_back_to_eager_on_cpu():
    from engine.fused import fuse_pointwise

    torch.manual_seed(0)
    config = tiny_config("llama", vocab=100, num_hidden_layers=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 100, (1, 17))
    with torch.no_grad():
        ref = model(ids).logits
        counts = fuse_pointwise(model)
        out = model(ids).logits
        again = fuse_pointwise(model)  # idempotent
    assert counts["norm"] == 5 and counts["mlp"] == 2
    assert again["norm"] == 0 and again["mlp"] == 0 and again["rope"] == 0
    assert torch.equal(out, ref)
