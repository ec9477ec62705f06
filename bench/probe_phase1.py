"""Kernel- and layer-level probes behind the speed work of issue 6 (one GPU, Llama-3.1-8B shapes).

Each part prints a short table and writes its numbers to ``--out`` (JSON):

- ``attn``: phase-1 block attention at 16K (block vs causal self + unmasked 16K anchor, inputs in
  the layouts transformers hands over) for every GQA mode of ``kernels.cuda_attention``, with the
  relative error of each against float64 on a smaller block;
- ``decode``: the decode step's attention (128K context keys + a short tail) timed inside a CUDA
  graph, over launch shapes of the split-KV kernel, against the unfused composition;
- ``layer``: phase 1 through the whole model (B0 + anchored blocks) per GQA mode, and a kernel-time
  table of one anchored block;
- ``compile``: wall time of ``STARCLI_COMPILE=1`` on first use (cold inductor cache, then warm),
  run in child processes with their own cache directory.

    python bench/probe_phase1.py --parts attn decode layer compile --out probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.speed import QUERY_TOKENS, StubTokenizer, build_model, graph_us, yield_all  # noqa: E402

MODES = {
    "repeat+fold": {"causal": "repeat", "unmasked": "fold"},
    "native+fold": {"causal": "native", "unmasked": "fold"},
    "native+native": {"causal": "native", "unmasked": "native"},
    "repeat+native": {"causal": "repeat", "unmasked": "native"},
}


def _hf(length: int, heads: int) -> torch.Tensor:
    return torch.randn(1, length, heads, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)


def _events_ms(fn, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def part_attn() -> dict:
    from kernels import block_attention
    from kernels import cuda_attention as ca
    from kernels.dispatch import attention_with_lse
    from kernels.merge import merge_partials
    from kernels.reference import attention_with_lse_math

    res: dict = {}
    n, a = 16384, 16384
    scale = 128**-0.5
    causal_flops = 4 * 32 * 128 * n * (n + 1) / 2
    anchor_flops = 4 * 32 * 128 * n * a
    bq, bk, bv = _hf(n, 32), _hf(n, 8), _hf(n, 8)
    ctx = torch.randn(2, 1, 8, 8 * n, 128, device="cuda", dtype=torch.bfloat16)  # the 1-GPU buffer
    anchors = {"ctx-slice": (ctx[0][:, :, :a], ctx[1][:, :, :a]), "hf": (_hf(a, 8), _hf(a, 8))}
    # small exactness check per mode: float64 reference of block vs [anchor, causal block]
    sq, sk, sv, sak, sav = _hf(1500, 32), _hf(1500, 8), _hf(1500, 8), _hf(1024, 8), _hf(1024, 8)
    own = attention_with_lse_math(sq.double(), sk.double(), sv.double(), scale, True)
    anc = attention_with_lse_math(sq.double(), sak.double(), sav.double(), scale, False)
    ref_o, ref_l = merge_partials([own[0], anc[0]], [own[1], anc[1]])
    saved = dict(ca.GQA_STRATEGY)
    for name, mode in MODES.items():
        ca.GQA_STRATEGY.update(mode)
        row = {}
        try:
            out, lse = block_attention(sq, sk, sv, sak, sav, scale)
            row["rel_err_o"], row["rel_err_lse"] = _rel(out, ref_o), _rel(lse, ref_l)
            row["out_stride"] = list(out.stride())
            row["causal_ms"] = _events_ms(lambda: attention_with_lse(bq, bk, bv, scale, True))
            row["causal_tflops"] = causal_flops / row["causal_ms"] / 1e9
            for tag, (ak, av) in anchors.items():
                ms = _events_ms(lambda ak=ak, av=av: attention_with_lse(bq, ak, av, scale, False))
                row[f"anchor_{tag}_ms"], row[f"anchor_{tag}_tflops"] = ms, anchor_flops / ms / 1e9
                ms = _events_ms(lambda ak=ak, av=av: block_attention(bq, bk, bv, ak, av, scale))
                row[f"block_{tag}_ms"] = ms
                row[f"block_{tag}_tflops"] = (causal_flops + anchor_flops) / ms / 1e9
        except Exception as exc:  # noqa: BLE001 - report and go on with the other modes
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        res[name] = row
        print(name, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    ca.GQA_STRATEGY.update(saved)
    return res


def part_decode(lk: int = 131072) -> dict:
    from kernels import triton_attention as tri
    from kernels.dispatch import attention_with_lse, attention_with_lse_upto, merge_partials
    from kernels.reference import attention_with_lse_math

    scale = 128**-0.5
    bufs = 4
    q = torch.randn(1, 1, 32, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    ks = [torch.randn(1, 8, lk, 128, device="cuda", dtype=torch.bfloat16) for _ in range(bufs)]
    vs = [torch.randn(1, 8, lk, 128, device="cuda", dtype=torch.bfloat16) for _ in range(bufs)]
    tk = torch.randn(1, 8, 96, 128, device="cuda", dtype=torch.bfloat16)
    tv = torch.randn(1, 8, 96, 128, device="cuda", dtype=torch.bfloat16)
    tlen = torch.tensor([33], device="cuda", dtype=torch.int32)
    kv_bytes = 2 * ks[0].numel() * 2

    def fused(i):
        return tri.decode_attention(q, ks[i], vs[i], tk, tv, tlen, scale)

    def composed(i):
        o1, l1 = attention_with_lse(q, ks[i], vs[i], scale, False)
        o2, l2 = attention_with_lse_upto(q, tk, tv, scale, tlen)
        return merge_partials([o1, o2], [l1, l2], out_dtype=q.dtype)

    def timed(fn) -> float:  # rotate through the buffers, so that L2 never holds the keys
        return graph_us(lambda c: fn(c % bufs), calls=16, warm=bufs)

    # exactness of the fused path against float64
    ro, rl = attention_with_lse_math(
        q.double(),
        torch.cat([ks[0], tk[:, :, :33]], 2).double(),
        torch.cat([vs[0], tv[:, :, :33]], 2).double(),
        scale,
        False,
    )
    base = dict(tri.DECODE_CONFIG)
    out: dict = {"configs": {}}
    o, lse = fused(0)
    out["fused_rel_err"], out["fused_lse_rel_err"] = _rel(o, ro), _rel(lse, rl)
    out["composed_default_us"] = timed(composed)
    out["fused_default_us"] = timed(fused)
    for k_rows in (False, True):
        for block_n in (64, 128):
            for warps in (4, 8):
                for stages in (2, 3, 4):
                    for per_sm in (1, 2, 4):
                        cfg = dict(block_n=block_n, num_warps=warps, num_stages=stages)
                        cfg.update(programs_per_sm=per_sm, k_rows=k_rows)
                        tri.DECODE_CONFIG.update(cfg)
                        name = f"n{block_n}-w{warps}-s{stages}-p{per_sm}-{'rows' if k_rows else 'cols'}"
                        try:
                            o, lse = fused(0)
                            err = _rel(o, ro)
                            us = timed(fused)
                        except Exception as exc:  # noqa: BLE001 - shapes the compiler refuses
                            out["configs"][name] = {"error": f"{type(exc).__name__}"[:80]}
                            continue
                        out["configs"][name] = {"us": us, "gbps": kv_bytes / us / 1e3, "err": err}
                        tri.DECODE_CONFIG.clear()
                        tri.DECODE_CONFIG.update(base)
    tri.DECODE_CONFIG.clear()
    tri.DECODE_CONFIG.update(base)
    good = {k: v["us"] for k, v in out["configs"].items() if "us" in v}
    best = min(good, key=good.get)
    out["best"], out["best_us"] = best, good[best]
    # the best shape's exactness on fresh inputs
    parts = best.split("-")
    tri.DECODE_CONFIG.update(
        block_n=int(parts[0][1:]),
        num_warps=int(parts[1][1:]),
        num_stages=int(parts[2][1:]),
        programs_per_sm=int(parts[3][1:]),
        k_rows=parts[4] == "rows",
    )
    o, lse = fused(0)
    out["best_rel_err"], out["best_lse_rel_err"] = _rel(o, ro), _rel(lse, rl)
    tri.DECODE_CONFIG.clear()
    tri.DECODE_CONFIG.update(base)
    print(
        "decode: composed",
        round(out["composed_default_us"], 1),
        "fused",
        round(out["fused_default_us"], 1),
        "best",
        best,
        round(good[best], 1),
        "us",
        "err",
        out["best_rel_err"],
    )
    for name in sorted(good, key=good.get)[:12]:
        print(f"  {name} {good[name]:.1f} us {kv_bytes / good[name] / 1e3:.0f} GB/s")
    ks.clear()
    vs.clear()
    torch.cuda.empty_cache()
    return out


def _encode(engine, n: int, block: int, **options) -> float:
    from engine.settings import EngineOptions, RunSettings

    ctx = torch.randint(0, 128000, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    plan = engine.plan(RunSettings(block_size=block, options=EngineOptions(**options)), n, QUERY_TOKENS)
    torch.cuda.synchronize()
    t = time.perf_counter()
    enc = yield_all(engine.encode_context(ctx, plan))
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del enc
    return dt


def part_layer(profile_path: str | None) -> dict:
    from engine.api import Engine
    from kernels import cuda_attention as ca

    model = build_model(65536 + 4096)
    engine = Engine(model, StubTokenizer())
    res: dict = {}
    saved = dict(ca.GQA_STRATEGY)
    for name in ("repeat+fold", "native+fold", "native+native"):
        ca.GQA_STRATEGY.update(MODES[name])
        _encode(engine, 32768, 16384)  # warm
        one = min(_encode(engine, 16384, 16384) for _ in range(2))
        three = min(_encode(engine, 49152, 16384) for _ in range(2))
        res[name] = {"b0_s": one, "b0_plus_2a_s": three, "anchored_block_s": (three - one) / 2}
        print("layer", name, json.dumps({k: round(v, 4) for k, v in res[name].items()}))
    ca.GQA_STRATEGY.update(saved)
    if profile_path:
        from torch.profiler import ProfilerActivity, profile

        _encode(engine, 32768, 16384)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            _encode(engine, 32768, 16384)
        averages = prof.key_averages()
        table = averages.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=70)
        Path(profile_path).write_text(table)
        print(table[:5000])
        total = sum(e.self_device_time_total for e in averages)
        res["profile_total_ms"] = total / 1e3
    del engine, model
    torch.cuda.empty_cache()
    return res


def compile_child(out_path: str) -> None:
    """One process: build, compile on first use, time the first and second phase 1 and the
    first decode steps (a recompile for one-token inputs is expected)."""
    from engine.api import Engine
    from engine.settings import EngineOptions, GenerationSettings, RunSettings

    t0 = time.perf_counter()
    model = build_model(65536 + 4096)
    torch.cuda.synchronize()
    res = {"build_s": time.perf_counter() - t0}
    engine = Engine(model, StubTokenizer())
    res["first_32k_s"] = _encode(engine, 32768, 16384, compile=True)
    res["second_32k_s"] = _encode(engine, 32768, 16384, compile=True)
    ctx = torch.randint(0, 128000, (32768,), generator=torch.Generator().manual_seed(1)).tolist()
    settings = RunSettings(
        block_size=16384,
        generation=GenerationSettings.plain(max_tokens=4),
        options=EngineOptions(compile=True),
    )
    enc = yield_all(engine.encode_context(ctx, engine.plan(settings, len(ctx), QUERY_TOKENS)))
    query = list(range(100, 100 + QUERY_TOKENS))
    for label in ("first_answer_s", "second_answer_s"):
        t = time.perf_counter()
        for _ in engine.answer(enc, query):
            pass
        torch.cuda.synchronize()
        res[label] = time.perf_counter() - t
    Path(out_path).write_text(json.dumps(res))


def part_compile() -> dict:
    cache = "/tmp/starcli-inductor-probe"
    out: dict = {}
    for label in ("cold", "warm"):
        path = f"/tmp/compile-{label}.json"
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, PYTHONUNBUFFERED="1")
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--compile-child", path]
        proc = subprocess.run(cmd, env=env, timeout=420, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            out[label] = {"error": proc.stderr[-1500:]}
        else:
            out[label] = json.loads(Path(path).read_text())
            out[label]["process_s"] = wall
        print("compile", label, json.dumps(out[label])[:1600])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", nargs="+", default=["attn", "decode", "layer", "compile"])
    p.add_argument("--out", default="probe.json")
    p.add_argument("--profile", default=None)
    p.add_argument("--compile-child", default=None)
    args = p.parse_args()
    if args.compile_child:
        return compile_child(args.compile_child)
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for part in args.parts:
        t = time.perf_counter()
        try:
            if part == "attn":
                report[part] = part_attn()
            elif part == "decode":
                report[part] = part_decode()
            elif part == "layer":
                report[part] = part_layer(args.profile)
            elif part == "compile":
                report[part] = part_compile()
        except Exception as exc:  # noqa: BLE001 - keep the other parts' results
            report[part] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(part, "failed:", exc)
        report[f"{part}_wall_s"] = time.perf_counter() - t
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"-- {part} done in {time.perf_counter() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
