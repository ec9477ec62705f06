"""Where phase 1 loses to its floor (issue 16): one GPU, Star's phase 1 at the 8B shape (random
weights), with the GPU's own clocks and power beside every part.

- ``rates``: the ceilings ``bench/speed.py`` divides by: short bursts (ten calls each), and the
  8192³ product and 16K causal attention held back to back for ``--sustain-s`` seconds, rate per
  window, to see whether the rate a burst reaches holds over a phase 1's length;
- ``phase1``: timed encodes of ``--length`` tokens in ``--block`` blocks;
- ``profile``: one more encode under the profiler: kernel time by kind (matmul, attention, other),
  busy time against the span (launch gaps), the matmuls by shape; every attention call's shapes,
  strides and mask are recorded and each is timed again alone (same layout, fresh data), so the
  model's kernels can be set against the same kernels in isolation;
- ``ab``: phase 1 with each ``--variants`` setting, interleaved;
- ``clocks``: ``nvidia-smi`` sampled every 50 ms, summarised per part (SM clock, power, the
  throttle reasons it reported).

    python bench/phase1_gap.py --out docs/phase1-gap.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.speed import _median_ms, _randn, build_model, floors, measure_rates, yield_all  # noqa: E402


class Clocks:
    """``nvidia-smi`` in the background; each line stamped on arrival with ``time.monotonic``."""

    FIELDS = "clocks.sm,clocks.mem,power.draw,temperature.gpu,{}.active"

    def __init__(self) -> None:
        self.samples: list[tuple[float, list[str]]] = []
        self.marks: list[tuple[str, float, float]] = []
        self.proc = None
        for reasons in ("clocks_event_reasons", "clocks_throttle_reasons"):  # newer drivers, older
            query = "--query-gpu=" + self.FIELDS.format(reasons)
            cmd = ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "50"]
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                return
            time.sleep(0.5)
            if proc.poll() is None:
                self.proc = proc
                threading.Thread(target=self._read, daemon=True).start()
                return

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.samples.append((time.monotonic(), [x.strip() for x in line.split(",")]))

    def part(self, name: str):
        """Context manager marking a part's start and end."""
        clocks = self

        class _Part:
            def __enter__(self):
                torch.cuda.synchronize()
                self.start = time.monotonic()

            def __exit__(self, *exc):
                torch.cuda.synchronize()
                clocks.marks.append((name, self.start, time.monotonic()))

        return _Part()

    def summary(self) -> dict:
        if self.proc is not None:
            self.proc.terminate()
        out = {}
        for name, start, stop in self.marks:
            rows = [v for t, v in self.samples if start <= t <= stop and len(v) == 5]
            if not rows:
                out[name] = {"seconds": stop - start, "samples": 0}
                continue

            def nums(i, rows=rows):
                vals = []
                for r in rows:
                    try:
                        vals.append(float(r[i]))
                    except ValueError:
                        pass
                return sorted(vals)

            sm, power, temp = nums(0), nums(2), nums(3)
            out[name] = {
                "seconds": stop - start,
                "samples": len(rows),
                "sm_mhz_median": sm[len(sm) // 2] if sm else None,
                "sm_mhz_min": sm[0] if sm else None,
                "power_w_median": power[len(power) // 2] if power else None,
                "power_w_max": power[-1] if power else None,
                "temp_c_max": temp[-1] if temp else None,
                "reasons": dict(Counter(r[4] for r in rows)),
            }
        return out


class AttentionLog:
    """Record every cuDNN attention call's inputs (shapes, strides, mask) while the model runs."""

    def __init__(self) -> None:
        from kernels import cuda_attention as ca

        self.ca, self.calls = ca, Counter()
        self.original = ca._cudnn

        def logged(q, k, v, scale, causal):
            self.calls[(sig(q), sig(k), sig(v), bool(causal))] += 1
            return self.original(q, k, v, scale, causal)

        self.logged = logged

    def __enter__(self):
        self.ca._cudnn = self.logged
        self.ca._BACKENDS["cudnn"] = self.logged
        return self

    def __exit__(self, *exc):
        self.ca._cudnn = self.original
        self.ca._BACKENDS["cudnn"] = self.original


def sig(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), tuple(t.stride()))


def _strided(shape, stride) -> torch.Tensor:
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    base = torch.randn(size, device="cuda", dtype=torch.bfloat16)
    return base.as_strided(shape, stride)


def attention_alone(calls: Counter) -> list[dict]:
    """Each recorded attention call timed alone (fresh data in the same layout): ms and TFLOP/s."""
    from kernels.cuda_attention import _cudnn

    rows = []
    for (qs, ks, vs, causal), count in calls.items():
        q, k, v = _strided(*qs), _strided(*ks), _strided(*vs)
        lq, lk, heads, d = qs[0][2], ks[0][2], qs[0][1], qs[0][3]
        pairs = lq * (lq + 1) / 2 if causal else lq * lk
        ms = _median_ms(_cudnn, q, k, v, 0.088, causal)
        rows.append(
            {
                "q": qs,
                "k": ks,
                "v": vs,
                "causal": causal,
                "calls": count,
                "alone_ms": ms,
                "alone_tflops": 4 * heads * d * pairs / ms / 1e9,
            }
        )
        del q, k, v
    return rows


def matmuls_alone(shapes: dict) -> list[dict]:
    """Each matmul shape the model ran, timed alone as ``x @ W.T`` (the layout ``F.linear`` uses)."""
    rows = []
    for (m, k, n), info in shapes.items():
        x, w = _randn(m, k), _randn(n, k)
        ms = _median_ms(torch.mm, x, w.t())
        rows.append(
            {
                "m": m,
                "k": k,
                "n": n,
                "calls": info["calls"],
                "model_ms_total": info["ms"],
                "alone_ms": ms,
                "alone_tflops": 2 * m * k * n / ms / 1e9,
                "model_tflops": 2 * m * k * n * info["calls"] / info["ms"] / 1e9,
            }
        )
        del x, w
    return rows


def kind(name: str) -> str:
    low = name.lower()
    if "sdpa" in low or "fmha" in low or "flash" in low or "attention" in low:
        return "attention"
    if any(s in low for s in ("nvjet", "gemm", "xmma", "cutlass", "sm90_")):
        return "matmul"
    return "other"


def profile_encode(encode) -> dict:
    """One encode under the profiler: kernel time by kind, the union of kernel intervals against
    the span, the matmuls by shape (from the ops' recorded input shapes; ``addmm_`` too, the O and
    down products added into the residual stream in place) and the top kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        encode()
    events = prof.events()
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    by_kind, by_name = Counter(), Counter()
    spans = []
    for e in kernels:
        us = e.device_time_total
        by_kind[kind(e.name)] += us
        by_name[e.name[:90]] += us
        spans.append((e.time_range.start, e.time_range.end))
    spans.sort()
    busy, end = 0.0, None
    for s, t in spans:
        if end is None or s > end:
            busy += t - s
            end = t
        elif t > end:
            busy += t - end
            end = t
    mm = {}
    products = ("aten::mm", "aten::addmm", "aten::addmm_")
    for e in events:
        if e.device_type == DeviceType.CPU and e.name in products and e.input_shapes:
            shapes = [s for s in e.input_shapes if isinstance(s, list) and len(s) == 2]
            if len(shapes) < 2:
                continue
            a, b = shapes[-2], shapes[-1]
            key = (a[0], a[1], b[1])
            row = mm.setdefault(key, {"calls": 0, "ms": 0.0})
            row["calls"] += 1
            row["ms"] += e.self_device_time_total / 1e3
    span = (spans[-1][1] - spans[0][0]) if spans else 0.0
    return {
        "kernel_ms_by_kind": {k: v / 1e3 for k, v in by_kind.items()},
        "kernel_ms_total": sum(by_kind.values()) / 1e3,
        "busy_ms": busy / 1e3,
        "span_ms": span / 1e3,
        "top_kernels_ms": {k: v / 1e3 for k, v in by_name.most_common(25)},
        "matmul_shapes": mm,
    }


VARIANTS = {  # each sets every knob it or another variant touches, so their order does not matter
    "base": {"chunk": 8192, "blas": None, "adds_in_place": True},
    "mlp_chunk_16k": {"chunk": 16384, "blas": None, "adds_in_place": True},
    "cublaslt": {"chunk": 8192, "blas": "cublaslt", "adds_in_place": True},
    "adds_apart": {"chunk": 8192, "blas": None, "adds_in_place": False},  # engine.fused.ADDS_IN_PLACE
}
_MODEL: list = []
_BLAS: list = []


def apply_variant(name: str) -> None:
    from engine import fused
    from engine.chunked import chunk_mlps

    if not _BLAS:
        _BLAS.append(torch.backends.cuda.preferred_blas_library())  # the default, kept for "base"
    setting = VARIANTS[name]
    chunk_mlps(_MODEL[0], setting["chunk"])
    fused.ADDS_IN_PLACE = setting["adds_in_place"]
    torch.backends.cuda.preferred_blas_library(setting["blas"] or _BLAS[0])


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument("--block", type=int, default=16384)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sustain-s", type=float, default=4.0)
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--ab-repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from bench.decode_profile import _inputs
    from bench.speed import StubTokenizer
    from engine import Engine

    clocks = Clocks()
    report: dict = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    with clocks.part("idle"):
        time.sleep(1.0)
    with clocks.part("rates"):  # bursts, then each held for --sustain-s seconds
        report["rates"] = {k: v for k, v in measure_rates(args.sustain_s).items() if k != "decode_sweep"}

    n, block = args.length, args.block
    model = build_model(n + 4096)
    _MODEL.append(model)
    engine = Engine(model, StubTokenizer())
    context, query, settings = _inputs(n, block, "model", 8)
    plan = engine.plan(settings, n, len(query))
    warm_ctx, _, warm_settings = _inputs(2 * block, block, "model", 8)
    warm_plan = engine.plan(warm_settings, 2 * block, len(query))

    def encode(ctx=context, p=plan) -> float:
        torch.cuda.synchronize()
        began = time.perf_counter()
        enc = yield_all(engine.encode_context(ctx, p))
        torch.cuda.synchronize()
        took = time.perf_counter() - began
        del enc
        torch.cuda.empty_cache()
        return took

    encode(warm_ctx, warm_plan)  # kernels compiled, cuDNN plans built
    report["floor"] = floors("star", n, block, 1, report["rates"], model.config)
    report["phase1_s"] = []
    for r in range(args.runs):
        with clocks.part(f"phase1_{r}"):
            report["phase1_s"].append(encode())
        print("phase 1", round(report["phase1_s"][-1], 3), "s", flush=True)
    with AttentionLog() as log, clocks.part("profiled"):
        report["profile"] = profile_encode(encode)
    with clocks.part("alone"):
        report["attention_alone"] = attention_alone(log.calls)
        report["matmul_alone"] = matmuls_alone(report["profile"]["matmul_shapes"])
    report["profile"]["matmul_shapes"] = {
        f"{m}x{k}x{nn}": v for (m, k, nn), v in report["profile"]["matmul_shapes"].items()
    }
    alone_attn = sum(r["alone_ms"] * r["calls"] for r in report["attention_alone"])
    alone_mm = sum(r["alone_ms"] * r["calls"] for r in report["matmul_alone"])
    kinds = report["profile"]["kernel_ms_by_kind"]
    report["model_vs_alone"] = {
        "attention_model_ms": kinds.get("attention", 0.0),
        "attention_alone_ms": alone_attn,
        "matmul_model_ms": kinds.get("matmul", 0.0),
        "matmul_alone_ms": alone_mm,
    }
    report["ab"] = []
    for _ in range(args.ab_repeats):
        for name in args.variants:
            apply_variant(name)
            with clocks.part(f"ab_{name}"):
                s = encode()
            report["ab"].append({"variant": name, "phase1_s": s})
            print("ab", name, round(s, 3), flush=True)
    report["clocks"] = clocks.summary()
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("floor", "phase1_s", "model_vs_alone")}, indent=1))
    print(json.dumps(report["profile"]["kernel_ms_by_kind"]))
    for name, row in report["clocks"].items():
        print(name, json.dumps({k: v for k, v in row.items() if k != "reasons"}), row.get("reasons"))


if __name__ == "__main__":
    main()
