"""Speed benchmark: dense (``global``), ``star`` and ``ring`` at Llama-3.1-8B shape, random bf16 weights.

One invocation measures the hardware ceilings (bf16 matmul, fused causal attention, device copy)
and then, for every GPU count asked for, runs each mode through ``engine.Engine`` at each context
length: time to first token, phase-1 time of every rank, decode ms/token, peak memory of every
GPU, each next to its floor. Several GPUs run under torchrun with the engine's ``DistComm`` (NCCL,
collectives time out, so a failed rank ends the job rather than hanging it).

    python bench/speed.py --gpus 1 2 --lengths 32768 131072 --blocks 16384 32768 --out docs/bench-x.json

``--corrections none delta:16 delta:64`` runs every star configuration once plain and once per
delta stride (issue 15's phase-1 correction); each corrected run records ``phase1_vs_plain``,
its phase-1 time over plain Star's (best of ``--repeats`` each). ``--shape tiny --device cpu``
is a smoke run of the whole loop without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LLAMA_8B = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    rope_theta=500000.0,
    head_dim=128,
)
# A smoke-test shape: the same code paths in seconds on a CPU.
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=1000,
    rope_theta=10000.0,
    head_dim=16,
)
SHAPES = {"llama-8b": LLAMA_8B, "tiny": TINY}
QUERY_TOKENS = 64
# The context's KV storage for every run (--kv-dtype): the model's dtype unless asked, so that rows
# stay comparable with earlier rounds (the engine's own default is fp8 on CUDA).
KV_DTYPE = {"value": "model"}


def parse_correction(text: str) -> int:
    """``none`` -> 0, ``delta:γ`` -> γ (the delta stride)."""
    if text == "none":
        return 0
    name, _, stride = text.partition(":")
    if name != "delta" or not stride.isdigit() or int(stride) < 1:
        raise argparse.ArgumentTypeError(f"expected none or delta:STRIDE, got {text!r}")
    return int(stride)


def correction_label(stride: int) -> str:
    return f"delta:{stride}" if stride else "none"


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def engine_options():
    """The engine options from the same STARCLI_* variables the CLI reads (starcli.config)."""
    from starcli.config import resolve

    return resolve({}).engine_options()


class StubTokenizer:
    """Random token ids need no text: one character a token (so token events carry the ids that
    runs are compared by), no EOS."""

    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return "." * len(ids)


def build_model(
    max_positions: int,
    layers: int | None = None,
    shape_name: str = "llama-8b",
    device: str = "cuda",
    **shape_overrides,
):
    """Random weights at a named shape (``shape_overrides``: other sizes), drawn on ``device`` in
    bf16 on a GPU, float32 on CPU (the CPU smoke runs of the benchmarks)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    base = SHAPES[shape_name]
    shape = dict(base, num_hidden_layers=layers or base["num_hidden_layers"], **shape_overrides)
    config = LlamaConfig(**shape, max_position_embeddings=max_positions, eos_token_id=None)
    config.rope_parameters = {"rope_type": "default", "rope_theta": shape["rope_theta"]}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if device.startswith("cuda") else torch.float32)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)  # weights drawn on the device (bf16 on a GPU)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def _median_ms(fn, *args, reps: int = 10) -> float:
    """Median of ``reps`` event-timed calls of ``fn(*args)`` after one warm-up call."""
    fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(*args)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def _randn(*shape):
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)


