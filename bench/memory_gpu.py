"""Peak GPU memory against ``engine.memory``'s estimate (issue 16), at Llama-3.1-8B's shape with
random bf16 weights drawn on the GPU (``bench.speed.build_model``), one GPU, one command:

    python bench/memory_gpu.py --out $OUT/memory-gpu.json

For each run (most wanted first; later ones are skipped once the time budget would be exceeded):
star with 64K blocks at 512K tokens, star with 16K/32K/64K blocks at 128K, dense (``global``) and
``ring`` at 256K, star with 32K/16K blocks at 512K. Each records what the estimator predicts (and
whether the CLI would refuse it against the free memory measured before the weights), then
``torch.cuda.max_memory_allocated`` over phase 1 and over phase 2 with a few decode steps, the
allocated memory before and after phase 1, and the allocator's reserved peak (fragmentation). One
run (star 128K/32K) also records the allocated memory after every decoder layer of phase 1 and
the largest live allocations at its peak with where they were made (``torch.cuda.memory``'s
history), so that a gap between estimate and measurement has a name. ``--tiny`` runs the same on
CPU at a tiny shape (no memory figures; the flow and the JSON only).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K = 1024
# (mode, context tokens, block) in the order they run.
RUNS = [
    ("star", 512 * K, 64 * K),
    ("star", 128 * K, 16 * K),
    ("star", 128 * K, 32 * K),
    ("star", 128 * K, 64 * K),
    ("global", 256 * K, None),
    ("ring", 256 * K, None),
    ("star", 512 * K, 32 * K),
    ("star", 512 * K, 16 * K),
]
TRACED = ("star", 128 * K, 32 * K)
# Checked by the estimator only (no run): what the CLI says to 1M tokens on this GPU.
REFUSALS = [("star", 1024 * K, 16 * K, None), ("star", 1024 * K, 16 * K, 1)]
TINY_SCALE = 256  # --tiny: every length and block divided by this
TINY_SHAPE = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    vocab_size=1000,
)
DECODE_TOKENS = 4
GIB = 1 << 30


def live_at_peak(events: list[dict], top: int = 15) -> dict:
    """Replay an allocator history (``torch.cuda.memory._snapshot()['device_traces'][d]``): the
    allocations alive when the most was allocated, largest first, and their sum by where they
    were made (the first frames in this repository or transformers)."""
    live: dict[int, dict] = {}
    current = peak = 0
    peak_at = -1
    for index, event in enumerate(events):
        if event["action"] == "alloc":
            live[event["addr"]] = event
            current += event["size"]
            if current > peak:
                peak, peak_at = current, index
        elif event["action"] == "free_completed" and event["addr"] in live:
            current -= live.pop(event["addr"])["size"]
    live = {}
    for event in events[: peak_at + 1]:
        if event["action"] == "alloc":
            live[event["addr"]] = event
        elif event["action"] == "free_completed":
            live.pop(event["addr"], None)
    allocations = sorted(live.values(), key=lambda e: -e["size"])
    by_site: dict[str, int] = {}
    for event in allocations:
        by_site[_site(event)] = by_site.get(_site(event), 0) + event["size"]
    return {
        "peak_bytes_in_trace": peak,
        "largest": [{"bytes": e["size"], "site": _site(e)} for e in allocations[:top]],
        "by_site": dict(sorted(by_site.items(), key=lambda kv: -kv[1])[:top]),
    }


def _site(event: dict) -> str:
    frames = [
        f"{_short(f['filename'])}:{f['line']} {f['name']}"
        for f in event.get("frames", ())
        if any(part in f["filename"] for part in ("/engine/", "/kernels/", "/transformers/", "/bench/"))
    ]
    return " < ".join(frames[:3]) or "?"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/engine/", "/kernels/", "/bench/"):
        if marker in path:
            head = "" if marker == "site-packages/" else marker.strip("/") + "/"
            return head + path.split(marker, 1)[1]
    return path


def label(mode: str, n: int, block: int | None) -> str:
    """``star-512K-64K``, ``global-256K``: how ``--only`` names a run."""
    return f"{mode}-{n // K}K" + (f"-{block // K}K" if block else "")


def _chosen(only: list[str] | None, mode: str, n: int, block: int | None) -> bool:
    return only is None or label(mode, n, block) in only


def seconds_expected(plan, config, rate: float) -> float:
    """A rough phase-1 time from the planner's cost model at ``rate`` FLOP/s, plus start-up."""
    from engine.plan import CostModel

    cost = CostModel.for_config(config)
    layout = plan.layout
    if str(plan.attention) != "star":  # dense causal work, however ring splits it
        return cost.block(plan.context_tokens, 0) / rate + 5.0
    work = sum(
        cost.block(stop - start, layout.anchor if i > 0 else 0)
        for i, (start, stop) in enumerate(layout.blocks)
    )
    return work / rate + 5.0


