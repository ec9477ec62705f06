"""Where the delta correction's phase-1 time goes, one attention layer at a time (issue 15).

For every block of a one-rank Star phase 1 (8B attention shape: 32 query heads, 8 KV heads, head
dim 128; 128K tokens in 16K blocks by default) this times, with random tensors laid out as the
engine hands them over (Q in transformers' ``[B, L, H, D]`` memory, earlier keys a slice of the
context buffer):

- ``plain``: Star's block attention (``kernels.block_attention``);
- ``delta``: the corrected block (``kernels.delta_block_attention``), per stride;
- ``far``: its extra attention alone, the sampled rows over every earlier key, through the
  dispatcher (what the engine runs) and, on CUDA, forced through the split-KV Triton kernel;
  with its FLOP rate, so a badly occupied launch shows.

Summed over the blocks and times the layers, ``delta - plain`` is the correction's predicted
phase-1 cost on one GPU, beside its floor (extra pairs at the measured causal-attention rate).

    python -m bench.delta_probe --strides 16 64 256 --out $OUT/delta-probe.json
    python -m bench.delta_probe --device cpu --heads 4 --kv-heads 2 --head-dim 16 \\
        --context 2048 --block 512 --strides 16 --out /tmp/probe.json      # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from kernels import attention_with_lse, block_attention, delta_block_attention


def timed_ms(fn, device: str, reps: int) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call (events on CUDA)."""
    fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1e3)
    return sorted(times)[len(times) // 2]


def probe(args) -> dict:
    dev, dtype = args.device, torch.bfloat16 if args.device == "cuda" else torch.float32
    h, hkv, d, b, n = args.heads, args.kv_heads, args.head_dim, args.block, args.context
    scale = d**-0.5

    def rnd(*shape):
        return torch.randn(*shape, device=dev, dtype=dtype)

    ctx_k, ctx_v = rnd(1, hkv, n, d), rnd(1, hkv, n, d)  # the rank's context buffer
    q = rnd(1, b, h, d).transpose(1, 2)  # transformers' layout
    k, v = rnd(1, b, hkv, d).transpose(1, 2), rnd(1, b, hkv, d).transpose(1, 2)
    anchor_k, anchor_v = ctx_k[:, :, :b], ctx_v[:, :, :b]
    rows: list[dict] = []
    split_kv = None
    if dev == "cuda":
        from kernels.triton_attention import split_kv_attention as split_kv
    for start in range(b, n, b):
        ek, ev = ctx_k[:, :, :start], ctx_v[:, :, :start]
        row = {
            "earlier": start,
            "plain_ms": timed_ms(
                partial(block_attention, q, k, v, anchor_k, anchor_v, scale), dev, args.reps
            ),
        }
        for stride in args.strides:
            sampled = q[:, :, ::stride].contiguous()
            pairs = sampled.shape[2] * start
            corrected = partial(delta_block_attention, q, k, v, anchor_k, anchor_v, ek, ev, scale, stride)
            row[f"delta{stride}_ms"] = timed_ms(corrected, dev, args.reps)
            far = timed_ms(partial(attention_with_lse, sampled, ek, ev, scale), dev, args.reps)
            row[f"far{stride}_ms"] = far
            row[f"far{stride}_tflops"] = 4 * h * d * pairs / far / 1e9
            if split_kv is not None:
                row[f"far{stride}_splitkv_ms"] = timed_ms(
                    partial(split_kv, sampled, ek, ev, scale), dev, args.reps
                )
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {"plain_phase1_attention_s": sum(r["plain_ms"] for r in rows) * args.layers / 1e3}
    for stride in args.strides:
        extra = sum(r[f"delta{stride}_ms"] - r["plain_ms"] for r in rows) * args.layers / 1e3
        far = sum(r[f"far{stride}_ms"] for r in rows) * args.layers / 1e3
        pairs = sum(-(-b // stride) * r["earlier"] for r in rows)
        summary[f"delta{stride}_extra_s"] = extra
        summary[f"delta{stride}_far_s"] = far
        summary[f"delta{stride}_extra_pairs"] = pairs
        if args.attn_tflops:
            summary[f"delta{stride}_floor_s"] = 4 * h * d * pairs * args.layers / (args.attn_tflops * 1e12)
        if dev == "cuda":
            split = sum(r[f"far{stride}_splitkv_ms"] for r in rows) * args.layers / 1e3
            summary[f"delta{stride}_far_splitkv_s"] = split
    return {"args": {k: v for k, v in vars(args).items() if k != "out"}, "blocks": rows, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--context", type=int, default=131072)
    p.add_argument("--block", type=int, default=16384)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=32, help="the model's layers, to scale to a phase 1")
    p.add_argument("--strides", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--attn-tflops", type=float, default=None, help="causal attention rate for the floor")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    with torch.no_grad():
        report = probe(args)
    report["device"] = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    report["torch"] = torch.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
