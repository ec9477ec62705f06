"""``bench.long_inputs``' key temperature: the context's keys scaled after phase 1, from the same
originals every time, whatever the cache stores (``--kv-dtype auto`` is fp8 on the GPU the bench
runs on, where the keys are e4m3 values with a scale per token)."""

from __future__ import annotations

import pytest
import torch

from bench.long_inputs import scale_context_keys
from engine import Engine
from tests.helpers import IdTokenizer, star_plan


def _keys(cache) -> list[torch.Tensor]:
    """Every layer's context keys in float32, read back as phase 2 reads them."""
    return [cache.context_kv_dequantized(i, torch.float32)[0].clone() for i in range(len(cache.layers))]


@pytest.mark.parametrize("kv_dtype", ["model", "fp8"])
def test_the_temperature_scales_the_stored_keys_from_their_originals(tiny_llama, kv_dtype):
    ctx = torch.randint(0, 101, (40,), generator=torch.Generator().manual_seed(4)).tolist()
    plan = star_plan(len(ctx), 16, 8)
    plan = type(plan)(**{**plan.__dict__, "kv_dtype": kv_dtype})
    gen = Engine(tiny_llama, IdTokenizer()).encode_context(ctx, plan)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        encoded = stop.value
    before, originals = _keys(encoded.cache), []
    for factor in (2.0, 1.5):  # the second scales the originals, not the keys the first left
        scale_context_keys(encoded, factor, originals)
        for scaled, original in zip(_keys(encoded.cache), before, strict=True):
            torch.testing.assert_close(scaled, original * factor, rtol=1e-6, atol=0)
