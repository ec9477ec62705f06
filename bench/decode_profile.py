"""Decode at the memory floor, bf16 and fp8 KV (issue 16): on one GPU at Llama-3.1-8B's shape with
random weights, Star's phase 1 over ``n`` random tokens, a 64-token query, then

- ``decode_ms``: the engine's decode step (CUDA graph) per token over 32 tokens, next to the floor
  ``(weight bytes + KV bytes) / measured copy bandwidth``; the KV bytes are what the kernel reads
  (fp8: one byte an element plus a float32 scale per token and head);
- ``kernels``: where a decode step's GPU time goes, from the profiler over eager steps (the same
  kernels the graph replays, without its launch savings), grouped as weights (GEMM/GEMV), KV
  attention, merge, and everything else;
- ``ttft_s`` and ``peak_gib``, so that the 1M-token fp8 row is the issue's deliverable 2;
- ``sweep``: the split-KV kernel's launch shapes over the fp8 KV at 128K keys, in a graph.

Each KV dtype first runs once over two blocks (not recorded), so that no row pays Triton's compiles.

    python bench/decode_profile.py --lengths 131072 524288 --kv-dtypes model fp8 \
        --extra 1048576:fp8 --out docs/decode-profile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speed import (  # noqa: E402 - after the path is set
    QUERY_TOKENS,
    StubTokenizer,
    build_model,
    graph_us,
    weight_bytes,
    yield_all,
)

GROUPS = (  # kernel name fragments → group, first match wins
    ("split_kv", "kv attention"),
    ("_merge", "merge"),
    ("gemm", "weights"),
    ("gemv", "weights"),
    ("cutlass", "weights"),
    ("nvjet", "weights"),
    ("sm90_xmma", "weights"),
)


def copy_gbps() -> float:
    """Device-to-device copy of 2 GiB, read + write bytes over the median time (as bench/speed.py)."""
    src = torch.randn(1 << 30, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    times = []
    for _ in range(8):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    del src, dst
    return 2 * (1 << 30) * 2 / sorted(times)[4] / 1e6


def kv_read_bytes(config, tokens: int, fp8: bool) -> int:
    heads = config.num_key_value_heads
    per_head = config.head_dim + 4 if fp8 else 2 * config.head_dim
    return 2 * config.num_hidden_layers * heads * per_head * tokens


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for part, group in GROUPS if part in lowered), "other")


def profile_steps(engine, encoded, query: list[int], steps: int) -> dict:
    """GPU time per decode step by kernel group, eager (no graph) so every kernel is its own row."""
    from torch.profiler import ProfilerActivity, profile

    plan = encoded.plan
    eager_plan = dataclasses.replace(plan, options=dataclasses.replace(plan.options, cuda_graphs=False))
    eager_plan = dataclasses.replace(
        eager_plan, generation=dataclasses.replace(plan.generation, max_tokens=steps + 1)
    )
    encoded = dataclasses.replace(encoded, plan=eager_plan)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in engine.answer(encoded, query):
            pass
        torch.cuda.synchronize()
    groups: dict[str, float] = {}
    top: dict[str, float] = {}
    for event in prof.key_averages():
        us = event.self_device_time_total
        if us <= 0:
            continue
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + us
        top[event.key[:80]] = us
    # The query's own forward pass is in there too; the steps dominate at steps >= 16.
    per_step = {g: us / steps / 1e3 for g, us in groups.items()}
    biggest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:12])
    return {"ms_per_step_by_group": per_step, "top_kernels_us_total": biggest, "steps": steps}


def sweep_fp8(length: int) -> dict:
    """The split-KV launch shapes over an fp8 KV of ``length`` keys (8 KV heads, D = 128), widening
    e4m3 to fp16 or bf16, K loaded as columns or rows; the fastest is kept for the runs."""
    from kernels import quantize_fp8
    from kernels import triton_attention as tri

    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    (k, ks), (v, vs) = (quantize_fp8(torch.randn(1, 8, length, 128, device="cuda")) for _ in range(2))
    timings = {}
    for f16 in (True, False):
        for k_rows in (False, True):
            for block_n in (64, 128, 256):
                for warps in (4, 8):
                    for per_sm in (1, 2):
                        cfg = {
                            "block_n": block_n,
                            "num_warps": warps,
                            "num_stages": 3,
                            "programs_per_sm": per_sm,
                        }
                        tri.FP8_DECODE_CONFIG.update(cfg, k_rows=k_rows, f16=f16)
                        try:
                            us = graph_us(
                                lambda _: tri.split_kv_attention(q, k, v, 0.088, kv_scales=(ks, vs))
                            )
                        except Exception:  # noqa: BLE001 - a shape the compiler refuses
                            continue
                        wide, layout = "f16" if f16 else "bf16", "rows" if k_rows else "cols"
                        timings[f"{wide}-{layout}-n{block_n}-w{warps}-p{per_sm}"] = us
    best = min(timings, key=timings.get)
    wide, layout, n, w, p_ = best.split("-")
    tri.FP8_DECODE_CONFIG.update(
        block_n=int(n[1:]),
        num_warps=int(w[1:]),
        num_stages=3,
        programs_per_sm=int(p_[1:]),
        k_rows=layout == "rows",
        f16=wide == "f16",
    )
    read = 2 * 8 * length * (128 + 4)
    return {"keys": length, "all_us": timings, "best": best, "best_gbps": read / timings[best] / 1e3}


def sweep_bf16(length: int) -> dict:
    """bench/speed.py's sweep of the bf16 launch shapes at ``length`` keys (keeps the fastest)."""
    from bench.speed import sweep_decode

    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 8, length, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out = sweep_decode(q, k, v)
    out["best_gbps"] = 2 * k.numel() * 2 / out["best_us"] / 1e3
    return out


