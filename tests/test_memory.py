"""The memory estimate and the refusal up front (issue 16): the estimator's arithmetic against a
hand computation at Llama-3.1-8B's shape, its parameter count against the models transformers
builds, and through the CLI a run whose estimate exceeds the (faked) free memory refused before
any weights load, with both figures, exit 2 and a block size that the estimator says fits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers
from typer.testing import CliRunner

from engine import memory_budget
from engine.errors import NotEnoughMemoryError, error_from_name
from engine.memory import GiB, ModelShape, estimate, kv_element_bytes, parameter_count
from engine.memory_budget import Budget, check_budget
from engine.runplan import make_run_plan
from engine.settings import EngineOptions, GenerationSettings, RunSettings
from starcli import launch
from starcli.cli import app
from tests.test_model_zoo import TINY, ZOO

LLAMA_8B = transformers.LlamaConfig(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=128256,
)
H200_FREE = 139 * GiB  # what one H200 has free once a process holds its CUDA context
SAMPLE = "samples/long.txt"


def plan_8b(
    mode: str,
    n: int,
    block: int | None = None,
    world: int = 1,
    device: str = "cuda",
    kv_dtype: str = "model",
    **options,
):
    settings = RunSettings(
        attention=mode,
        block_size=block,
        generation=GenerationSettings(max_tokens=32),
        options=EngineOptions(**options),
        kv_dtype=kv_dtype,
    )
    dtype = "bfloat16" if device == "cuda" else "float32"
    return make_run_plan(settings, n, 64, world, device, None, None, dtype)


def test_the_8b_shape_by_hand():
    shape = ModelShape.for_config(LLAMA_8B)
    per_layer = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096  # q, o; k, v; MLP; norms
    assert shape.parameters == 32 * per_layer + 2 * 128256 * 4096 + 4096 == 8_030_261_248
    assert shape.kv_token_bytes(2) == 32 * 2 * 8 * 128 * 2 == 128 << 10  # 128 KiB a token in bf16
    assert shape.kv_token_bytes(1) == 32 * 2 * 8 * (128 + 4)  # fp8 with a float32 scale per head
    assert kv_element_bytes("model", "bfloat16") == 2 and kv_element_bytes("fp8", "bfloat16") == 1

    [rank] = estimate(plan_8b("star", 131072, 16384), shape)
    tokens, chunk = 16384, 8192
    # The largest of one layer's moments, per block token, in bf16: the attention sublayer holds
    # the residual, the normed input, Q, K, V and three outputs of Q's size (own, anchor, merged)
    # with their float32 LSEs; the MLP the residual, the normed input and its output buffer for
    # the whole block, gate/up/product for one chunk of 8K tokens. Here the MLP is the largest.
    attention = ((2 * 4096 + 4096 + 2 * 1024 + 3 * 4096) * 2 + 3 * 32 * 4) * tokens
    mlp = 3 * 4096 * 2 * tokens + 3 * 14336 * 2 * chunk
    assert attention < mlp
    rope_tables, logits = tokens * 128 * 16, 128256 * (2 + 8)  # one row of logits, and its float copy
    assert rank.phase1 == int((mlp + rope_tables + logits) * 1.25)
    assert rank.weights == 2 * 8_030_261_248
    assert rank.kv_cache == (131072 + 64 + 32) * (128 << 10)  # context, then room for query and answer
    assert rank.anchor == 0  # block 0 is on the rank: the anchor is its first tokens' KV
    assert rank.workspace == 1 * GiB
    assert rank.peak == rank.weights + rank.kv_cache + rank.phase1 + rank.workspace
    assert 33 * GiB < rank.peak < 34 * GiB


def test_the_issues_targets_by_the_estimate():
    shape = ModelShape.for_config(LLAMA_8B)

    def peak(plan, kv_bytes=None) -> float:
        return max(e.peak for e in estimate(plan, shape, kv_bytes)) / GiB

    assert peak(plan_8b("star", 524288, 65536)) < 90  # 64K blocks at 512K: one H200
    assert peak(plan_8b("global", 262144)) < 70 and peak(plan_8b("ring", 262144)) < 70
    assert peak(plan_8b("star", 1 << 20, 16384)) > 140  # 1M tokens in bf16: 128 GiB of KV alone
    assert peak(plan_8b("star", 1 << 20, 16384), kv_bytes=1) < 90  # in fp8
    whole = estimate(plan_8b("star", 131072, 65536, compile=True), shape)[0]
    chunked = estimate(plan_8b("star", 131072, 65536), shape)[0]
    assert whole.phase1 > chunked.phase1 + 3 * GiB  # compiled MLPs run whole (engine.runner)


def test_a_rank_holding_no_block_0_keeps_the_anchor():
    shape = ModelShape.for_config(LLAMA_8B)
    plan = plan_8b("star", 131072, 16384, world=2, share_anchor=False)
    first, second = estimate(plan, shape)
    assert first.anchor == 0 and second.anchor == 16384 * (128 << 10)
    (start0, stop0), (start1, stop1) = plan.layout.rank_span(0), plan.layout.rank_span(1)
    assert first.kv_cache == (stop0 - start0) * (128 << 10)
    assert second.kv_cache == (stop1 - start1 + 64 + 32) * (128 << 10)  # the query host: room for both
    shared = estimate(plan_8b("star", 131072, 16384, world=2, share_anchor=True), shape)
    assert shared[0].anchor == shared[1].anchor == 16384 * (128 << 10)  # sent, and received


@pytest.mark.parametrize("family", sorted(ZOO))
def test_the_parameter_count_matches_the_model_transformers_builds(family):
    class_name, overrides = ZOO[family]
    sizes = dict(hidden_size=512, intermediate_size=1376, num_attention_heads=8, vocab_size=1000)
    overrides = {k: v for k, v in overrides.items() if k != "head_dim"}
    if family == "gpt-neox":  # no grouped-query attention: its config has no KV-head count
        sizes["num_key_value_heads"] = 8
    if "moe_intermediate_size" in overrides:
        overrides["moe_intermediate_size"] = 344
    config = getattr(transformers, class_name)(**{**TINY, **sizes, **overrides})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    built = sum(p.numel() for p in model.parameters())
    assert abs(parameter_count(config) - built) <= 0.005 * built  # biases, q/k norms, sinks left out


def test_the_refusal_names_both_figures_and_a_block_size_that_fits():
    shape = ModelShape.for_config(LLAMA_8B)
    plan = plan_8b("star", 524288, 65536, compile=True)  # MLPs whole: 64K blocks take ~24 GiB of work
    need = estimate(plan, shape)[0].peak
    budget = Budget(need - GiB, 1, "cuda:0")
    with pytest.raises(NotEnoughMemoryError) as refused:
        check_budget(plan, shape, budget)
    message = str(refused.value)
    assert f"{need / GiB:.2f} GiB" in message and f"{budget.free / GiB:.2f} GiB is free" in message
    assert "--nproc" in message and "shorter input" in message and "\n" not in message
    size = int(re.search(r"--block-size (\d+)", message).group(1))
    assert size == 32768  # the largest power of two below 64K whose estimate fits
    smaller = plan_8b("star", 524288, size, compile=True)
    assert estimate(smaller, shape)[0].peak <= budget.free
    assert f"estimated {estimate(smaller, shape)[0].peak / GiB:.2f} GiB" in message

    dense = plan_8b("global", 262144, compile=True)
    with pytest.raises(NotEnoughMemoryError, match=r"use --attention star --block-size \d+"):
        check_budget(dense, shape, Budget(estimate(dense, shape)[0].peak - GiB, 1, "cuda:0"))
    with pytest.raises(NotEnoughMemoryError) as no_block:  # the KV cache alone does not fit
        check_budget(plan_8b("star", 1 << 20, 16384), shape, Budget(H200_FREE, 1, "cuda:0"))
    assert "--block-size" not in str(no_block.value) and "--nproc" in str(no_block.value)
    fp8 = estimate(plan_8b("star", 1 << 20, 16384, kv_dtype="fp8"), shape)[0].peak
    assert f"--kv-dtype fp8 (estimated {fp8 / GiB:.2f} GiB)" in str(no_block.value)
    auto = plan_8b("star", 1 << 20, 16384, kv_dtype="auto")  # the default on a GPU: fp8, and it fits
    assert auto.kv_fp8 and check_budget(auto, shape, Budget(H200_FREE, 1, "cuda:0"))


def test_ranks_sharing_a_machines_memory_are_counted_together():
    shape = ModelShape.for_config(LLAMA_8B)
    plan = plan_8b("star", 131072, 16384, world=2, device="cpu")
    alone = check_budget(plan, shape, Budget(1 << 50, 1, "cpu"))
    together = memory_budget.needed(alone, Budget(1 << 50, 2, "cpu"))
    assert together == sum(e.peak for e in alone) + 2 * memory_budget.CPU_PROCESS
    with pytest.raises(NotEnoughMemoryError, match="2 ranks sharing it.*fewer ranks"):
        check_budget(plan, shape, Budget(together - 1, 2, "cpu"))


def test_the_cpu_figure_is_the_available_memory():
    free = memory_budget.free_bytes("cpu")
    total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    assert free is not None and 0 < free <= total


def test_the_refusal_crosses_from_a_rank_as_itself():
    error = error_from_name("NotEnoughMemoryError", "not enough memory: …")
    assert isinstance(error, NotEnoughMemoryError) and error.exit_code == 2
    failure = launch.Failure(rank=1, phase="startup", error_type="NotEnoughMemoryError", message="x")
    with pytest.raises(NotEnoughMemoryError):
        launch._raise_failure(failure)


# --- through the CLI, with the default model and a faked free-memory figure ----------------------
def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    return result


@pytest.fixture
def free_memory(monkeypatch):
    """Fake what the device has free (None: the real figure)."""
    figure = {"bytes": None}
    real = memory_budget.free_bytes
    monkeypatch.setattr(memory_budget, "free_bytes", lambda *a: figure["bytes"] or real(*a))
    return figure


def dry_run(*args: str) -> dict:
    result = invoke("ask", SAMPLE, "Who keeps the lamp?", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.usefixtures("isolated")
def test_the_cli_refuses_before_loading_weights(free_memory, monkeypatch):
    plan = dry_run("--block-size", "4096")
    need = plan["memory"]["peak_bytes"]
    assert plan["memory"]["free_bytes"] > need > plan["memory"]["weights_bytes"] > 0
    free = free_memory["bytes"] = need - (16 << 20)

    def no_weights(*_args, **_kwargs):
        raise AssertionError("the weights must not load")

    monkeypatch.setattr("engine.models.load_model", no_weights)
    result = invoke("ask", SAMPLE, "Who keeps the lamp?", "--block-size", "4096")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()[-1:]
    assert line.startswith("Error: not enough memory: the run needs an estimated ")
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")] == [line]
    assert f"{need / GiB:.2f} GiB at its peak on cpu" in line and f"{free / GiB:.2f} GiB is free" in line
    assert "ranks on more machines (--nnodes, --nproc)" in line and "shorter input" in line
    size = int(re.search(r"--block-size (\d+)", line).group(1))
    assert size in (2048, 1024, 512, 256, 128)

    refused = invoke("ask", SAMPLE, "Who keeps the lamp?", "--block-size", "4096", "--dry-run")
    assert refused.exit_code == 2 and "not enough memory" in refused.stderr  # as the run would
    fits = dry_run("--block-size", str(size))  # the suggestion fits by the same estimate ...
    assert fits["memory"]["peak_bytes"] <= fits["memory"]["free_bytes"] == free
    if size < 2048:  # ... and is the largest power of two that does
        larger = invoke("ask", SAMPLE, "Who keeps the lamp?", "--block-size", str(2 * size), "--dry-run")
        assert larger.exit_code == 2 and "not enough memory" in larger.stderr
    monkeypatch.setenv("STARCLI_MEMORY_CHECK", "0")  # the way to run it anyway
    assert dry_run("--block-size", "4096")["memory"]["peak_bytes"] == need


@pytest.mark.usefixtures("isolated")
def test_a_torchrun_rank_checks_its_own_gpu_before_loading(free_memory):
    """``engine.worker`` calls this before ``load_model`` on a CUDA rank: the default model's config,
    this rank's GPU's free memory (faked here), the same refusal as the CLI's."""
    from engine.worker import check_gpu_memory

    settings = RunSettings(block_size=4096, generation=GenerationSettings(max_tokens=32))
    plan = make_run_plan(settings, 100_000, 64, 2, "cuda", None, None, "bfloat16")
    free_memory["bytes"] = 64 << 20  # less than the default model's weights and KV cache
    with pytest.raises(NotEnoughMemoryError, match=r"on cuda:1 .*, but 0\.06 GiB is free"):
        check_gpu_memory(plan, None, torch.device("cuda", 1))
    free_memory["bytes"] = 64 << 30
    check_gpu_memory(plan, None, torch.device("cuda", 1))  # fits: no error


def test_under_fp8_the_query_hosts_tail_is_counted_in_the_models_dtype():
    shape = ModelShape.for_config(LLAMA_8B)
    plan = plan_8b("star", 131072, 16384, kv_dtype="fp8")
    [rank] = estimate(plan, shape)
    room = 64 + 32  # the query and the answer (plan_8b)
    per_fp8, per_bf16 = shape.kv_token_bytes(1), shape.kv_token_bytes(2)
    assert per_fp8 == 32 * 2 * 8 * (128 + 4) and per_bf16 == 32 * 2 * 8 * 256
    assert rank.kv_cache == 131072 * per_fp8 + room * per_bf16
