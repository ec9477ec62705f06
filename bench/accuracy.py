"""Accuracy benchmark: RULER-style tasks through the engine, dense (``global``) vs Star Attention.

    python -m bench.accuracy --lengths 2048 4096 8000 --samples 20 --seed 0 --out docs/accuracy.json
    python -m bench.accuracy_report docs/accuracy.json          # tables into docs/accuracy.md, plot

Every sample of the *main* suites (``single``, ``noise``, ``essay``: needle tasks the default
model can do) runs in every configuration (dense; Star with blocks n/8, n/4, n/2; blocks n/4 with
an n/16 anchor).
The *side* suites (variable tracking, multi-value/query, needle haystacks, word extraction), near
the floor for a 135M model, run dense and Star n/4 only, and with ``--side-samples`` samples:
CPU time goes where a difference can show. Samples are scheduled so that every cell advances at
the same pace, and the JSON is rewritten after every sample: a run stopped early (``--minutes``,
Ctrl-C) still yields balanced cells; ``--resume`` continues one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from bench.accuracy_run import ALL_CONFIGS, CONFIGS, DENSE, run_sample
from bench.ruler.tasks import SUITES, make_sample

MAIN_SUITES = ("single", "noise", "essay")
SIDE_CONFIGS = (DENSE, next(c for c in CONFIGS if c.label == "star n/4"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def per_length(values: list[int], lengths: list[int], what: str) -> dict[int, int]:
    if len(values) == 1:
        return dict.fromkeys(lengths, values[0])
    if len(values) != len(lengths):
        raise SystemExit(f"{what}: give one count or one per length ({len(lengths)})")
    return dict(zip(lengths, values))


def schedule(lengths, suites, samples: dict[int, int], side: dict[int, int]):
    """(index, length, suite) in the order that keeps every (length, suite) at about the same
    fraction of its sample count, so a run cut short is still balanced; at equal fractions the
    main suites of every length come before the side suites."""
    units = []
    for li, length in enumerate(lengths):
        for si, suite in enumerate(suites):
            is_side = suite not in MAIN_SUITES
            wanted = side[length] if is_side else samples[length]
            units += [(index / wanted, is_side, li, si, index) for index in range(wanted)]
    for _, _, li, si, index in sorted(units):
        yield index, lengths[li], suites[si]


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8000])
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[20], help="main-suite samples (per length)"
    )
    parser.add_argument("--side-samples", type=int, nargs="+", default=None, help="side-suite samples")
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=SUITES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[c.label for c in CONFIGS],
        choices=[c.label for c in ALL_CONFIGS],
        metavar="LABEL",
        help="main-suite configurations (default: dense and plain Star); "
        "also: " + ", ".join(repr(c.label) for c in ALL_CONFIGS if c not in CONFIGS),
    )
    parser.add_argument("--model", default=None, help="default: SmolLM2-135M-Instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--minutes", type=float, default=None, help="start no new sample after this")
    parser.add_argument("--out", type=Path, default=Path("docs/accuracy.json"))
    parser.add_argument("--resume", action="store_true", help="keep the samples already in --out")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from engine import Engine
    from engine.models import load_model

    main_configs = tuple(c for c in ALL_CONFIGS if c.label in args.configs)
    samples = per_length(args.samples, args.lengths, "--samples")
    side = per_length(args.side_samples or args.samples, args.lengths, "--side-samples")
    loaded = load_model(args.model, device=args.device)
    engine = Engine(loaded.model, loaded.tokenizer)
    data = {"meta": {}, "records": []}
    if args.resume and args.out.is_file():
        data = json.loads(args.out.read_text())
    done = {(r["sample"], r["target_tokens"], r["suite"]) for r in data["records"]}
    import transformers

    data["meta"] = {
        "command": "python -m bench.accuracy " + shlex.join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "model": loaded.name,
        "model_path": loaded.path,
        "device": args.device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "lengths": args.lengths,
        "samples": samples,
        "side_samples": side,
        "main_suites": list(MAIN_SUITES),
        "configs": [c.label for c in main_configs],
        "side_configs": [c.label for c in SIDE_CONFIGS],
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "status": "running",
        "elapsed_s": data["meta"].get("elapsed_s", 0.0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base_elapsed = data["meta"]["elapsed_s"]
    status = "complete"
    for index, length, suite in schedule(args.lengths, args.suites, samples, side):
        if (index, length, suite) in done:
            continue
        minutes = (time.perf_counter() - started) / 60
        if args.minutes is not None and minutes >= args.minutes:
            status = "stopped at the time budget"
            break
        sample = make_sample(suite, loaded.tokenizer, length, args.seed, index)
        configs = main_configs if suite in MAIN_SUITES else SIDE_CONFIGS
        unit_start = time.perf_counter()
        records = run_sample(engine, sample, configs)
        data["records"].extend(records)
        data["meta"]["elapsed_s"] = round(base_elapsed + time.perf_counter() - started, 1)
        save(args.out, data)
        right = sum(r["score"] for r in records)
        print(
            f"[{minutes:6.1f} min] {length:>5} {suite:8s} #{index} {sample.prompt_tokens} tokens "
            f"{len(records)} answers, score sum {right:.1f}, {time.perf_counter() - unit_start:.0f} s",
            flush=True,
        )
    data["meta"]["status"] = status
    data["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    data["meta"]["elapsed_s"] = round(base_elapsed + time.perf_counter() - started, 1)
    save(args.out, data)
    print(
        f"{status}: {len(data['records'])} answers in {data['meta']['elapsed_s'] / 60:.1f} min -> {args.out}"
    )


if __name__ == "__main__":
    main()
