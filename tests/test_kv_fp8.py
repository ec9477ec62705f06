"""The fp8 KV cache (issue 16): phase 1 stores the context's KV as float8 e4m3 with one float32
scale per token and KV head; phase 2 and decoding read it.

The reference is transformers' own dense model: the paper's per-block phase 1 computed with its
sdpa and DynamicCache (tests/helpers.py), whose K and V this file quantizes with a few lines of its
own (amax / 448 per token, a cast to torch's e4m3). The engine's query and decode logits over
1, 2 and 3 gloo ranks must equal the dense model's logits over that quantized cache, and stay near
(not equal to) its logits over the exact cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers.cache_utils import DynamicCache

from engine import Engine, Request, Stats, Token
from engine.context_store import StoreSpec
from engine.errors import BadSettingError
from engine.modelcall import call_model
from kernels import attention_with_lse, attention_with_lse_fp8, decode_attention, dequantize, quantize_fp8
from kernels.quant import keys_major
from tests.helpers import (
    IdTokenizer,
    reference_context_cache,
    reference_query_logits,
    settings_of,
    spawned_ranks,
    star_plan,
    tiny_config,
)
from tests.test_engine_exact import PretendRank

E4M3_MAX = 448.0
QUERY = [5, 6, 7, 8, 9]


def quantized_like_the_format(x: torch.Tensor) -> torch.Tensor:
    """The fp8 format written out here, independently of kernels.quant: per-token amax / 448."""
    scale = (x.abs().amax(-1, keepdim=True).float() / E4M3_MAX).clamp_min(1e-12)
    return ((x.float() / scale).to(torch.float8_e4m3fn).float() * scale).to(x.dtype)


def quantized_cache(cache: DynamicCache) -> DynamicCache:
    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(quantized_like_the_format(layer.keys), quantized_like_the_format(layer.values), i)
    return out


def drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def test_the_format_keeps_e4m3s_relative_precision_per_token():
    x = (
        torch.randn(2, 3, 50, 64, generator=torch.Generator().manual_seed(0))
        * torch.logspace(-3, 3, 50)[:, None]
    )
    x[0, 0, 7] = 0  # an all-zero token: a finite scale, exact zeros back
    values, scale = quantize_fp8(x)
    assert values.dtype == torch.float8_e4m3fn and scale.shape == x.shape[:3] and scale.dtype == torch.float32
    back = dequantize(values, scale, torch.float32)
    # Round to nearest with 3 mantissa bits: within 2^-4 of each value, or of the subnormal step.
    bound = torch.maximum(x.abs() * 2**-4, scale.unsqueeze(-1) * 2**-9) * 1.0001
    assert bool(((back - x).abs() <= bound).all())
    assert bool((back[0, 0, 7] == 0).all())
    amax = x.abs().amax(-1)  # every token's largest component survives almost exactly
    torch.testing.assert_close(back.abs().amax(-1), amax, rtol=2**-4, atol=0)


def test_attention_over_fp8_kv_is_attention_over_the_dequantized_kv():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 8, 3, 32, generator=g)
    k, v = torch.randn(1, 2, 40, 32, generator=g), torch.randn(1, 2, 40, 32, generator=g)
    (k8, ks), (v8, vs) = quantize_fp8(k), quantize_fp8(v)
    out, lse = attention_with_lse_fp8(q, k8, v8, (ks, vs), 0.2)
    ref, ref_lse = attention_with_lse(q, dequantize(k8, ks, q.dtype), dequantize(v8, vs, q.dtype), 0.2)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-6, rtol=0)
    exact, _ = attention_with_lse(q, k, v, 0.2)
    assert 1e-4 < (out - exact).abs().max() < 0.1  # quantized, but close
    tail_k, tail_v = torch.randn(1, 2, 6, 32, generator=g), torch.randn(1, 2, 6, 32, generator=g)
    both, _ = decode_attention(q, k8, v8, tail_k, tail_v, torch.tensor([4]), 0.2, (ks, vs))
    whole_k = torch.cat([dequantize(k8, ks, q.dtype), tail_k[:, :, :4]], 2)
    whole_v = torch.cat([dequantize(v8, vs, q.dtype), tail_v[:, :, :4]], 2)
    torch.testing.assert_close(both, attention_with_lse(q, whole_k, whole_v, 0.2)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("rank,world", [(0, 1), (0, 2), (1, 2), (2, 3)])
def test_phase1_stores_the_paper_kv_in_fp8(tiny_llama, rank, world):
    ctx = torch.randint(0, 101, (75,), generator=torch.Generator().manual_seed(2)).tolist()
    plan = star_plan(len(ctx), 16, 5, world)
    plan = type(plan)(**{**plan.__dict__, "kv_dtype": "fp8"})
    engine = Engine(tiny_llama, IdTokenizer(), comm=PretendRank(rank, world))
    cache = drain(engine.encode_context(ctx, plan)).cache
    reference = reference_context_cache(tiny_llama, ctx, 16, 5)
    start, stop = plan.layout.rank_span(rank)
    for layer in range(tiny_llama.config.num_hidden_layers):
        k, v = cache.context_kv(layer)
        assert k.dtype == v.dtype == torch.float8_e4m3fn and cache.tail_room == 0
        assert keys_major(v) and not keys_major(k)  # the layout the decode kernel reads V in
        ks, vs = cache.context_scales(layer)
        for stored, scale, exact in (
            (k, ks, reference.layers[layer].keys),
            (v, vs, reference.layers[layer].values),
        ):
            exact = exact[:, :, start:stop]
            back = dequantize(stored, scale, torch.float32)
            bound = torch.maximum(exact.abs() * 2**-4, scale.unsqueeze(-1) * 2**-9) * 1.01 + 1e-6
            assert bool(((back - exact).abs() <= bound).all())
        assert cache.layers[layer].anchor_k is None  # dropped after phase 1


CASES = [(1, 50, 8, 8, False), (2, 50, 8, 8, True), (3, 50, 8, 3, True), (3, 10, 8, 1, False)]


def _fp8_rank(rank, procs, init_file, out_path):
    """Every case on a subgroup of the first ``world`` processes: fp8 phase 1, the query, one
    decode step (eager), as tests/test_engine_exact.py does for the exact cache."""
    import torch.distributed as dist
    from transformers import LlamaForCausalLM

    from engine.comm import DistComm

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config("llama")).eval()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=procs)
    try:
        for case, (world, n, block, anchor, share) in enumerate(CASES):
            group = dist.new_group(list(range(world)))
            if rank >= world:
                continue
            engine = Engine(model, IdTokenizer(), comm=DistComm(torch.device("cpu"), group))
            ctx = torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(3)).tolist()
            plan = star_plan(n, block, anchor, world, share=share)
            plan = type(plan)(**{**plan.__dict__, "kv_dtype": "fp8"})
            cache = drain(engine.encode_context(ctx, plan)).cache
            cache.start_query(len(QUERY) + 1)
            with torch.inference_mode():
                positions = torch.arange(n, n + len(QUERY)).unsqueeze(0)
                q = call_model(model, torch.tensor([QUERY]), positions, cache, 0, star_cache=cache).logits[0]
                positions = torch.tensor([[n + len(QUERY)]])
                d = call_model(model, torch.tensor([[7]]), positions, cache, 0, star_cache=cache).logits[0]
            torch.save({"query": q, "decode": d}, f"{out_path}.{case}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fp8_results():
    with spawned_ranks(_fp8_rank, max(case[0] for case in CASES)) as out:
        yield {
            case: [torch.load(f"{out}.{case}.{r}") for r in range(CASES[case][0])]
            for case in range(len(CASES))
        }


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"w{c[0]}-n{c[1]}-a{c[3]}" for c in CASES])
def test_phase2_over_fp8_equals_the_dense_model_over_the_quantized_cache(tiny_llama, fp8_results, case):
    world, n, block, anchor, _ = CASES[case]
    ctx = torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(3)).tolist()
    exact = reference_context_cache(tiny_llama, ctx, block, anchor)
    quantized = quantized_cache(exact)  # the query's KV joins each cache as the model runs
    ref_query = reference_query_logits(tiny_llama, quantized, n, QUERY)
    ref_decode = reference_query_logits(tiny_llama, quantized, n + len(QUERY), [7])
    exact_query = reference_query_logits(tiny_llama, exact, n, QUERY)
    for result in fp8_results[case]:  # every rank computes the same merged attention
        torch.testing.assert_close(result["query"], ref_query, atol=2e-4, rtol=0)
        torch.testing.assert_close(result["decode"], ref_decode, atol=2e-4, rtol=0)
        drift = (result["query"] - exact_query).abs().max()
        assert 1e-4 < drift < 0.05  # fp8 is not exact, and not far off


def test_auto_is_fp8_on_cuda_for_our_own_caches_of_16_bit_models_only():
    from engine.runplan import make_run_plan

    def kv(mode, device, dtype=None):
        plan = make_run_plan(settings_of(mode, 4, kv_dtype="auto"), 40, 4, 1, device, dtype=dtype)
        return str(plan.kv_dtype)

    assert kv("star", "cuda") == kv("ring", "cuda") == kv("star", "cuda", "float16") == "fp8"
    assert kv("star", "cpu") == kv("global", "cuda") == kv("star", "cuda", "float32") == "model"


def test_auto_keeps_the_models_dtype_where_the_fp8_kernel_does_not_serve_the_attention():
    import transformers

    from engine.plan import CostModel
    from engine.runplan import make_run_plan

    sizes = dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    configs = {
        "llama": transformers.LlamaConfig(**sizes, head_dim=64),
        "head dim 96": transformers.LlamaConfig(**sizes, head_dim=96),
        "sliding window": transformers.MistralConfig(**sizes, head_dim=64, sliding_window=128),
        "soft-capping": transformers.Gemma2Config(**sizes, head_dim=64),
    }
    kinds = {}
    for name, config in configs.items():
        cost = CostModel.for_config(config)
        plan = make_run_plan(settings_of("star", 4, kv_dtype="auto"), 40, 4, 1, "cuda", cost=cost)
        kinds[name] = str(plan.kv_dtype)
    assert kinds.pop("llama") == "fp8"
    assert set(kinds.values()) == {"model"}, kinds


def test_fp8_is_refused_where_transformers_keeps_the_cache():
    from engine.runplan import make_run_plan

    assert make_run_plan(settings_of("ring", 4, kv_dtype="fp8"), 40, 4, 2).kv_fp8
    with pytest.raises(BadSettingError, match="--kv-dtype fp8 .* global"):
        make_run_plan(settings_of("global", 4, kv_dtype="fp8"), 40, 4, 1)


def test_an_fp8_entry_is_saved_loaded_and_never_mixed_with_an_exact_one(tiny_llama, tmp_path):
    spec = StoreSpec(str(tmp_path / "contexts"), 1 << 30, "tiny-llama-test")
    ctx = torch.randint(0, 101, (70,), generator=torch.Generator().manual_seed(5)).tolist()
    engine = Engine(tiny_llama, IdTokenizer())

    def ask(query, saved, **kwargs):
        events = list(
            engine.run(Request(ctx, [query], settings_of("star", 8, block_size=16, **kwargs), saved=saved))
        )
        tokens = [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]
        return tokens, next(e for e in events if isinstance(e, Stats)).context_cache

    first = ask([3, 14, 15], spec, kv_dtype="fp8")
    hit = ask([92, 65, 35], spec, kv_dtype="fp8")
    fresh = ask([92, 65, 35], None, kv_dtype="fp8")
    exact = ask([92, 65, 35], spec)
    assert (first[1], hit[1], fresh[1], exact[1]) == ("miss", "hit", "off", "miss")
    assert hit[0] == fresh[0]
    files = sorted(Path(spec.directory).rglob("*.safetensors"))
    assert len(files) == 2
    sizes = sorted(f.stat().st_size for f in files)
    assert sizes[0] < 0.6 * sizes[1]  # fp32 tiny model: fp8 + scales is far smaller


def test_the_delta_correction_reads_an_fp8_context_as_phase_2_does(tiny_llama):
    """One rank, stride 1 (every row exact over the earlier blocks): under fp8 the earlier blocks
    are read quantized, so phase 1 equals the dense model run block by block over a cache that is
    quantized after each block, and is near (not equal to) the exact dense cache."""
    ctx = torch.randint(0, 101, (48,), generator=torch.Generator().manual_seed(6)).tolist()
    plan = star_plan(len(ctx), 16, 16)
    plan = type(plan)(**{**plan.__dict__, "kv_dtype": "fp8", "correction": "delta", "delta_stride": 1})
    cache = drain(Engine(tiny_llama, IdTokenizer()).encode_context(ctx, plan)).cache
    # The reference: transformers' dense model, block by block, each block's KV quantized as it joins.
    from tests.helpers import use_dense_attention

    use_dense_attention(tiny_llama)
    reference = DynamicCache()
    with torch.no_grad():
        for start in range(0, len(ctx), 16):
            ids = torch.tensor([ctx[start : start + 16]])
            call_model(tiny_llama, ids, torch.arange(start, start + 16)[None], reference, logits_to_keep=1)
            for layer in reference.layers:
                layer.keys[:, :, start:] = quantized_like_the_format(layer.keys[:, :, start:])
                layer.values[:, :, start:] = quantized_like_the_format(layer.values[:, :, start:])
    for i in range(tiny_llama.config.num_hidden_layers):
        k, v = cache.context_kv(i)
        ks, vs = cache.context_scales(i)
        torch.testing.assert_close(
            dequantize(k, ks, torch.float32), reference.layers[i].keys, atol=2e-3, rtol=0
        )
        torch.testing.assert_close(
            dequantize(v, vs, torch.float32), reference.layers[i].values, atol=2e-3, rtol=0
        )
