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

``--jobs N`` runs samples in N processes, each with its own copy of the model (a 135M model
leaves a GPU mostly idle, waiting on Python and kernel launches): they take samples in schedule
order, and their records are merged into the one JSON as they finish.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
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


Unit = tuple[int, int, str]  # (sample index, target length, suite)


class SampleRunner:
    """The model loaded once (per process) and one sample at a time through every configuration."""

    def __init__(self, args: argparse.Namespace):
        torch.set_num_threads(args.threads)
        from engine import Engine
        from engine.models import load_model

        self.loaded = load_model(args.model, device=args.device, dtype=args.dtype)
        self.engine = Engine(self.loaded.model, self.loaded.tokenizer)
        self.seed = args.seed
        self.main_configs = tuple(c for c in ALL_CONFIGS if c.label in args.configs)

    def run(self, unit: Unit) -> tuple[list[dict], int]:
        """The records of one sample and its prompt length."""
        index, length, suite = unit
        sample = make_sample(suite, self.loaded.tokenizer, length, self.seed, index)
        configs = self.main_configs if suite in MAIN_SUITES else SIDE_CONFIGS
        return run_sample(self.engine, sample, configs), sample.prompt_tokens


_worker: tuple[SampleRunner, float] | None = None  # this pool process's runner and deadline


def _start_worker(args: argparse.Namespace, deadline: float) -> None:
    global _worker
    _worker = (SampleRunner(args), deadline)


def _run_in_worker(unit: Unit) -> tuple[Unit, list[dict] | None, int, float]:
    runner, deadline = _worker
    if time.time() >= deadline:  # past the time budget: no new sample
        return unit, None, 0, 0.0
    started = time.perf_counter()
    records, prompt_tokens = runner.run(unit)
    return unit, records, prompt_tokens, time.perf_counter() - started


def run_units(
    args: argparse.Namespace, runner: SampleRunner | None, units: list[Unit], deadline: float
) -> Iterator[tuple[Unit, list[dict] | None, int, float]]:
    """(unit, records or None past the deadline, prompt tokens, seconds) as samples finish: in
    this process, or in ``args.jobs`` processes that take the units in schedule order."""
    if args.jobs <= 1:
        for unit in units:
            if time.time() >= deadline:
                return
            started = time.perf_counter()
            records, prompt_tokens = runner.run(unit)
            yield unit, records, prompt_tokens, time.perf_counter() - started
        return
    context = multiprocessing.get_context("spawn")  # CUDA does not survive fork
    with context.Pool(args.jobs, _start_worker, (args, deadline)) as pool:
        yield from pool.imap_unordered(_run_in_worker, units, chunksize=1)
        pool.close()  # let the workers exit on their own (terminating them leaks their semaphores)
        pool.join()


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
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="default: the CLI's"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (per process)")
    parser.add_argument("--jobs", type=int, default=1, help="processes, each with the model")
    parser.add_argument("--minutes", type=float, default=None, help="start no new sample after this")
    parser.add_argument("--out", type=Path, default=Path("docs/accuracy.json"))
    parser.add_argument("--resume", action="store_true", help="keep the samples already in --out")
    args = parser.parse_args(argv)

    main_configs = tuple(c for c in ALL_CONFIGS if c.label in args.configs)
    samples = per_length(args.samples, args.lengths, "--samples")
    side = per_length(args.side_samples or args.samples, args.lengths, "--side-samples")
    runner = SampleRunner(args)  # in this process too: the model's name and dtype for the record
    loaded = runner.loaded
    if args.jobs > 1:  # the workers load their own
        runner = None
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
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "jobs": args.jobs,
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
    deadline = time.time() + (args.minutes * 60 if args.minutes is not None else float("inf"))
    units = [u for u in schedule(args.lengths, args.suites, samples, side) if u not in done]
    finished = 0
    for (index, length, suite), records, prompt_tokens, seconds in run_units(args, runner, units, deadline):
        if records is None:
            continue
        finished += 1
        data["records"].extend(records)
        data["meta"]["elapsed_s"] = round(base_elapsed + time.perf_counter() - started, 1)
        save(args.out, data)
        right = sum(r["score"] for r in records)
        print(
            f"[{(time.perf_counter() - started) / 60:6.1f} min] {length:>5} {suite:8s} #{index} "
            f"{prompt_tokens} tokens {len(records)} answers, score sum {right:.1f}, {seconds:.0f} s",
            flush=True,
        )
    status = "complete" if finished == len(units) else "stopped at the time budget"
    data["meta"]["status"] = status
    data["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    data["meta"]["elapsed_s"] = round(base_elapsed + time.perf_counter() - started, 1)
    save(args.out, data)
    print(
        f"{status}: {len(data['records'])} answers in {data['meta']['elapsed_s'] / 60:.1f} min -> {args.out}"
    )


if __name__ == "__main__":
    main()
