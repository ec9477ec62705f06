"""Where the fp8 split-KV kernel's time goes: its launch shapes with V stored as it is now
([B, H, L, D], each key's values contiguous) and keys-major ([B, H, D, L], each value dim's keys
contiguous; the kernel then computes its products transposed, "swap AB"), at 128K keys, 8 KV
heads, D = 128, in a CUDA graph; bf16 beside it.

Why: the query has 4 rows a KV head, padded to the tensor cores' 16; transposed, the keys fill the
products' wide side, and the widened tile is the left operand, which Hopper's warpgroup products
take from registers. The values then must be keys-major, the reduction dimension contiguous.

    python bench/fp8_layout_probe.py --out docs/fp8-layout-probe.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speed import graph_us  # noqa: E402 - after the path is set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=131072)
    p.add_argument("--out", default="docs/fp8-layout-probe.json")
    args = p.parse_args()
    from kernels import quantize_fp8
    from kernels import triton_attention as tri

    n = args.keys
    torch.manual_seed(0)
    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    (k8, ks), (v8, vs) = (quantize_fp8(torch.randn(1, 8, n, 128, device="cuda")) for _ in range(2))
    v8_keys = v8.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, keys-major
    saved = dict(tri.FP8_DECODE_CONFIG)
    ref, _ = tri.split_kv_attention(q, k8, v8, 0.088, kv_scales=(ks, vs))
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(),
        "keys": n,
        "fp8": {},
        "bf16": {},
        "max_diff_keys_major": {},
    }
    read = 2 * 8 * n * (128 + 4)
    shapes = {
        "rows": [(64, 2, st, pp) for st in (2, 3) for pp in (4, 5, 6, 8)] + [(128, 4, 3, 2), (32, 1, 3, 8)],
        "keys": [
            (bn, w, st, pp) for bn in (64, 128, 256) for w in (4, 8) for st in (2, 3) for pp in (1, 2, 4)
        ],
    }
    for layout, v in (("rows", v8), ("keys", v8_keys)):
        for block_n, warps, stages, per_sm in shapes[layout]:
            cfg = dict(saved, block_n=block_n, num_warps=warps, num_stages=stages)
            cfg["programs_per_sm"] = per_sm
            tri.FP8_DECODE_CONFIG.clear()
            tri.FP8_DECODE_CONFIG.update(cfg)
            name = f"{layout}-n{block_n}-w{warps}-s{stages}-p{per_sm}"
            try:
                us = graph_us(lambda _, v=v: tri.split_kv_attention(q, k8, v, 0.088, kv_scales=(ks, vs)))
                out, _ = tri.split_kv_attention(q, k8, v, 0.088, kv_scales=(ks, vs))
            except Exception as exc:  # noqa: BLE001 - a shape the compiler refuses
                result["fp8"][name] = repr(exc)[:200]
                continue
            result["fp8"][name] = {"us": us, "tbps": read / us / 1e6}
            result["max_diff_keys_major"][name] = float((out.float() - ref.float()).abs().max())
            print(name, round(us, 1), flush=True)
    tri.FP8_DECODE_CONFIG.clear()
    tri.FP8_DECODE_CONFIG.update(saved)
    k16, v16 = (torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    v16_keys = v16.transpose(-1, -2).contiguous().transpose(-1, -2)
    base16 = dict(tri.DECODE_CONFIG)
    for layout, v in (("rows", v16), ("keys", v16_keys)):
        for block_n, warps, per_sm in ((128, 4, 1), (128, 4, 2), (64, 4, 2), (128, 8, 1)):
            tri.DECODE_CONFIG.update(block_n=block_n, num_warps=warps, programs_per_sm=per_sm)
            us = graph_us(lambda _, v=v: tri.split_kv_attention(q, k16, v, 0.088))
            name = f"{layout}-n{block_n}-w{warps}-p{per_sm}"
            result["bf16"][name] = {"us": us, "tbps": 2 * 8 * n * 128 * 2 / us / 1e6}
            print("bf16", name, round(us, 1), flush=True)
    tri.DECODE_CONFIG.clear()
    tri.DECODE_CONFIG.update(base16)
    ok = [(r["us"], name) for name, r in result["fp8"].items() if isinstance(r, dict)]
    result["best"] = {lay: min(x for x in ok if x[1].startswith(lay)) for lay in ("rows", "keys")}
    print(json.dumps({"best": result["best"]}), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
