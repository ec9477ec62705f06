"""Decode at the memory floor, bf16 and fp8 KV (issue 16): on one GPU at Llama-3.1-8B's shape with
random weights, Star's phase 1 over ``n`` random tokens, a 64-token query, then

- ``decode_ms``: the engine's decode step (CUDA graph) per token over 32 tokens, next to the floor
  ``(weight bytes + KV bytes) / measured copy bandwidth``; the KV bytes are what the kernel reads
  (fp8: one byte an element plus a float32 scale per token and head);
- ``kernels``: where a decode step's GPU time goes, from the profiler over eager steps (the same
  kernels the graph replays, without its launch savings), grouped as weights (GEMM/GEMV), KV
  attention, merge, and everything else;
- ``ttft_s`` and ``peak_gib``, so that the 1M-token fp8 row is the issue's deliverable 2;
- ``sweep``: the split-KV kernel's launch shapes over the fp8 KV at 128K keys, in a graph, and
  ``bench/gemv_sweep.py``'s weight products (cuBLAS against ``kernels.gemv``);
- ``--cublas-too``: every row again with the weight products on cuBLAS, for the difference.

Each KV dtype first runs once over two blocks (not recorded), so that no row pays Triton's compiles.

    python bench/decode_profile.py --lengths 131072 524288 --kv-dtypes model fp8 \
        --extra 1048576:fp8 --out docs/decode-profile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
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


HOST_GAP_US = 15.0  # a device idle this long between two kernels waited on the host


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


def step_ms(stats) -> float:
    """A run's decode ms a token from its ``Stats``: decode time less the graph's capture, over the
    tokens after the first."""
    return (stats.decode_s - stats.graph_capture_s) / max(1, stats.generated_tokens - 1) * 1e3


def floor_ms(config, tokens: int, fp8: bool, bandwidth_gbps: float) -> float:
    """The decode floor: weight bytes and the KV bytes the kernel reads, over the copy rate."""
    return (weight_bytes(config) + kv_read_bytes(config, tokens, fp8)) / (bandwidth_gbps * 1e9) * 1e3


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for part, group in GROUPS if part in lowered), "other")


def _profile_groups(
    engine, encoded, query: list[int], max_tokens: int, graphs: bool = False
) -> tuple[dict, dict]:
    from torch.profiler import ProfilerActivity, profile

    plan = encoded.plan
    eager_plan = dataclasses.replace(plan, options=dataclasses.replace(plan.options, cuda_graphs=graphs))
    eager_plan = dataclasses.replace(
        eager_plan, generation=dataclasses.replace(plan.generation, max_tokens=max_tokens)
    )
    encoded = dataclasses.replace(encoded, plan=eager_plan)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in engine.answer(encoded, query):
            pass
        torch.cuda.synchronize()
    groups: dict[str, float] = {}
    kernels: dict[str, float] = {}
    # The device's idle time between consecutive kernels shorter than HOST_GAP_US: a graph's own
    # boundaries. Longer ones wait on the host; their difference between two runs was noise
    # (the prefill's own waits differ from run to run), so they are not counted.
    spans = sorted(
        (e.time_range.start, e.time_range.end)
        for e in prof.events()
        if e.device_type == torch.autograd.DeviceType.CUDA
    )
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        gap = max(0.0, start - end)
        if gap < HOST_GAP_US:
            groups["gaps between kernels"] = groups.get("gaps between kernels", 0.0) + gap
    for event in prof.key_averages():
        us = event.self_device_time_total
        if us <= 0:
            continue
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + us
        kernels[event.key[:80]] = kernels.get(event.key[:80], 0.0) + us
    return groups, kernels


def profile_steps(engine, encoded, query: list[int], steps: int, graphs: bool = False) -> dict:
    """GPU time per decode step by kernel group: a run of ``steps`` decode steps less a run of
    none (the query's own pass is in both). Eager by default, so every kernel is its own launch;
    ``graphs``: the steps replayed from the CUDA graph as a real run makes them (the fp8 KV's
    decode attention differs there: one merge of context and tail, not two), less a run of one
    step (the capture is in both). Profiled without programmatic dependent launch: under it a
    kernel starts before the one ahead ends and its time includes that wait, which would charge
    one kernel's time to the next."""
    from kernels.pdl import PDL_CONFIG

    first = 2 if graphs else 1
    saved = dict(PDL_CONFIG)
    PDL_CONFIG["on"] = False
    try:
        base_groups, base_kernels = _profile_groups(engine, encoded, query, first, graphs)
        groups, kernels = _profile_groups(engine, encoded, query, steps + first, graphs)
    finally:
        PDL_CONFIG.update(saved)
    per_step = {g: (us - base_groups.get(g, 0.0)) / steps / 1e3 for g, us in groups.items()}
    step_us = {k: (us - base_kernels.get(k, 0.0)) / steps for k, us in kernels.items()}
    biggest = dict(sorted(step_us.items(), key=lambda kv: -kv[1])[:16])
    return {"ms_per_step_by_group": per_step, "top_kernels_us_per_step": biggest, "steps": steps}


def sweep_fp8(length: int) -> dict:
    """The split-KV kernel's launch shapes over an fp8 KV of ``length`` keys (8 KV heads, D = 128),
    widening e4m3 to fp16; the fastest is kept for the runs."""
    from kernels import quantize_fp8
    from kernels import triton_attention as tri
    from kernels.quant import empty_keys_major

    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    (k, ks), (v_rows, vs) = (quantize_fp8(torch.randn(1, 8, length, 128, device="cuda")) for _ in range(2))
    v = empty_keys_major(v_rows.shape, "cuda")  # as engine.cache stores an fp8 V
    v.copy_(v_rows)
    # V stored D-contiguous (before 2026-12-02), in the shape that was fastest for it, for comparison
    tri.FP8_DECODE_CONFIG.update(block_n=64, num_warps=2, num_stages=3, programs_per_sm=4, maxnreg=0)
    rows_us = graph_us(lambda _: tri.split_kv_attention(q, k, v_rows, 0.088, kv_scales=(ks, vs)))
    timings = {"d_contiguous": rows_us}
    # (keys a tile, warps, pipeline stages, programs an SM, registers a thread at most): around
    # the fastest over a D-contiguous V (docs/fp8-layout-probe.json), larger tiles, and more
    # programs an SM by capping registers (218 a thread allow 2 programs of 4 warps: Nsight Compute
    # found the kernel short of ready warps, docs/ncu-splitkv-fp8-keys-h200.txt)
    shapes = [(128, 4, 3, 2, 0), (64, 2, 3, 4, 0), (128, 4, 4, 2, 0), (256, 8, 3, 1, 0)]
    shapes += [(128, 4, 3, 3, 168), (128, 4, 2, 3, 168), (128, 4, 2, 4, 128), (64, 4, 3, 4, 128)]
    shapes += [(64, 2, 3, 6, 168), (64, 2, 2, 8, 128), (128, 4, 3, 2, 200), (64, 4, 2, 3, 168)]
    configs = {}
    for block_n, warps, stages, per_sm, maxnreg in shapes:
        cfg = {"block_n": block_n, "num_warps": warps, "num_stages": stages, "programs_per_sm": per_sm}
        cfg["maxnreg"] = maxnreg
        tri.FP8_DECODE_CONFIG.update(cfg, k_rows=False, f16=True)
        try:
            us = graph_us(lambda _: tri.split_kv_attention(q, k, v, 0.088, kv_scales=(ks, vs)))
        except Exception:  # noqa: BLE001 - a shape the compiler refuses
            continue
        name = f"n{block_n}-w{warps}-s{stages}-p{per_sm}-r{maxnreg}"
        timings[name], configs[name] = us, cfg
    best = min(configs, key=timings.get)
    tri.FP8_DECODE_CONFIG.update(configs[best], k_rows=False, f16=True)
    read = 2 * 8 * length * (128 + 4)
    return {
        "keys": length,
        "all_us": timings,
        "best": best,
        "best_gbps": read / timings[best] / 1e3,
        "rel_error_vs_float64": _fp8_error(),
    }


def _fp8_error() -> float:
    """Relative error of the fp8 kernel's output over a stored K/V against float64 attention over
    the same K/V unquantized, 32 query heads over 8 KV heads at 8K keys, one key in each head made
    the query's match (a needle) so that the softmax is peaked as in retrieval."""
    from kernels import quantize_fp8
    from kernels import triton_attention as tri
    from kernels.quant import empty_keys_major

    gen = torch.Generator(device="cuda").manual_seed(0)
    k = torch.randn(1, 8, 8192, 128, device="cuda", generator=gen)
    v = torch.randn(1, 8, 8192, 128, device="cuda", generator=gen)
    q = torch.randn(1, 32, 1, 128, device="cuda", generator=gen)
    q += 2.5 * k[:, :, 4321].repeat_interleave(4, 1)[:, :, None]
    (k8, ks), (v8, vs) = quantize_fp8(k), quantize_fp8(v)
    stored = empty_keys_major(v8.shape, "cuda")
    stored.copy_(v8)
    out, _ = tri.split_kv_attention(q.bfloat16(), k8, stored, 128**-0.5, kv_scales=(ks, vs))
    kk, vv = k.double().repeat_interleave(4, 1), v.double().repeat_interleave(4, 1)
    ref = torch.softmax(q.double() @ kk.transpose(-1, -2) * 128**-0.5, -1) @ vv
    return float((out.double() - ref).norm() / ref.norm())


def sweep_bf16(length: int) -> dict:
    """bench/speed.py's sweep of the bf16 launch shapes at ``length`` keys (keeps the fastest)."""
    from bench.speed import sweep_decode

    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 8, length, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out = sweep_decode(q, k, v)
    out["best_gbps"] = 2 * k.numel() * 2 / out["best_us"] / 1e3
    return out


def _inputs(n: int, block: int, kv_dtype: str, max_tokens: int):
    """(context, query, settings): ``n`` random context tokens (seeded by ``n``), a query, and
    Star's settings with 16K-style blocks and plain greedy decoding of ``max_tokens``."""
    from engine.settings import GenerationSettings, RunSettings

    gen = torch.Generator().manual_seed(n)
    context = torch.randint(0, 128000, (n,), generator=gen).tolist()
    query = torch.randint(0, 128000, (QUERY_TOKENS,), generator=gen).tolist()
    settings = RunSettings(
        attention="star",
        block_size=block,
        kv_dtype=kv_dtype,
        generation=GenerationSettings.plain(max_tokens=max_tokens),
    )
    return context, query, settings


def run(
    engine,
    model,
    n: int,
    block: int,
    kv_dtype: str,
    decode_tokens: int,
    profile_tokens: int,
    answers: int = 1,
) -> dict:
    """One row: phase 1 over ``n`` tokens, then ``answers`` answers over the encoded context (the
    first right after phase 1, the rest as follow-up questions are); ``decode_ms`` is the median
    over the answers, each answer's own kept in ``decode_ms_answers``."""
    context, query, settings = _inputs(n, block, kv_dtype, decode_tokens)
    plan = engine.plan(settings, n, len(query))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    encoded = yield_all(engine.encode_context(context, plan))
    torch.cuda.synchronize()
    phase1 = time.perf_counter() - started
    stats = next(e for e in engine.answer(encoded, query) if e.kind == "stats")
    torch.cuda.synchronize()
    steps = [step_ms(stats)]
    for _ in range(answers - 1):
        steps.append(step_ms(next(e for e in engine.answer(encoded, query) if e.kind == "stats")))
    decode_ms = statistics.median(steps)
    out = {
        "context": n,
        "block": block,
        "kv_dtype": kv_dtype,
        "phase1_s": phase1,
        "ttft_s": phase1 + stats.ttft_s,
        "decode_ms": decode_ms,
        "decode_ms_answers": steps,
        "decode_graph": stats.graph_fallback is None,
        "generated": stats.generated_tokens,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    if profile_tokens:
        out["profile"] = profile_steps(engine, encoded, query, profile_tokens)
        out["graph_profile"] = profile_steps(engine, encoded, query, profile_tokens, graphs=True)
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
    p.add_argument("--answers", type=int, default=3, help="answers timed per row (decode_ms: their median)")
    p.add_argument("--layers", type=int, default=None, help="fewer layers for a smoke run")
    p.add_argument("--out", default="docs/decode-profile.json")
    p.add_argument("--no-sweeps", action="store_true", help="keep the committed launch shapes")
    p.add_argument(
        "--sweeps",
        nargs="+",
        default=["gemv_sweep", "sweep_fp8_128k", "sweep_bf16_128k"],
        help="which sweeps run (unless --no-sweeps)",
    )
    p.add_argument(
        "--tune-in-step",
        type=int,
        default=0,
        metavar="N",
        help="time the N best weight-product shapes of each kind inside the whole decode step at 128K",
    )
    p.add_argument(
        "--cublas-too",
        action="store_true",
        help="run every row a second time with the weight products on cuBLAS (kernels.gemv off)",
    )
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
    sweeps = (("gemv_sweep", _gemv_sweep), ("sweep_fp8_128k", sweep_fp8), ("sweep_bf16_128k", sweep_bf16))
    for name, sweep in () if args.no_sweeps else [s_ for s_ in sweeps if s_[0] in args.sweeps]:
        try:
            result[name] = sweep(131072)
        except Exception as exc:  # noqa: BLE001 - keep the runs
            result[name] = {"error": repr(exc)}
        print(name, {k: v for k, v in result[name].items() if k != "all_us" and k != "all"}, flush=True)
    from kernels import gemv
    from kernels import triton_attention as tri

    result["decode_config"], result["fp8_decode_config"], result["gemv_config"] = (
        dict(tri.DECODE_CONFIG),
        dict(tri.FP8_DECODE_CONFIG),
        {k: dict(v) for k, v in gemv.GEMV_CONFIG.items()},
    )
    for kv in sorted({kv for _, kv in runs}):  # compiles and allocator growth out of the first row
        run(engine, model, 2 * args.block, args.block, kv, 4, 0)
    if args.tune_in_step:  # the isolated sweep's ranking where it ran, else the shapes near the committed
        ranked = result.get("gemv_sweep", {}).get("ranked", NEAR_COMMITTED)
        result["gemv_in_step"] = tune_in_step(engine, ranked, args.block, args.tune_in_step)
        result["gemv_config"] = {k: dict(v) for k, v in gemv.GEMV_CONFIG.items()}
        print("gemv_in_step", result["gemv_in_step"], flush=True)
    eligible = gemv.eligible
    plan = [(n, kv, "triton") for n, kv in runs]
    if args.cublas_too:
        plan += [(n, kv, "cublas") for n, kv in runs]
    for n, kv, weights in plan:
        # cuBLAS rows: the fused wrappers find no product eligible and call F.linear / silu_mul
        gemv.eligible = eligible if weights == "triton" else (lambda *_: False)
        try:
            row = run(engine, model, n, args.block, kv, args.decode_tokens, args.profile_tokens, args.answers)
            row["weights"] = weights
            floor = floor_ms(config, n, kv == "fp8", bandwidth)
            row.update(decode_floor_ms=floor, decode_vs_floor=row["decode_ms"] / floor)
        except Exception as exc:  # noqa: BLE001 - out of memory at one length must not lose the rest
            row = {"context": n, "kv_dtype": kv, "error": repr(exc)[:500]}
            torch.cuda.empty_cache()
        print(json.dumps({k: v for k, v in row.items() if "profile" not in k}), flush=True)
        result["runs"].append(row)
        out.write_text(json.dumps(result, indent=1))
    gemv.eligible = eligible


# Weight-product shapes to time inside the step without a sweep first: the committed shape (first)
# and its neighbours, after 2026-12-02's changes (16-byte weight loads, PDL with the weights loaded
# before the wait) moved the costs the committed shapes were chosen under.
NEAR_COMMITTED = {
    "qkv": ["n2-k2048-w4-s1-u1", "n1-k2048-w4-s1-u1", "n4-k1024-w4-s1-u1", "n2-k2048-w8-s1-u1"],
    "linear": ["n1-k2048-w4-s1-u1", "n2-k2048-w4-s1-u1", "n1-k1024-w2-s1-u1", "n2-k1024-w8-s1-u1"],
    "gate_up": ["n2-k2048-w4-s1-u1", "n1-k2048-w4-s1-u1", "n2-k2048-w8-s1-u1", "n4-k1024-w8-s1-u1"],
    "down": ["cublas", "n4-k512-w2-s4-u0", "n2-k1024-w4-s4-u0", "n8-k512-w4-s4-u0"],
}


def tune_in_step(engine, ranked: dict[str, list[str]], block: int, top: int, n: int = 131072) -> dict:
    """Time the ``top`` shapes of each weight-product kind (ranked in isolation) inside the graph
    of a whole decode step over one ``n``-token context, one kind at a time, keeping the fastest:
    isolated timings miss the gaps between a step's ~450 kernels, which favoured fewer launches."""
    from bench.gemv_sweep import config_of
    from kernels import gemv

    context, query, settings = _inputs(n, block, "model", 48)
    encoded = yield_all(engine.encode_context(context, engine.plan(settings, n, len(query))))

    def answer_ms() -> float:
        return step_ms(next(e for e in engine.answer(encoded, query) if e.kind == "stats"))

    out: dict[str, dict[str, float]] = {}
    for kind, names in ranked.items():
        times = {}
        for name in names[:top]:
            gemv.GEMV_CONFIG[kind] = config_of(name)
            try:
                times[name] = min(answer_ms() for _ in range(2))
            except Exception:  # noqa: BLE001 - keep the others
                continue
        gemv.GEMV_CONFIG[kind] = config_of(min(times, key=times.get))
        out[kind] = times
    return out


def _gemv_sweep(_length: int) -> dict:
    from bench.gemv_sweep import sweep

    return sweep()


if __name__ == "__main__":
    main()
