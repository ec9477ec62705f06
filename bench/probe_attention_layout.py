"""Does the layout of Q/K/V change phase 1's attention rate (issue 16)? The anchor (unmasked) and
causal cuDNN calls of one 16K block at the 8B heads, with K/V as the model hands them over
([B, L, H, D] viewed as [B, H, L, D]), as the cache holds them (head-major with room for 128K), or
contiguous head-major: the median of a burst of ten calls, and the rate held back to back for
2.5 s (median of 20-call windows), as ``bench.speed`` measures the rates its floors divide by.
Results in ``$OUT/probe-layout.json`` (docs/probe-attention-layout-s12.json).

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

from bench.speed import _median_ms, _randn, sustained_tflops  # noqa: E402
from kernels.cuda_attention import _cudnn  # noqa: E402

L, HQ, HKV, D, CAP = 16384, 32, 8, 128, 131144
SCALE = D**-0.5


def bshd(h: int) -> torch.Tensor:
    """As the model hands K/V over: ``[1, L, h, D]`` viewed as ``[1, h, L, D]``."""
    return _randn(1, L, h, D).transpose(1, 2)


def bhsd(h: int) -> torch.Tensor:
    return _randn(1, h, L, D)


def cache(h: int) -> torch.Tensor:
    """As the cache holds them: head-major, room for 128K tokens, the first ``L`` used."""
    return _randn(1, h, CAP, D)[:, :, :L]


def rate(fn, flops: float) -> dict:
    """The burst and held rates ``bench/speed.py`` measures its floors' ceilings with."""
    burst_ms = _median_ms(fn)
    held = sustained_tflops(fn, flops, seconds=2.5)
    time.sleep(1.0)  # let the clock recover before the next layout
    return {
        "burst_ms": burst_ms,
        "burst_tflops": flops / burst_ms / 1e9,
        "held_tflops": held["median_tflops"],
        "held_first_tflops": held["first_tflops"],
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
