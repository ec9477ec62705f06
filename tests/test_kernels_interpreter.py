"""The Triton kernels' logic on CPU: Triton's interpreter runs them in one process of their own
(tests/interpreter_checks.py; ``TRITON_INTERPRET=1`` must be set before triton is imported), and
each test here reads its kernel's numbers. The GPU tests (test_gemv_gpu.py, test_fused_gpu.py,
test_kernels_gpu*.py) check speed-critical shapes and bfloat16 on the device; these check masking,
strides and the arithmetic in CI, which has no GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent
ULP = 1.0  # float16 spacings: results rounded once, to the nearest
ATTENTION_ERR = 1e-3  # float16 probabilities and output; a masking slip is ~1e-1
LSE_ERR = 1e-4


@pytest.fixture(scope="module")
def results() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-m", "tests.interpreter_checks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


def _group(results: dict, prefix: str) -> dict:
    group = {name: r for name, r in results.items() if name.startswith(prefix + "/")}
    crashed = {name: r for name, r in results.items() if name.endswith("/crashed")}
    assert group, f"no {prefix} checks ran; crashed: {crashed}"
    return group


def test_gemv3_matches_float64_linear(results):
    cases = _group(results, "gemv3")
    assert len(cases) == 14  # 7 shapes, with and without bias
    for name, r in cases.items():
        assert r["err_ulp"] <= ULP, name
    assert results["gemv/offset_weight"]["err_ulp"] <= ULP


def test_gemv_whole_rows_path_matches_float64_and_eager(results):
    """The weight products' PDL path (rows loaded whole before the wait), forced on CPU."""
    cases = _group(results, "gemv_whole_rows")
    assert len(cases) == 6  # Q/K/V, the residual add and SiLU-mul, K = 4096 and 600
    for name, r in cases.items():
        assert r["err_ulp"] <= (2 * ULP if "silu" in name else ULP), name


def test_gemv_adds_a_residual_as_eager_does(results):
    """``residual + linear(x)`` in the product's launch (and on the cuBLAS path) equals eager's
    product rounded, then summed and rounded."""
    cases = _group(results, "gemv/residual")
    assert len(cases) == 4
    for name, r in cases.items():
        assert r["err_ulp"] <= ULP, name


def test_gemv_takes_one_contiguous_row_and_matching_weights(results):
    taken = {name.removeprefix("eligible/"): r["taken"] for name, r in _group(results, "eligible").items()}
    assert taken == {
        "one_row": True,
        "one_row_1d": True,
        "two_rows": False,
        "strided_row": False,
        "row_of_a_block": True,
        "float32_row": False,
        "weight_transposed": False,
        "weight_other_dtype": False,
        "weight_other_k": False,
    }


def test_gemv_takes_the_rms_norm_before_it_as_the_model_computes_it(results):
    """The decode step's norms in the Q/K/V and gate/up launches (``norm=``): the model's RMSNorm
    (float32 statistics, two roundings) then the product, on every path of the kernels."""
    cases = _group(results, "gemv_norm")
    assert len(cases) == 8  # tiled and whole rows: Q/K/V at two K, a looped product, SiLU-mul
    for name, r in cases.items():
        assert r["err_ulp"] <= 2 * ULP, name


def test_gemv_rotates_q_and_k_and_writes_the_cache_slot_as_the_model_would(results):
    """``rope=``/``dest=``: Q and K rotated in the Q/K/V launch and K/V written at a cache slot, as
    the projections, transformers' ``apply_rotary_pos_emb`` and a slot write give them."""
    cases = _group(results, "gemv_rope")
    assert len(cases) == 4  # tiled and whole rows, heads of 16 and 64 (with a bias)
    for name, r in cases.items():
        assert r["other_slots_untouched"], name
        for key in ("q_err_ulp", "k_err_ulp", "v_err_ulp", "slot_k_err_ulp", "slot_v_err_ulp"):
            assert r[key] <= ULP, (name, key)


def test_argmax_is_torchs(results):
    """Greedy decoding's argmax (``kernels.argmax``): torch.argmax's index, ties and NaNs included."""
    cases = _group(results, "argmax")
    assert len(cases) == 10
    for name, r in cases.items():
        assert r["got"] == r["torch"], name


def test_gemv_silu_mul_rounds_as_eager(results):
    for name, r in _group(results, "gemv_silu_mul").items():
        assert r["err_ulp"] <= 2 * ULP, name
        # The check tells the orders apart: rounding once agrees far less often.
        assert r["equal_eager"] >= 0.95 > r["equal_rounded_once"], name


def test_rope_pair_equals_transformers_and_keeps_layout(results):
    for name, r in _group(results, "rope_pair").items():
        assert r["equal"] and r["layout_kept"], name
    for name, r in _group(results, "rope").items():
        assert r["equal"], name


def test_write_slot_equals_index_copy(results):
    cases = _group(results, "write_slot")
    for dtype in ("int64", "int32"):
        assert cases[f"write_slot/{dtype}"] == {"done": True, "equal": True}
    declined = cases["write_slot/declined"]  # left to index_copy_, which raises where it should
    assert declined["returned"] == {"two_tokens": False, "float_slot": False, "two_slots": False}
    assert declined["untouched"]


