"""One split-KV attention launch shape over a synthetic KV, called repeatedly (for Nsight Compute:
``ncu --kernel-name regex:_split_kv --launch-skip 2 --launch-count 1 python bench/probe_splitkv.py``).
Decode's shape: 32 query heads over 8 KV heads, D = 128, one query token; fp8 V stored as
engine.cache stores it (keys-contiguous) unless ``--v-rows``."""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--keys", type=int, default=131072)
    p.add_argument("--kv", choices=["fp8", "bf16"], default="fp8")
    p.add_argument("--v-rows", action="store_true", help="fp8 V stored D-contiguous (the old layout)")
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--config", default="", help="launch shape as key=value,... (block_n=128,num_warps=4)")
    args = p.parse_args()
    from kernels import quantize_fp8
    from kernels import triton_attention as tri
    from kernels.quant import empty_keys_major

    cfg = tri.FP8_DECODE_CONFIG if args.kv == "fp8" else tri.DECODE_CONFIG
    cfg.update({k: int(v) for k, v in (item.split("=") for item in args.config.split(",") if item)})
    q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, args.keys, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 8, args.keys, 128, device="cuda", dtype=torch.bfloat16)
    scales = None
    if args.kv == "fp8":
        (k, ks), (v8, vs) = quantize_fp8(k), quantize_fp8(v)
        v = v8 if args.v_rows else empty_keys_major(v8.shape, "cuda").copy_(v8)
        scales = (ks, vs)
    for _ in range(args.calls):
        tri.split_kv_attention(q, k, v, 0.088, kv_scales=scales)
    torch.cuda.synchronize()
    print("ok", cfg)


if __name__ == "__main__":
    main()
