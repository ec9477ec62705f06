"""The decode step's weight products at Llama-3.1-8B's shape: cuBLAS against ``kernels.gemv``.

For each product a decode step makes (Q/K/V, O, gate/up with SiLU, down, the LM head) this times
what eager transformers launches (cuBLAS, plus the fused SiLU-mul kernel for the MLP) and every
launch shape of the Triton kernel, inside a CUDA graph, rotating over enough copies of the
weights that none is served from the L2 cache. It keeps the fastest shape per product in
``kernels.gemv.GEMV_CONFIG`` (for a run that follows in the same process) and reports GB/s beside
the device's copy rate.

    python bench/gemv_sweep.py --out docs/gemv-sweep.json
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.speed import LLAMA_8B, graph_us  # noqa: E402 - after the path is set

L2_BYTES = 256 << 20  # rotate past this many bytes of weights (the H200's L2 is 50 MB)
KEYS = {"n": "block_n", "k": "block_k", "w": "num_warps", "s": "num_stages", "u": "unroll"}
CONFIG_KIND = {"qkv": "qkv", "gate_up": "gate_up", "down": "down", "o_proj": "linear", "lm_head": "linear"}


def _configs() -> list[dict[str, int]]:
    """Launch shapes tried: K looped and pipelined ``num_stages`` deep (``tl.range``), and K unrolled.

    Until 2026-12-02's fourth round the looped shapes' stage count went only to the launch, which
    Triton ignores for a loop without dots: every "s3" of the earlier sweeps waited on each tile's
    loads.
    Also tried on the H200 on 2026-12-02 and removed, as none came near (docs/gemv-sweep.json):
    a persistent grid walking the tiles; K split over 2-8 programs meeting in a counter (the down
    projection: 41-43 µs against 38.8 unsplit); tensor-core dots of the row padded to 16 (47-116
    µs against 11-65)."""
    looped = [
        (1, 1024, 4, 3), (1, 1024, 4, 4), (1, 512, 2, 4), (2, 512, 4, 3), (2, 512, 4, 4),
        (2, 512, 4, 6), (2, 1024, 4, 3), (2, 1024, 4, 4), (2, 1024, 2, 3), (4, 256, 4, 4),
        (4, 256, 4, 6), (4, 512, 4, 3), (4, 512, 4, 4), (4, 512, 2, 4), (4, 1024, 8, 3),
        (8, 256, 4, 3), (8, 256, 4, 4), (8, 256, 4, 6), (8, 512, 4, 3), (8, 512, 4, 4),
        (8, 512, 8, 3), (16, 256, 8, 3), (16, 128, 4, 4),
    ]  # fmt: skip
    out = [_shape(n, k, w, st) for n, k, w, st in looped]
    out += [_shape(n, k, w, 1, unroll=1) for n, k, w in itertools.product((1, 2, 4), (1024, 2048), (4, 8))]
    return out


def _shape(n: int, k: int, warps: int, stages: int, unroll: int = 0) -> dict[str, int]:
    return {"block_n": n, "block_k": k, "num_warps": warps, "num_stages": stages, "unroll": unroll}


def name_of(cfg: dict[str, int]) -> str:
    return "-".join(f"{short}{cfg[key]}" for short, key in KEYS.items())


def config_of(name: str) -> dict[str, int]:
    """The shape a ``name_of`` string names (older names' extra fields ignored); ``cublas``:
    the kind left to cuBLAS."""
    if name == "cublas":
        return {"cublas": 1}
    return {KEYS[part[0]]: int(part[1:]) for part in name.split("-") if part[0] in KEYS}


def _products(shape: dict) -> dict[str, list[tuple[int, int]]]:
    h, i = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * shape["head_dim"]
    q = shape["num_attention_heads"] * shape["head_dim"]
    return {
        "qkv": [(q, h), (kv, h), (kv, h)],
        "o_proj": [(h, q)],
        "gate_up": [(i, h), (i, h)],
        "down": [(h, i)],
        "lm_head": [(shape["vocab_size"], h)],
    }


def _copies(mats: list[tuple[int, int]]) -> list[list[torch.Tensor]]:
    size = sum(n * k * 2 for n, k in mats)
    count = max(2, -(-L2_BYTES // size))
    return [
        [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5 for n, k in mats]
        for _ in range(count)
    ]


def _eager(kind: str, x: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
    from kernels.fused import silu_mul

    if kind == "gate_up":
        return silu_mul(F.linear(x, ws[0]), F.linear(x, ws[1]))
    outs = [F.linear(x, w) for w in ws]
    return outs[0]


def _triton(kind: str, x: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
    from kernels import gemv

    if kind == "gate_up":
        return gemv.gemv_silu_mul(x, ws[0], ws[1])
    if kind == "qkv":
        return gemv.gemv3(x, ws, kind="qkv")[0]
    return gemv.gemv(x, ws[0], kind=CONFIG_KIND[kind])


def sweep(shape: dict = LLAMA_8B, copy_gbps: float | None = None) -> dict:
    """Time every product both ways; set ``GEMV_CONFIG`` to the fastest shapes; return the table."""
    from kernels import gemv

    x = torch.randn(1, 1, shape["hidden_size"], device="cuda", dtype=torch.bfloat16)
    x_wide = torch.randn(1, 1, shape["intermediate_size"], device="cuda", dtype=torch.bfloat16)
    out: dict = {}
    best_by_config_kind: dict[str, dict] = {}
    for kind, mats in _products(shape).items():
        copies = _copies(mats)
        xin = x_wide if mats[0][1] == shape["intermediate_size"] else x
        nbytes = sum(n * k * 2 for n, k in mats)
        cublas = graph_us(
            lambda c, cs=copies, xi=xin, kd=kind: _eager(kd, xi, cs[c % len(cs)]), calls=len(copies)
        )
        config_kind = CONFIG_KIND[kind]
        timings = {}
        for cfg in _configs():
            gemv.GEMV_CONFIG[config_kind] = cfg
            try:
                us = graph_us(
                    lambda c, cs=copies, xi=xin, kd=kind: _triton(kd, xi, cs[c % len(cs)]), calls=len(copies)
                )
            except Exception:  # noqa: BLE001 - a shape the compiler refuses
                continue
            timings[name_of(cfg)] = us
        timings["cublas"] = cublas  # a candidate too: ``kernels.gemv`` then calls F.linear
        best = min(timings, key=timings.get)
        gemv.GEMV_CONFIG[config_kind] = config_of(best)
        # o_proj, down and the LM head share one config: keep the one that serves their sum best.
        best_by_config_kind.setdefault(config_kind, {})[kind] = timings
        out[kind] = {
            "bytes": nbytes,
            "cublas_us": cublas,
            "cublas_gbps": nbytes / cublas / 1e3,
            "best": best,
            "best_us": timings[best],
            "best_gbps": nbytes / timings[best] / 1e3,
            "all_us": timings,
        }
        print(kind, {k: v for k, v in out[kind].items() if k != "all_us"}, flush=True)
    for config_kind, by_kind in best_by_config_kind.items():
        common = set.intersection(*(set(t) for t in by_kind.values()))
        # weight each product by how often a step makes it (32 layers; the LM head once)
        per_step = {"o_proj": 32, "down": 32, "lm_head": 1, "qkv": 32, "gate_up": 32}
        ranked = sorted(common, key=lambda c: sum(per_step[k] * t[c] for k, t in by_kind.items()))
        gemv.GEMV_CONFIG[config_kind] = config_of(ranked[0])
        out.setdefault("ranked", {})[config_kind] = ranked
    out["chosen"] = {k: dict(v) for k, v in gemv.GEMV_CONFIG.items()}
    if copy_gbps:
        out["copy_gbps"] = copy_gbps
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/gemv-sweep.json")
    args = p.parse_args()
    from bench.decode_profile import copy_gbps

    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        **sweep(copy_gbps=copy_gbps()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
