"""Does the layout of Q/K/V change phase 1's attention rate (issue 16)? The anchor (unmasked) and
causal cuDNN calls of one 16K block at the 8B heads, with K/V as the model hands them over
([B, L, H, D] viewed as [B, H, L, D]), as the cache holds them (head-major with room for 128K), or
contiguous head-major: rate over a burst of 20 calls, and held back to back for 2.5 s (median of
20-call windows). Results in ``$OUT/probe-layout.json`` (docs/probe-attention-layout-s12.json).

    OUT=docs python bench/probe_attention_layout.py
"""

import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.cuda_attention import _cudnn  # noqa: E402

L, HQ, HKV, D, CAP = 16384, 32, 8, 128, 131144
dev, dt = "cuda", torch.bfloat16
SCALE = D**-0.5


def bshd(h):  # [1, L, h, D] viewed as [1, h, L, D]
    return torch.randn(1, L, h, D, device=dev, dtype=dt).transpose(1, 2)


def bhsd(h):
    return torch.randn(1, h, L, D, device=dev, dtype=dt)


def cache(h):
    return torch.randn(1, h, CAP, D, device=dev, dtype=dt)[:, :, :L]


def timed(fn, n):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def rate(fn, flops):
    for _ in range(3):
        fn()
    burst = timed(fn, 20)
    wins = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.5:
        wins.append(timed(fn, 20))
    wins.sort()
    held = wins[len(wins) // 2]
    time.sleep(1.0)
    return {
        "burst_ms": burst * 1e3,
        "burst_tflops": flops / burst / 1e12,
        "held_ms": held * 1e3,
        "held_tflops": flops / held / 1e12,
    }


def main() -> None:
    full = 4 * HQ * D * L * L
    q1 = bshd(HQ)
    model_kv = (cache(HKV), cache(HKV))
    variants = {
        "anchor q=bshd kv=cache(model)": (q1, *model_kv, False, full),
        "anchor q=bshd kv=bshd": (q1, bshd(HKV), bshd(HKV), False, full),
        "anchor q=bhsd kv=bhsd": (bhsd(HQ), bhsd(HKV), bhsd(HKV), False, full),
        "anchor q=bhsd kv=cache": (bhsd(HQ), cache(HKV), cache(HKV), False, full),
        "causal q=bshd kv=bshd(model)": (q1, bshd(HKV), bshd(HKV), True, full / 2),
        "causal q=bhsd kv=bhsd": (bhsd(HQ), bhsd(HKV), bhsd(HKV), True, full / 2),
        "causal q=bshd kv=cache": (q1, cache(HKV), cache(HKV), True, full / 2),
        "anchor model again": (q1, *model_kv, False, full),  # the first one last: drift over the run
    }
    out = {}
    for name, (q, k, v, causal, flops) in variants.items():
        out[name] = rate(partial(_cudnn, q, k, v, SCALE, causal), flops)
        print(name, json.dumps({a: round(b, 3) for a, b in out[name].items()}), flush=True)
    Path(os.environ.get("OUT", "/tmp"), "probe-layout.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