def test_merge_stacked_matches_float64(results):
    cases = _group(results, "merge_stacked")
    assert len(cases) == 5  # three shapes, a head dim of 80, a strided last dim
    for name, r in cases.items():
        assert r["err_ulp"] <= ULP and r["lse_err"] <= 1e-5, name
        if "empty_row_zero" in r:  # the shapes with a row of no keys
            assert r["empty_row_zero"] and r["empty_row_lse_neg_inf"], name


def test_split_kv_attention_matches_float64(results):
    cases = _group(results, "split_kv")
    assert len(cases) == 8  # 3 shapes, a device length, fp8 and fp8 with a device length (V both ways)
    for name, r in cases.items():
        assert "error" not in r, f"{name}: {r.get('error')}"
        assert r.get("keys_major", "keys_major" not in name), name
        lse_err = 10 * LSE_ERR if "fp8" in name else LSE_ERR  # fp16 dots over a per-row scaled query
        assert r["err"] <= ATTENTION_ERR and r["lse_err"] <= lse_err, name


def test_decode_attention_joined_and_separate(results):
    cases = _group(results, "decode")
    assert cases["decode/joined"]["detected"]
    # an fp8 context's tail in the context's launch (kernels.triton_attention.TAIL_IN_LAUNCH), or apart
    assert cases["decode/fp8_context_v_keys_major"]["launches"] == 1
    assert cases["decode/fp8_context_tail_apart"]["launches"] == 2
    for name, r in cases.items():
        assert "error" not in r, f"{name}: {r.get('error')}"
        lse_err = 10 * LSE_ERR if "fp8" in name else LSE_ERR
        assert r["err"] <= ATTENTION_ERR and r["lse_err"] <= lse_err, name


@pytest.mark.parametrize("arch", ["llama", "qwen2", "llama/norms_in"])
def test_fused_wrappers_decode_as_eager(results, arch):
    """engine.fused's hook-up (Q/K/V from one launch, O/down/LM head, gate/up/SiLU, RoPE, norms,
    the decoder layers' residual adds in the O and down launches) gives eager transformers'
    logits, every decode-step product going through kernels.gemv."""
    _group(results, "wrappers")
    r = results[f"wrappers/{arch}/decode"]
    assert r["err_ulp"] <= 4 * ULP
    assert r["tied"] == (arch == "qwen2")
    assert r["norms_in_launch"] == (2 if arch.endswith("norms_in") else 1)
    assert r["rope_in_launch"]  # engine.fused.ROPE_IN_LAUNCH: Q and K rotated in their launch
    layers, steps = r["layers"], r["steps"]
    assert r["calls"] == {  # no F.linear from the wrappers: K and V came from Q's launch; no RoPE kernel
        "gemv3": steps * (3 * layers + 1),  # Q/K/V, O and down per layer, the LM head
        "gemv3+residual": steps * 2 * layers,  # O and down, each with its layer's residual
        "gemv_silu_mul": steps * layers,
        # the final norm, and each layer's norms not taken into its products' launches
        "rms_norm": steps * (layers * (2 - r["norms_in_launch"]) + 1),
    }


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_layer_over_tokens_adds_in_place_as_eager(results, arch):
    """A decoder layer over several tokens (engine.fused._layer_tokens): eager transformers' logits;
    the O and down products added to the residual stream in place (the MLP over slices of tokens);
    the embedding's output, which no fused layer made, not written."""
    _group(results, "layer_tokens")
    r = results[f"layer_tokens/{arch}"]
    assert r["err_ulp"] <= 4 * ULP
    assert r["adds_in_place"] == r["expected"]
    assert r["embedding_kept"]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("order", ["k_q_v", "q_v_k", "q_then_kv_of_other", "q_k_v_twice"])
def test_qkv_projections_in_any_order(results, arch, order):
    assert results[f"wrappers/{arch}/order/{order}"]["err_ulp"] <= ULP


def test_split_kv_refuses_a_head_past_32_bit_key_offsets():
    """The kernel's key offsets within a head are 32-bit: a head of 2^24 keys of 128 dims would
    wrap and read the wrong keys, so it is refused before launch (meta tensors: no memory)."""
    import torch

    from kernels import triton_attention as tri

    q = torch.empty(1, 4, 1, 128, device="meta", dtype=torch.float16)
    k = torch.empty(1, 1, 2**24, 128, device="meta", dtype=torch.float16)
    with pytest.raises(ValueError, match=r"2\^31"):
        tri.split_kv_attention(q, k, k, 0.1, splits=4)
    short = torch.empty(1, 1, 2**24 - 1, 128, device="meta", dtype=torch.float16)
    with pytest.raises(Exception) as caught:  # past the check: the launch itself fails on meta
        tri.split_kv_attention(q, short, short, 0.1, splits=4)
    assert "2^31" not in str(caught.value)
