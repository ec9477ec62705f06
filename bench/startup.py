"""Where the time before the first answer byte goes (issue 14), on CPU or a GPU machine.

Every run is the real command, ``python -m starcli ask DOC QUESTION ...``, as a subprocess with
stdout a pipe; the time from starting it to the first byte of the answer is read on that pipe.

1. ``runs``: the command under ``bench/cli_trace.py`` (the same CLI in one process, with a clock on
   each of its steps), ``--runs`` times in a row: the first finds the file caches as they are, the
   later ones warm. Each run reports the first answer byte, the steps (imports, config and
   sources, the tokenizer, tokenizing, the model's config, the weights fingerprint, loading the
   weights, CUDA initialisation, phase 1, phase 2 to the first token) and the headline figure of
   the GPU target: **the overhead before phase 1 excluding the weights** (phase 1's start, less
   the time ``load_model`` spent outside CUDA initialisation).
2. ``plain``: the same command without the tracer, once more, to show the tracer costs nothing.
3. ``cache`` (``--cache``): a first run with the saved context on (a miss: it encodes, then saves
   where ``engine.saved_context.worth_saving`` says the first hit wins it back), then two more (hits
   where it saved), the first and third with ``--json`` (the engine's figures beside the first byte).

``--tokens N`` builds a text of about N tokens from ``samples/logbook.txt`` (repeated past its
~159K); with local positions (``--positions local``) phase 1 runs over all of it however long.

    OMP_NUM_THREADS=1 python bench/startup.py --cache --out docs/startup-cpu.json
    python bench/startup.py --device cuda --positions local --tokens 131072 --out startup-gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who wrote the logbook?"
LOGBOOK = ROOT / "samples" / "logbook.txt"
# samples/logbook.txt as the CLI reads it (with its line marks): 158,748 tokens of the default
# model from 572,460 characters (docs/benchmarks.md, the 150K-token CPU run).
LOGBOOK_TOKENS_PER_CHAR = 158_748 / 572_460


def env_for(cache: Path, t0: float | None = None) -> dict[str, str]:
    """The CLI's environment: a private cache, no config file, this checkout first on the path
    (and whatever else was there: a GPU machine keeps gguf and the default model's package apart)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, STARCLI_CACHE=str(cache), STARCLI_CONFIG=os.devnull, PYTHONPATH=path)
    if t0 is not None:
        env["BENCH_T0"] = repr(t0)
    return env


def make_doc(tokens: int, directory: Path) -> Path:
    """A text of about ``tokens`` tokens: the logbook's first lines, repeated past its end."""
    text = LOGBOOK.read_text()
    chars = int(tokens / LOGBOOK_TOKENS_PER_CHAR)
    body = (text * (chars // len(text) + 1))[:chars]
    body = body[: body.rfind("\n") + 1] or body
    path = directory / f"logbook-{tokens}.txt"
    path.write_text(body)
    return path


def command(doc: str, question: str, max_tokens: int, extra: list[str]) -> list[str]:
    return ["-m", "starcli", "ask", doc, question, "--max-tokens", str(max_tokens), *extra]


def first_byte(cache: Path, args: list[str], trace: Path | None = None) -> dict:
    """Run ``python ARGS`` (the CLI, or the CLI under the tracer writing ``trace``): seconds to the
    first byte on stdout and to the exit; with ``--json``, the engine's own timings too."""
    if trace is not None:
        args = [str(ROOT / "bench" / "cli_trace.py"), str(trace), *args[2:]]  # drop "-m starcli"
    started_wall, started = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=env_for(cache, started_wall),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.read(1)
    first_s = time.perf_counter() - started
    rest = proc.stdout.read()
    stderr = proc.stderr.read().decode(errors="replace")
    proc.wait()
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {stderr[-2000:]}")
    out = {"first_byte_s": first_s if first else None, "exit_s": time.perf_counter() - started}
    if "--json" in args:
        data = json.loads(first + rest)
        out.update(data["timings"], context_cache=data["context_cache"])
        out["context_tokens"] = data["context_tokens"]
        out["engine_ttft_s"] = data["timings"]["context_encoding_s"] + data["timings"]["ttft_s"]
    return out


def summarize(trace: dict) -> dict:
    """The trace's steps (nested ones under the step that called them, each with its own time
    less its children's) and the headline figures."""
    calls = sorted(trace["calls"], key=lambda c: (c["start_s"], -c["seconds"]))
    for call in calls:
        call["end_s"] = call["start_s"] + call["seconds"]
    steps, stack = [], []
    for call in calls:
        while stack and call["start_s"] >= stack[-1]["end_s"] - 1e-9:
            stack.pop()
        row = {k: call[k] for k in ("step", "start_s", "seconds", "imports_s")}
        row["depth"], row["children_s"] = len(stack), 0.0
        if stack:
            stack[-1]["row"]["children_s"] += call["seconds"]
        steps.append(row)
        stack.append({"end_s": call["end_s"], "row": row})
    for row in steps:
        row["own_s"] = row["seconds"] - row["children_s"]
    gaps, covered = [], trace["harness_started_s"]
    for call in calls:  # time no step accounts for (over 50 ms): work the trace does not name
        if call["start_s"] - covered > 0.05:
            gaps.append({"after_s": covered, "seconds": call["start_s"] - covered, "before": call["step"]})
        covered = max(covered, call["end_s"])

    events = {e["event"]: e for e in trace["events"]}
    first = [c for c in calls if c["step"] == "phase 1"]
    phase1_start = first[0]["start_s"] if first else None
    loads = [c for c in calls if c["step"] == "weight load"]
    cuda = [c for c in calls if c["step"] == "CUDA init"]
    cuda_s = sum(c["seconds"] for c in cuda)
    weights_s = sum(c["seconds"] for c in loads)
    within = sum(c["seconds"] for c in cuda for w in loads if w["start_s"] <= c["start_s"] <= w["end_s"])
    stats = events.get("stats", {}).get("data", {})
    token = events.get("token", {}).get("at_s")
    headline = {
        "python_start_s": trace["harness_started_s"],
        "before_phase1_s": phase1_start,
        "weight_load_s": weights_s - within,
        "cuda_init_s": cuda_s,
        "overhead_before_phase1_excluding_weights_s": (
            phase1_start - (weights_s - within) if phase1_start is not None else None
        ),
        "imports_before_phase1_s": first[0]["imports_at_start_s"] if first else None,
        "phase1_s": stats.get("context_encoding_s"),
        "phase2_first_token_s": stats.get("ttft_s"),
        "first_token_event_s": token,
        "context_tokens": stats.get("context_tokens"),
        "blocks": sum(stats.get("blocks_per_rank") or []) or None,
    }
    return {"headline": headline, "steps": steps, "gaps": gaps, "imports_s": trace["imports_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doc", default=None, help="the document (default: samples/long.txt)")
    parser.add_argument("--tokens", type=int, default=None, help="build a text of about this many tokens")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the CLI's)")
    parser.add_argument("--positions", default=None, help="the CLI's --positions")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2, help="traced runs in a row (file caches warm)")
    parser.add_argument("--cache", action="store_true", help="also a saved-context miss and hit")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from engine.paths import cache_dir

    extra = [
        f"--{name}={value}"
        for name, value in (("device", args.device), ("positions", args.positions))
        if value
    ]
    with tempfile.TemporaryDirectory(prefix="starcli-startup-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        for name in ("models", "tokenizers"):
            if (cache_dir() / name).exists():
                (cache / name).symlink_to(cache_dir() / name)
        doc = str(
            make_doc(args.tokens, Path(tmp)) if args.tokens else (args.doc or ROOT / "samples" / "long.txt")
        )
        no_cache = command(doc, args.question, args.max_tokens, [*extra, "--no-cache"])
        runs = []
        for index in range(args.runs):
            trace_path = Path(tmp) / f"trace-{index}.json"
            measured = first_byte(cache, no_cache, trace_path)
            trace = json.loads(trace_path.read_text())
            runs.append({**measured, **summarize(trace)})
            print(json.dumps({"run": index, **measured, **runs[-1]["headline"]}), flush=True)
        plain = first_byte(cache, no_cache)
        print(json.dumps({"plain": plain}), flush=True)
        saved = None
        if args.cache:
            with_cache = command(doc, args.question, args.max_tokens, extra)
            miss = first_byte(cache, [*with_cache, "--json"])
            after = first_byte(cache, with_cache)  # a hit where the miss saved (worth_saving)
            after_json = first_byte(cache, [*with_cache, "--json"])
            saved = {"miss_json": miss, "second": after, "third_json": after_json}
            print(json.dumps({"cache": saved}), flush=True)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "doc": os.path.relpath(doc, ROOT)
        if not args.tokens
        else f"{args.tokens} tokens of samples/logbook.txt",
        "command": ["starcli", *no_cache[2:]],
        "question": args.question,
        "max_tokens": args.max_tokens,
        "runs": runs,
        "plain": plain,
        "cache": saved,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