def run_one(engine, mode: str, n: int, block: int | None, device: str, trace: bool) -> dict:
    """One configuration through the engine, with the memory figures of each phase."""
    import torch

    from bench.speed import QUERY_TOKENS, yield_all
    from engine.settings import GenerationSettings, RunSettings

    cuda = device == "cuda"
    gen = torch.Generator().manual_seed(n)
    vocab = engine.model.config.vocab_size
    context = torch.randint(0, vocab, (n,), generator=gen).tolist()
    query = torch.randint(0, vocab, (QUERY_TOKENS,), generator=gen).tolist()
    settings = RunSettings(
        attention=mode,
        block_size=block,
        generation=GenerationSettings.plain(max_tokens=DECODE_TOKENS),
    )
    plan = engine.plan(settings, n, len(query))
    out: dict = {}
    layers: list[int] = []
    hooks = []
    if trace and cuda:
        for layer in engine.model.model.layers:
            hooks.append(layer.register_forward_hook(lambda *_: layers.append(torch.cuda.memory_allocated())))
        torch.cuda.memory._record_memory_history(context="alloc", stacks="python", max_entries=500_000)
    try:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            out["allocated_before"] = torch.cuda.memory_allocated()
        started = time.perf_counter()
        encoded = yield_all(engine.encode_context(context, plan))
        if cuda:
            torch.cuda.synchronize()
            out["phase1_peak"] = torch.cuda.max_memory_allocated()
            out["phase1_reserved_peak"] = torch.cuda.max_memory_reserved()
            out["allocated_after_phase1"] = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        out["phase1_s"] = time.perf_counter() - started
        tokens = sum(1 for event in engine.answer(encoded, query) if event.kind == "token")
        if cuda:
            torch.cuda.synchronize()
            out["phase2_peak"] = torch.cuda.max_memory_allocated()
            out["phase2_reserved_peak"] = torch.cuda.max_memory_reserved()
            out["peak"] = max(out["phase1_peak"], out["phase2_peak"])
        out["generated"] = tokens
        del encoded
    finally:
        for hook in hooks:
            hook.remove()
        if trace and cuda:
            out["layer_allocated"] = layers[: 2 * len(engine.model.model.layers)]  # the first two blocks
            try:  # a diagnosis: its failure must not cost the measurements
                snapshot = torch.cuda.memory._snapshot()
                events = snapshot["device_traces"][torch.cuda.current_device()]
                out["trace"] = live_at_peak(events)
            except Exception as exc:  # noqa: BLE001
                out["trace"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            torch.cuda.memory._record_memory_history(enabled=None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(os.environ.get("OUT", "docs")) / "memory-gpu.json"
    p.add_argument("--out", default=str(default_out))
    p.add_argument("--budget-s", type=float, default=225.0, help="skip runs that would end past this")
    # Calibrated on an H200's phase 1 (docs/benchmarks.md: 128K/16K blocks 5.6 s, 512K/32K 34 s).
    p.add_argument("--rate", type=float, default=8e14, help="FLOP/s assumed to plan the time budget")
    p.add_argument("--only", nargs="+", default=None, help="run only these, e.g. star-512K-32K global-256K")
    p.add_argument("--alloc-conf", default=None, help="PYTORCH_CUDA_ALLOC_CONF for this run")
    p.add_argument("--no-trace", action="store_true", help="no allocator history for the traced run")
    p.add_argument("--tiny", action="store_true", help="a tiny shape on CPU: the flow only")
    args = p.parse_args(argv)
    if args.alloc_conf:
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = args.alloc_conf  # before the first CUDA allocation
    started = time.perf_counter()

    import torch
    import transformers

    from bench.speed import StubTokenizer, build_model
    from engine import memory, memory_budget
    from engine.api import Engine
    from engine.errors import NotEnoughMemoryError
    from engine.settings import GenerationSettings, RunSettings

    device = "cpu" if args.tiny else "cuda"
    scale = TINY_SCALE if args.tiny else 1
    runs = [(m, n // scale, b // scale if b else None) for m, n, b in RUNS if _chosen(args.only, m, n, b)]
    traced = (TRACED[0], TRACED[1] // scale, TRACED[2] // scale)
    report: dict = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "tiny": args.tiny,
        "runs": [],
        "refusals": [],
    }
    if device == "cuda":
        report["device"] = torch.cuda.get_device_name()
        report["free_before_weights"], report["total"] = torch.cuda.mem_get_info()
    # room for every run and for the refusal checks' lengths (the plan refuses past the window)
    longest = max([2 * n for _, n, _ in runs] + [n // scale for _, n, _, _ in REFUSALS]) + 4096
    model = build_model(longest, device=device, **(TINY_SHAPE if args.tiny else {}))
    shape = memory.ModelShape.for_config(model.config)
    engine = Engine(model, StubTokenizer())
    if device == "cuda":
        torch.cuda.synchronize()
        report["weights_allocated"] = torch.cuda.memory_allocated()
    report["weights_estimated"] = shape.parameters * (2 if device == "cuda" else 4)
    free = report.get("free_before_weights")
    budget = memory_budget.Budget(free, 1, "cuda:0") if free is not None else None
    for mode, n, block, kv_bytes in REFUSALS:
        n, block = n // scale, block // scale
        settings = RunSettings(attention=mode, block_size=block, generation=GenerationSettings(max_tokens=32))
        plan = engine.plan(settings, n, 64)
        row = {"mode": mode, "context": n, "block": block, "kv_bytes": kv_bytes}
        row["estimated_peak"] = memory.estimate(plan, shape, kv_bytes)[0].peak
        if budget is not None:
            try:
                memory_budget.check_budget(plan, shape, budget, kv_bytes=kv_bytes)
                row["refused"] = None
            except NotEnoughMemoryError as exc:
                row["refused"] = str(exc)
        report["refusals"].append(row)
    for mode, n, block in runs:
        settings = RunSettings(attention=mode, block_size=block, generation=GenerationSettings(max_tokens=4))
        plan = engine.plan(settings, n, 64)
        [estimate] = memory.estimate(plan, shape)
        row = {
            "run": label(mode, n * scale, block * scale if block else None),
            "mode": mode,
            "context": n,
            "block": block,
            "estimate": asdict(estimate) | {"peak": estimate.peak, "work": estimate.work},
            "estimate_refused": budget is not None and estimate.peak > budget.free,
        }
        expected_s = 0.0 if args.tiny else seconds_expected(plan, model.config, args.rate)
        if time.perf_counter() - started + expected_s > args.budget_s:
            row["skipped"] = f"time budget: about {expected_s:.0f} s more would pass {args.budget_s:.0f} s"
        else:
            trace = (mode, n, block) == traced and not args.no_trace
            try:
                row.update(run_one(engine, mode, n, block, device, trace))
                if "peak" in row:
                    row["peak_over_estimate"] = row["peak"] / estimate.peak
            except torch.OutOfMemoryError as exc:
                row["error"] = f"OOM: {exc}"[:400]
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps({k: v for k, v in row.items() if k not in ("trace", "layer_allocated")}), flush=True)
        report["runs"].append(row)
    report["wall_s"] = time.perf_counter() - started
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