def sustained_tflops(fn, flops: float, seconds: float = 3.0, window: int = 20) -> dict:
    """``fn`` run back to back for ``seconds``: TFLOP/s per window of ``window`` calls.

    A burst of ten calls (``_median_ms``) runs at the GPU's top clock; held for seconds, as phase 1
    holds its matmuls and attention, the same kernel settles where the board's power limit puts
    it (on the H200: 782 TFLOP/s in the first window of the 8192³ product, ~665 from the third on,
    the SM clock 1515-1575 MHz against 1980 with the power-cap reason set; docs/benchmarks.md).
    The median window is the rate a run of phase 1's length can count on."""
    fn()
    torch.cuda.synchronize()
    rates, began = [], time.perf_counter()
    while time.perf_counter() - began < seconds:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(window):
            fn()
        stop.record()
        stop.synchronize()
        rates.append(window * flops / start.elapsed_time(stop) / 1e9)
    return {
        "first_tflops": rates[0],
        "median_tflops": sorted(rates)[len(rates) // 2],
        "min_tflops": min(rates),
        "windows": rates,
    }


def measure_rates(sustain_s: float = 3.0) -> dict:
    """The ceilings every floor divides by, measured on this GPU in this run (random data): each
    compute rate as a burst and, for ``sustain_s`` seconds, sustained (``sustained_tflops``)."""
    from kernels import attention_with_lse
    from kernels.cuda_attention import dense_cuda
    from kernels.triton_attention import split_kv_attention

    n = 8192
    a, b = _randn(n, n), _randn(n, n)
    out = {"matmul_tflops": 2 * n**3 / _median_ms(torch.matmul, a, b) / 1e9}
    src = _randn(1 << 30)
    out["copy_gbps"] = 2 * src.numel() * 2 / _median_ms(torch.Tensor.copy_, torch.empty_like(src), src) / 1e6
    del src
    for length in (16384, 32768):
        q, k, v = _randn(1, 32, length, 128), _randn(1, 32, length, 128), _randn(1, 32, length, 128)
        flops = 4 * 32 * 128 * length * (length + 1) / 2
        tag = f"{length // 1024}k"
        out[f"causal_attn_{tag}_tflops"] = flops / _median_ms(dense_cuda, q, k, v, 0.088, True) / 1e9
        kg, vg = k[:, :8].contiguous(), v[:, :8].contiguous()
        out[f"gqa_causal_attn_{tag}_tflops"] = (
            flops / _median_ms(attention_with_lse, q, kg, vg, 0.088, True) / 1e9
        )
        if length == 16384 and sustain_s > 0:
            held = sustained_tflops(functools.partial(dense_cuda, q, k, v, 0.088, True), flops, sustain_s)
            out["attn_sustained"] = held
            out["attn_sustained_tflops"] = held["median_tflops"]
    if sustain_s > 0:
        held = sustained_tflops(functools.partial(torch.matmul, a, b), 2 * n**3, sustain_s)
        out["matmul_sustained"] = held
        out["matmul_sustained_tflops"] = held["median_tflops"]
    del a, b
    q, k, v = _randn(1, 32, 1, 128), _randn(1, 8, 131072, 128), _randn(1, 8, 131072, 128)
    us = graph_us(lambda _: split_kv_attention(q, k, v, 0.088))  # as the decode step runs it: in a graph
    out["decode_attn_128k_us"] = us
    out["decode_attn_128k_gbps"] = 2 * k.numel() * 2 / us / 1e3
    out["decode_sweep"] = sweep_decode(q, k, v)
    out["attn_tflops"] = out["causal_attn_16k_tflops"]
    torch.cuda.empty_cache()
    return out


def graph_us(call, calls: int = 8, warm: int = 1) -> float:
    """Median µs per call of ``call(c)`` for c = 0..calls-1, replayed in one CUDA graph (launch
    overheads excluded, as in the graph-captured decode step; eager timing adds tens of µs).
    ``call`` gets the call's index so that a caller can rotate buffers past the L2 cache; the
    first ``warm`` indices are run once eagerly first (kernel compilation, allocator)."""
    for c in range(warm):
        call(c)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for c in range(calls):
            call(c)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / calls)
    del graph
    return sorted(times)[len(times) // 2]


def sweep_decode(q, k, v) -> dict:
    """Time the split-KV decode kernel's launch shapes at 128K keys inside a CUDA graph; keep the
    fastest for the run."""
    from kernels import triton_attention as tri
    from kernels.triton_attention import split_kv_attention

    base, timings = dict(tri.DECODE_CONFIG), {}
    for block_n in (64, 128):
        for warps in (4, 8):
            for per_sm in (1, 2):
                cfg = {"block_n": block_n, "num_warps": warps, "num_stages": 3, "programs_per_sm": per_sm}
                tri.DECODE_CONFIG.update(cfg)
                try:
                    us = graph_us(lambda _: split_kv_attention(q, k, v, 0.088))
                except Exception:  # noqa: BLE001 - a shape the compiler refuses (shared memory)
                    continue
                timings[f"n{block_n}-w{warps}-s3-p{per_sm}"] = us
    tri.DECODE_CONFIG.update(base)
    default = "n{block_n}-w{num_warps}-s{num_stages}-p{programs_per_sm}".format(**base)
    best = min(timings, key=timings.get)
    n, w, s_, p = (int(x[1:]) for x in best.split("-"))
    tri.DECODE_CONFIG.update({"block_n": n, "num_warps": w, "num_stages": s_, "programs_per_sm": p})
    return {"best": best, "best_us": timings[best], "default_us": timings.get(default), "all": timings}


def floors(
    mode: str, n: int, block: int, world: int, rates: dict, config, shared: bool = False, stride: int = 0
) -> dict:
    """Phase-1 per rank, TTFT and decode floors from FLOP and byte counts over measured rates;
    ``stride``: the delta correction's extra attention (``delta_pairs``) on each rank.

    ``phase1_floor_s``/``ttft_floor_s`` divide by the burst rates (the GPU's top clock);
    ``*_floor_sustained_s`` by the sustained ones where ``rates`` has them: the rates a run of
    seconds meets under the board's power limit (``sustained_tflops``)."""
    from engine.plan import CostModel, plan_blocks

    cost = CostModel.for_config(config)
    bw = rates["copy_gbps"] * 1e9
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * _head_dim(config) * 2
    weights = weight_bytes(config)

    def compute_s(mm: float, attn: float) -> tuple[float, float]:
        """(phase 1 on the slowest rank, TTFT) at matmul and attention rates in FLOP/s."""

        def work(tokens: int, pairs: float) -> float:
            return tokens * cost.linear / mm + pairs * cost.per_key / attn

        if mode == "star":
            plan = plan_blocks(n, block, None, world, cost, share_anchor=shared)
            per_rank = []
            for r, own in enumerate(plan.ranks):
                t = sum(work(plan.blocks[i][1] - plan.blocks[i][0], _block_pairs(plan, i)) for i in own)
                if plan.rank_needs_anchor(r) and own and own[0] != 0 and not plan.anchor_shared:
                    t += work(plan.anchor, plan.anchor * (plan.anchor + 1) / 2)
                if stride:
                    t += work(0, delta_pairs(plan, stride, plan.rank_span(r) if world > 1 else (0, n)))
                per_rank.append(t)
        else:  # dense causal work, split evenly (ring's zigzag balances it; global has world = 1)
            per_rank = [work(n, n * (n + 1) / 2) / world] * world
        phase2 = work(QUERY_TOKENS, QUERY_TOKENS * n / world) + local * kv_per_token / bw
        return max(per_rank), max(per_rank) + phase2

    if mode == "star":
        plan = plan_blocks(n, block, None, world, cost, share_anchor=shared)
        local = max(plan.rank_span(r)[1] - plan.rank_span(r)[0] for r in range(world))
    else:
        local = -(-n // world)
    phase1, ttft = compute_s(rates["matmul_tflops"] * 1e12, rates["attn_tflops"] * 1e12)
    out = {
        "phase1_floor_s": phase1,
        "ttft_floor_s": ttft,
        "decode_floor_ms": (weights + local * kv_per_token) / bw * 1e3,
    }
    if "matmul_sustained_tflops" in rates and "attn_sustained_tflops" in rates:
        held = compute_s(rates["matmul_sustained_tflops"] * 1e12, rates["attn_sustained_tflops"] * 1e12)
        out["phase1_floor_sustained_s"], out["ttft_floor_sustained_s"] = held
    return out


def delta_pairs(plan, stride: int, keys: tuple[int, int]) -> float:
    """Extra (query row, key) pairs of the delta correction over the keys ``[start, stop)`` one
    rank holds: every block but the first has ``ceil(length / stride)`` exact rows, each over the
    context before its block (the block's own causal part is shared with Star's output). Over
    all keys that is about ``n^2 / (2 stride)``."""
    start, stop = keys
    pairs = 0.0
    for b_start, b_stop in plan.blocks[1:]:
        rows = -(-(b_stop - b_start) // stride)
        pairs += rows * max(0, min(stop, b_start) - start)
    return pairs


def compare_to_plain(runs: list[dict]) -> None:
    """Add ``phase1_vs_plain`` to every corrected star run: its best phase-1 time over the best of
    plain Star at the same context, block and GPU count (``--repeats`` runs of each)."""
    best: dict[tuple, float] = {}
    for r in runs:
        if "error" not in r and r["mode"] == "star":
            key = (r["context"], r["block"], r["gpus"], r.get("delta_stride", 0))
            best[key] = min(best.get(key, float("inf")), r["phase1_s"])
    for r in runs:
        stride = r.get("delta_stride", 0)
        plain = best.get((r.get("context"), r.get("block"), r.get("gpus"), 0))
        if "error" not in r and r["mode"] == "star" and stride and plain:
            key = (r["context"], r["block"], r["gpus"], stride)
            r["phase1_vs_plain"] = best[key] / plain
            r["phase1_best_s"] = best[key]


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _block_pairs(plan, i: int) -> float:
    length = plan.blocks[i][1] - plan.blocks[i][0]
    return length * (length + 1) / 2 + (length * plan.anchor if i > 0 else 0)


def weight_bytes(config) -> int:
    """bf16 bytes a decode step reads: every layer and the LM head (the embedding reads one row)."""
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads * _head_dim(config)
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * i + 2 * h
    return 2 * (per_layer * config.num_hidden_layers + config.vocab_size * h + h)


def run_one(engine, comm, mode: str, n: int, block: int, decode_tokens: int, stride: int = 0) -> dict:
    """One configuration through the engine's public phases; every rank returns the same dict.
    ``stride``: star's phase 1 with the delta correction every ``stride`` rows (0: plain)."""
    from engine.settings import Correction, GenerationSettings, RunSettings

    options = engine_options()

    vocab = min(128000, engine.model.config.vocab_size)
    gen = torch.Generator().manual_seed(n)
    context = torch.randint(0, vocab, (n,), generator=gen).tolist()
    query = torch.randint(0, vocab, (QUERY_TOKENS,), generator=gen).tolist()
    corrected = mode == "star" and stride > 0
    settings = RunSettings(
        attention=mode,
        block_size=block if mode == "star" else None,
        generation=GenerationSettings.plain(max_tokens=decode_tokens, temperature=0.0),
        options=options,
        correction=Correction.DELTA if corrected else Correction.NONE,
        delta_stride=stride if corrected else RunSettings().delta_stride,
        kv_dtype=KV_DTYPE["value"],
    )
    plan = engine.plan(settings, n, len(query))
    synchronize()
    reset_peak_memory()
    started = time.perf_counter()
    encoded = yield_all(engine.encode_context(context, plan))
    synchronize()
    phase1 = time.perf_counter() - started
    stats = None
    token_ids = []
    for event in engine.answer(encoded, query):
        if event.kind == "stats":
            stats = event
        elif event.kind == "token" and event.token_id >= 0:
            token_ids.append(event.token_id)
    synchronize()
    rank_phase1 = encoded.rank_seconds or [phase1]
    peaks = comm.gather_floats(peak_gib())
    # Only the query host sees Stats; every rank joins the gathers.
    ttft = comm.gather_floats(stats.ttft_s if stats else -1.0)[comm.host]
    capture_s = comm.gather_floats(stats.graph_capture_s if stats else 0.0)[comm.host]  # once per query
    decode_s = comm.gather_floats(stats.decode_s - capture_s if stats else -1.0)[comm.host]
    tokens = int(comm.gather_floats(float(stats.generated_tokens) if stats else -1.0)[comm.host])
    result = {
        "mode": mode,
        "context": n,
        "block": block if mode == "star" else None,
        "gpus": comm.world_size,
        "correction": str(plan.correction),
        "delta_stride": plan.delta_stride,
        "phase1_s": phase1,
        "phase1_rank_s": rank_phase1,
        "peak_gib": peaks,
        "ttft_s": phase1 + ttft,
        "phase2_s": ttft,
        "decode_ms": decode_s / max(1, tokens - 1) * 1e3,
        "generated": tokens,
        "graph_capture_s": capture_s,
        "decode_graph": bool(stats is not None and stats.graph_fallback is None),
        "graph_fallback": stats.graph_fallback if stats is not None else None,
        "compiled": options.compile,
        "fused": not options.compile and options.fused,
        "anchor_shared": plan.layout.anchor_shared,
        "blocks_per_rank": plan.blocks_per_rank() if mode == "star" else None,
        # the host's first greedy tokens, on every rank: runs that should agree can be compared
        "first_tokens": [t for t in comm.broadcast_from_host((token_ids + [-1] * 8)[:8]) if t >= 0],
    }
    del encoded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def yield_all(gen):
    """Drive an engine generator to its return value (events are not needed here)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def profile_phase1(engine, comm, block: int, path: str) -> None:
    """Where phase-1 time goes: CUDA kernel time of a two-block star run, by kernel."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        run_one(engine, comm, "star", 2 * block, block, 2)
    table = prof.key_averages().table(
        sort_by="self_device_time_total", row_limit=30, max_name_column_width=60
    )
    Path(path).write_text(table)
    print(table[:6000], flush=True)


def worker(args) -> None:
    import torch.distributed as dist

    from engine.api import Engine
    from engine.comm import Comm, DistComm

    KV_DTYPE["value"] = getattr(args, "kv_dtype", "model")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    comm = Comm()
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.timeout))
        comm = DistComm(torch.device("cuda", local) if cuda else torch.device("cpu"))
    rates = measure_rates() if comm.rank == 0 and not args.skip_rates else {}
    if comm.rank == 0:
        rates["device"] = torch.cuda.get_device_name(local) if cuda else "cpu"
    model = build_model(max(args.lengths) + 4096, args.layers, args.shape, args.device)
    engine = Engine(model, StubTokenizer(), comm)
    results = []
    configs = run_configs(args, world)
    warm = {(m, b, s) for m, _, b, s, _ in configs}
    for m, b, s in sorted(warm):  # compile kernels and build cuDNN plans outside the timings
        run_one(engine, comm, m, 2 * max(b, args.warm_block), max(b, args.warm_block), 3, s)
    if args.profile and world == 1:
        profile_phase1(engine, comm, max(args.blocks), args.profile)
    for mode, n, block, stride, repeat in configs:
        try:
            res = run_one(engine, comm, mode, n, block, args.decode_tokens, stride)
        except torch.OutOfMemoryError as exc:
            if world > 1:
                raise  # the other ranks are inside a collective: end the job
            res = {
                "mode": mode,
                "context": n,
                "block": block or None,
                "gpus": world,
                "correction": correction_label(stride),
                "delta_stride": stride,
                "error": f"OOM: {exc}"[:200],
            }
            torch.cuda.empty_cache()
        res["repeat"] = repeat
        if comm.rank == 0:
            print(json.dumps(res), flush=True)
        results.append(res)
    if comm.rank == 0:
        Path(args.worker_out).write_text(json.dumps({"rates": rates, "results": results}))
    if world > 1:
        dist.destroy_process_group()


def run_configs(args, world: int) -> list[tuple[str, int, int, int, int]]:
    """(mode, context, block, delta stride, repeat) in run order: a configuration's repeats and
    corrections interleave, so that drift in the machine's speed touches all of them alike."""
    configs = []
    for n in args.lengths:
        for mode in args.modes:
            if mode == "global" and (world > 1 or n > args.dense_max_length):
                continue
            for block in args.blocks if mode == "star" else [0]:
                strides = args.corrections if mode == "star" else [0]
                for repeat in range(args.repeats):
                    configs += [(mode, n, block, stride, repeat) for stride in strides]
    return configs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, nargs="+", default=[1])
    p.add_argument("--modes", nargs="+", default=["global", "star"])
    p.add_argument("--lengths", type=int, nargs="+", default=[32768, 131072])
    p.add_argument("--blocks", type=int, nargs="+", default=[16384, 32768])
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--layers", type=int, default=None, help="fewer layers for a smoke run")
    p.add_argument("--timeout", type=float, default=300.0, help="collective timeout, seconds")
    p.add_argument("--skip-rates", action="store_true")
    p.add_argument("--dense-max-length", type=int, default=131072, help="longest context for global mode")
    p.add_argument("--profile", default=None, help="write a kernel-time table of one star run here")
    p.add_argument(
        "--corrections",
        type=parse_correction,
        nargs="+",
        default=[0],
        metavar="none|delta:STRIDE",
        help="star's phase-1 corrections to run (issue 15), e.g. none delta:16 delta:64",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed runs of every configuration")
    p.add_argument("--kv-dtype", default="model", choices=["model", "fp8", "auto"], help="the context's KV")
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-8b", help="tiny: a smoke run")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run")
    p.add_argument("--warm-block", type=int, default=4096, help="the smallest warm-up block")
    p.add_argument("--out", default="docs/bench-speed.json")
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker_out:
        return worker(args)
    report = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "runs": [],
        "rates": {},
    }
    import transformers

    report["transformers"] = transformers.__version__
    for gpus in args.gpus:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            worker_out = tmp.name
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker-out", worker_out]
        if report["rates"]:
            cmd.append("--skip-rates")
        if gpus > 1:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={gpus}",
                *cmd[1:],
            ]
        proc = subprocess.run(cmd, timeout=args.timeout * 4 + 600)
        if proc.returncode != 0 or not Path(worker_out).stat().st_size:
            report["runs"].append({"gpus": gpus, "error": f"worker exited with {proc.returncode}"})
            continue
        data = json.loads(Path(worker_out).read_text())
        report["rates"] = report["rates"] or data["rates"]
        report.setdefault("device", data["rates"].get("device"))
        report["runs"].extend(data["results"])
    config = build_config_only(args.shape)
    for run in report["runs"]:
        if "error" not in run and "matmul_tflops" in report["rates"]:
            shape = (run["mode"], run["context"], run["block"] or 0, run["gpus"])
            shared, stride = run.get("anchor_shared", False), run.get("delta_stride", 0)
            run.update(floors(*shape, report["rates"], config, shared, stride))
    compare_to_plain(report["runs"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


def build_config_only(shape_name: str = "llama-8b"):
    from transformers import LlamaConfig

    return LlamaConfig(**SHAPES[shape_name])


if __name__ == "__main__":
    main()
