"""What each of the decode step's changes is worth (issue 16): one GPU, Llama-3.1-8B's shape with
random weights, one context encoded once per KV dtype, then the decode step (CUDA graph,
``--tokens`` tokens, greedy) timed with every change in and with each taken out in turn, the
variants interleaved over ``--repeats`` rounds so that the device's drift falls on all alike:

- ``all``: the committed code;
- ``pdl_off``: the Triton kernels launched without programmatic dependent launch (``kernels.pdl``);
- ``checks_first``: the host checks each token (text, stop strings, loop) before launching the
  next step (``decode_loop(overlap=False)``, the order before);
- ``adds_apart``: the decoder layers' residual adds as kernels of their own (the model's forward);
- ``down_triton``: the MLP's down projection on the looped Triton GEMV (its residual add in the
  same launch) instead of cuBLAS;
- ``norms_apart``: every RMSNorm a kernel of its own (``engine.fused.NORM_IN_LAUNCH`` all off);
- ``norms_in``: both of a layer's RMSNorms inside the products that read them (all on);
- ``rope_apart``: RoPE and the KV write as kernels of their own (``engine.fused.ROPE_IN_LAUNCH`` off);
- ``tail_apart``: an fp8 context's tail in a split-KV launch of its own
  (``kernels.triton_attention.TAIL_IN_LAUNCH`` off).

    python bench/decode_ablation.py --length 131072 --kv-dtypes model fp8 --out docs/x.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decode_profile import _inputs, copy_gbps, floor_ms, step_ms  # noqa: E402 - after the path
from bench.speed import StubTokenizer, build_model, yield_all  # noqa: E402

DOWN_LOOPED = {"block_n": 4, "block_k": 512, "num_warps": 2, "num_stages": 4, "unroll": 0}


@contextlib.contextmanager
def variant(name: str, model):
    """The committed code with the change ``name`` names taken out, restored on exit."""
    import engine.api
    import engine.fused
    import engine.generate
    from kernels import gemv
    from kernels import triton_attention as tri
    from kernels.pdl import PDL_CONFIG

    saved = (engine.api.decode_loop, dict(gemv.GEMV_CONFIG["down"]), dict(PDL_CONFIG))
    norms, rope = dict(engine.fused.NORM_IN_LAUNCH), engine.fused.ROPE_IN_LAUNCH
    layers = [m for m in model.modules() if type(m).__name__ in engine.fused.LAYER_CLASSES]
    try:
        if name == "checks_first":
            engine.api.decode_loop = functools.partial(engine.generate.decode_loop, overlap=False)
        elif name == "adds_apart":
            for layer in layers:
                layer.__dict__.pop("forward", None)  # the class's forward: two adds of its own
        elif name == "down_triton":
            gemv.GEMV_CONFIG["down"] = dict(DOWN_LOOPED)
        elif name == "pdl_off":
            PDL_CONFIG["on"] = False
        elif name == "rope_apart":
            engine.fused.ROPE_IN_LAUNCH = False
        elif name == "tail_apart":
            tri.TAIL_IN_LAUNCH = False
        elif name in ("norms_apart", "norms_in"):
            engine.fused.NORM_IN_LAUNCH.update(dict.fromkeys(norms, name == "norms_in"))
        yield
    finally:
        engine.api.decode_loop = saved[0]
        gemv.GEMV_CONFIG["down"] = saved[1]
        PDL_CONFIG.update(saved[2])
        engine.fused.NORM_IN_LAUNCH.update(norms)
        engine.fused.ROPE_IN_LAUNCH = rope
        tri.TAIL_IN_LAUNCH = True
        for layer in layers:
            if "forward" not in layer.__dict__:
                setattr(layer, engine.fused._MARK, False)
                engine.fused._fuse_layer(layer)


def decode_ms(engine, encoded, query: list[int]) -> float:
    return step_ms(next(e for e in engine.answer(encoded, query) if e.kind == "stats"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=int, default=131072)
    p.add_argument("--kv-dtypes", nargs="+", default=["model", "fp8"])
    p.add_argument("--block", type=int, default=16384)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=4)
    names = ["all", "pdl_off", "down_triton", "checks_first", "adds_apart"]
    p.add_argument("--variants", nargs="+", default=names)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from engine import Engine

    model = build_model(args.length + 4096)
    engine = Engine(model, StubTokenizer())
    bandwidth = copy_gbps()
    names = args.variants
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "copy_gbps": bandwidth,
        "length": args.length,
        "tokens": args.tokens,
        "runs": {},
    }
    for kv in args.kv_dtypes:
        context, query, settings = _inputs(args.length, args.block, kv, args.tokens)
        encoded = yield_all(engine.encode_context(context, engine.plan(settings, len(context), len(query))))
        floor = floor_ms(model.config, args.length, kv == "fp8", bandwidth)
        times: dict[str, list[float]] = {n: [] for n in names}
        for name in names:  # compiles and captures out of the timings
            with variant(name, model):
                decode_ms(engine, encoded, query)
        for _ in range(args.repeats):
            for name in names:
                with variant(name, model):
                    times[name].append(decode_ms(engine, encoded, query))
        result["runs"][kv] = {
            "floor_ms": floor,
            "ms": times,
            "median_ms": {n: statistics.median(t) for n, t in times.items()},
            "median_vs_floor": {n: statistics.median(t) / floor for n, t in times.items()},
        }
        print(kv, json.dumps(result["runs"][kv]["median_ms"]), flush=True)
        del encoded
        torch.cuda.empty_cache()
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