def run(engine, model, n: int, block: int, kv_dtype: str, decode_tokens: int, profile_tokens: int) -> dict:
    from engine.settings import GenerationSettings, RunSettings

    gen = torch.Generator().manual_seed(n)
    context = torch.randint(0, 128000, (n,), generator=gen).tolist()
    query = torch.randint(0, 128000, (QUERY_TOKENS,), generator=gen).tolist()
    settings = RunSettings(
        attention="star",
        block_size=block,
        kv_dtype=kv_dtype,
        generation=GenerationSettings.plain(max_tokens=decode_tokens),
    )
    plan = engine.plan(settings, n, len(query))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    encoded = yield_all(engine.encode_context(context, plan))
    torch.cuda.synchronize()
    phase1 = time.perf_counter() - started
    stats = next(e for e in engine.answer(encoded, query) if e.kind == "stats")
    torch.cuda.synchronize()
    decode_ms = (stats.decode_s - stats.graph_capture_s) / max(1, stats.generated_tokens - 1) * 1e3
    out = {
        "context": n,
        "block": block,
        "kv_dtype": kv_dtype,
        "phase1_s": phase1,
        "ttft_s": phase1 + stats.ttft_s,
        "decode_ms": decode_ms,
        "decode_graph": stats.graph_fallback is None,
        "generated": stats.generated_tokens,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    if profile_tokens:
        out["profile"] = profile_steps(engine, encoded, query, profile_tokens)
    del encoded
    torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[131072, 524288])
    p.add_argument("--kv-dtypes", nargs="+", default=["model", "fp8"])
    p.add_argument("--extra", nargs="*", default=[], help="more runs as LENGTH:KV_DTYPE (e.g. 1048576:fp8)")
    p.add_argument("--block", type=int, default=16384)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--profile-tokens", type=int, default=16, help="eager steps profiled per run (0: none)")
    p.add_argument("--layers", type=int, default=None, help="fewer layers for a smoke run")
    p.add_argument("--out", default="docs/decode-profile.json")
    args = p.parse_args()

    from engine import Engine

    runs = [(n, kv) for n in args.lengths for kv in args.kv_dtypes]
    runs += [(int(x.split(":")[0]), x.split(":")[1]) for x in args.extra]
    model = build_model(max(n for n, _ in runs) + 4096, args.layers)
    config = model.config
    engine = Engine(model, StubTokenizer())
    bandwidth = copy_gbps()
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "copy_gbps": bandwidth,
        "weight_bytes": weight_bytes(config),
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, sweep in (("sweep_fp8_128k", sweep_fp8), ("sweep_bf16_128k", sweep_bf16)):
        try:
            result[name] = sweep(131072)
        except Exception as exc:  # noqa: BLE001 - keep the runs
            result[name] = {"error": repr(exc)}
        print(name, {k: v for k, v in result[name].items() if k != "all_us" and k != "all"}, flush=True)
    from kernels import triton_attention as tri

    result["decode_config"], result["fp8_decode_config"] = (
        dict(tri.DECODE_CONFIG),
        dict(tri.FP8_DECODE_CONFIG),
    )
    for kv in sorted({kv for _, kv in runs}):  # compiles and allocator growth out of the first row
        run(engine, model, 2 * args.block, args.block, kv, 4, 0)
    for n, kv in runs:
        try:
            row = run(engine, model, n, args.block, kv, args.decode_tokens, args.profile_tokens)
            floor = (weight_bytes(config) + kv_read_bytes(config, n, kv == "fp8")) / (bandwidth * 1e9) * 1e3
            row.update(decode_floor_ms=floor, decode_vs_floor=row["decode_ms"] / floor)
        except Exception as exc:  # noqa: BLE001 - out of memory at one length must not lose the rest
            row = {"context": n, "kv_dtype": kv, "error": repr(exc)[:500]}
            torch.cuda.empty_cache()
        print(json.dumps({k: v for k, v in row.items() if k != "profile"}), flush=True)
        result["runs"].append(row)
        out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
