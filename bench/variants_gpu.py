"""Time the attention variants on CUDA: the Triton kernel (``kernels.triton_variants``) against the
float32 math version every masked or soft-capped call ran before it, at real model shapes.

Cases (bf16, batch 1): a phase-1 block behind its anchor and a decode step over a long context,
for Gemma 2 9B (16 query / 8 KV heads, head dim 256, soft-cap 50, window 4096) and gpt-oss 20B
(64 / 8 heads, head dim 64, window 128, no soft-cap). Each case also records the relative error
against a float64 reference (on a slice where the full float64 scores would not fit).

    python bench/variants_gpu.py --out docs/variants-gpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [
    # name, hq, hkv, d, lq, lk, q_start, k_start, window, softcap
    ("gemma2 block (global layer, soft-cap)", 16, 8, 256, 4096, 4096, 4096, 4096, None, 50.0),
    ("gemma2 block vs anchor (global layer, soft-cap)", 16, 8, 256, 4096, 4096, 4096, 0, None, 50.0),
    ("gemma2 block (window layer)", 16, 8, 256, 4096, 4096, 4096, 4096, 4096, 50.0),
    ("gemma2 decode over 128K (global layer, soft-cap)", 16, 8, 256, 1, 131072, 131072, 0, None, 50.0),
    ("gpt-oss block (window 128)", 64, 8, 64, 4096, 4096, 4096, 4096, 128, None),
    ("gpt-oss decode over 128K (window 128)", 64, 8, 64, 1, 131072, 131072, 0, 128, None),
]


def _time(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    from kernels.triton_variants import positioned_attention
    from kernels.variants import masked_attention_with_lse_math

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for name, hq, hkv, d, lq, lk, q_start, k_start, window, cap in CASES:
        torch.manual_seed(0)
        q = torch.randn(1, hq, lq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, hkv, lk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, hkv, lk, d, device="cuda", dtype=torch.bfloat16)
        scale = d**-0.5
        call = (q, k, v, scale, q_start, k_start, window, cap)
        fused_s = _time(functools.partial(positioned_attention, *call), args.reps)
        try:
            math_s = _time(functools.partial(masked_attention_with_lse_math, *call), args.reps)
        except torch.OutOfMemoryError:
            math_s = None
        rows_checked = min(lq, 256)
        qs = q[:, :, -rows_checked:]
        out, lse = positioned_attention(qs, k, v, scale, q_start + lq - rows_checked, k_start, window, cap)
        ro, rl = masked_attention_with_lse_math(
            qs.double(), k.double(), v.double(), scale, q_start + lq - rows_checked, k_start, window, cap
        )
        rel = float((out.double() - ro).norm() / ro.norm())
        row = dict(
            case=name,
            heads=[hq, hkv],
            head_dim=d,
            queries=lq,
            keys=lk,
            window=window,
            softcap=cap,
            triton_ms=fused_s * 1e3,
            math_ms=None if math_s is None else math_s * 1e3,
            speedup=None if math_s is None else math_s / fused_s,
            rel_err_out=rel,
            max_err_lse=float((lse.double() - rl).abs().max()),
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = dict(
        date=time.strftime("%Y-%m-%d"),
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        python=platform.python_version(),
        rows=rows,
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
