"""The fp8 KV cache on CUDA (issue 16): the Triton split-KV kernel dequantizing as it reads, against
float64 attention over the dequantized KV; the engine's decode (eager and CUDA graph) over an fp8
context against the CPU path's math (needs CUDA)."""

from __future__ import annotations

import pytest
import torch

from kernels import dequantize, quantize_fp8

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _reference(q, k, v, scale):
    """float64 softmax attention (GQA by repeating KV heads) → (O, LSE)."""
    g = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    s = q.double() @ k.transpose(-1, -2) * scale
    lse = torch.logsumexp(s, -1)
    return (s - lse[..., None]).exp() @ v, lse


@pytest.mark.parametrize("v_keys_major", [True, False], ids=["v_keys_major", "v_rows"])
@pytest.mark.parametrize(
    "hq,hkv,lq,lk,d",
    [(32, 8, 1, 20000, 128), (32, 8, 37, 5000, 128), (4, 4, 3, 777, 64), (12, 3, 1, 130, 256)],
)
def test_split_kv_over_fp8_equals_attention_over_the_dequantized_kv(hq, hkv, lq, lk, d, v_keys_major):
    from kernels.quant import empty_keys_major
    from kernels.triton_attention import split_kv_attention

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, hq, lq, d, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(1, hkv, lk, d, device="cuda", generator=g) * 3
    v = torch.randn(1, hkv, lk, d, device="cuda", generator=g)
    (k8, ks), (v8, vs) = quantize_fp8(k), quantize_fp8(v)
    stored = v8
    if v_keys_major:  # engine.cache's layout
        stored = empty_keys_major(v8.shape, "cuda")
        stored.copy_(v8)
    out, lse = split_kv_attention(q, k8, stored, d**-0.5, kv_scales=(ks, vs))
    keys, values = dequantize(k8, ks, torch.float64), dequantize(v8, vs, torch.float64)
    ref, ref_lse = _reference(q, keys, values, d**-0.5)
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-2
    torch.testing.assert_close(lse.double(), ref_lse, atol=5e-2, rtol=0)


@pytest.mark.parametrize("spread", [2.0, 3.0])
def test_split_kv_over_fp8_keeps_the_weight_of_small_probabilities_on_small_values(spread):
    """Values of a small range (scales near 1e-5, as early layers hold) under scores spread over a
    few units, in one split (a long context's splits hold thousands of keys): each probability
    times its value scale in fp16 fell below its normal range, flushing most keys' weight (1-3%
    off the output); relative to the tile's largest scale it keeps them."""
    from kernels.triton_attention import split_kv_attention

    d, n = 128, 20000
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 1, d, generator=g)
    along = q[0, :, 0].mean(0)
    along = along / along.norm() ** 2 * spread * d**0.5  # q·k/sqrt(d) ~ N(0, spread²) per key
    k = torch.randn(1, 1, n, d, generator=g) * 0.05 + torch.randn(1, 1, n, 1, generator=g) * along
    v = (torch.randn(1, 1, n, d, generator=g) * 0.5 + torch.randn(1, 1, 1, d, generator=g)) * 0.01
    (k8, ks), (v8, vs) = quantize_fp8(k.cuda()), quantize_fp8(v.cuda())
    q = q.cuda().bfloat16()
    out, _ = split_kv_attention(q, k8, v8, d**-0.5, splits=1, kv_scales=(ks, vs))
    ref, _ = _reference(q, dequantize(k8, ks, torch.float64), dequantize(v8, vs, torch.float64), d**-0.5)
    error = float((out.double() - ref).norm() / ref.norm())
    # The output is bf16: rounding the exact result to it alone costs ~1e-3 (the flush cost 1-3e-2).
    rounding = float((ref.to(out.dtype).double() - ref).norm() / ref.norm())
    assert error < 2 * rounding + 5e-4, (error, rounding)


def test_decode_over_an_fp8_context_and_a_bf16_tail_with_a_device_length():
    from kernels.triton_attention import decode_attention

    g = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(1, 32, 1, 128, device="cuda", generator=g, dtype=torch.bfloat16)
    ctx = [torch.randn(1, 8, 9000, 128, device="cuda", generator=g) for _ in range(2)]
    tail = [torch.randn(1, 8, 64, 128, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(2)]
    (k8, ks), (v8, vs) = quantize_fp8(ctx[0]), quantize_fp8(ctx[1])
    out, _ = decode_attention(q, k8, v8, *tail, torch.tensor([10], device="cuda"), 128**-0.5, (ks, vs))
    keys = torch.cat([dequantize(k8, ks, torch.float64), tail[0][:, :, :10].double()], 2)
    values = torch.cat([dequantize(v8, vs, torch.float64), tail[1][:, :, :10].double()], 2)
    ref, _ = _reference(q, keys, values, 128**-0.5)
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-2


def _answer_logits(kv_dtype: str, graph: bool) -> torch.Tensor:
    """A small bf16 Llama on CUDA: star phase 1 over 3000 tokens, the query, 12 decode steps."""
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
    engine = Engine(model, type("Tok", (), {"eos_token_id": None, "decode": lambda *a, **k: ""})())
    context = torch.randint(0, 1000, (3000,)).tolist()
    plan = star_plan(len(context), 1024, max_tokens=20, query_tokens=5)
    plan = type(plan)(**{**plan.__dict__, "kv_dtype": kv_dtype})
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
        logits = [runner.forward([1, 2, 3, 4, 5], len(context), cache).float()[-1:].clone()]
        position = len(context) + 5

        def eager(token, _pos=[position]):  # noqa: B006 - a counter local to this run
            out = runner.forward([token], _pos[0], cache)
            _pos[0] += 1
            return out

        step = DecodeStep(model, cache, position, torch.device("cuda"), eager, enabled=graph)
        logits += [step(t).float().reshape(1, -1).clone() for t in range(10, 22)]
        assert (step.graph is not None) == graph, step.fallback_reason
        step.close()
    return torch.cat(logits)


def test_fp8_decode_graph_matches_eager_and_stays_near_the_exact_cache():
    fp8_graph, fp8_eager = _answer_logits("fp8", True), _answer_logits("fp8", False)
    exact = _answer_logits("model", False)
    assert float((fp8_graph - fp8_eager).norm() / fp8_eager.norm()) < 1e-2
    drift = float((fp8_eager - exact).norm() / exact.norm())
    assert 1e-4 < drift < 0.1, drift
