"""A second question over unchanged sources, through the real CLI: what a saved context saves.

Runs ``starcli ask DOC Q1 --json`` (a miss: encodes and saves), then ``starcli ask DOC Q2 --json``
(a hit: loads), each as its own process with a private ``$STARCLI_CACHE`` (the converted default
model linked in, so that no run converts it), and ``--fresh`` adds ``Q2 --no-cache`` to check that
the hit answers as a run without it. Then, in this process, the saved entry itself: the time to
load it (``engine.saved_context``, ``--load-reps`` times, page cache warm) and to write it again,
beside the encoding time the miss reported. Prints (and writes with ``--out``) one JSON object.

    OMP_NUM_THREADS=1 python bench/saved_context.py --fresh --out docs/saved-context-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(ROOT))

from bench.run_report import run_header, write_report  # noqa: E402

QUESTIONS = ("What is the serial number of the new lamp?", "Who wrote the logbook?")


def private_cache(directory: Path) -> Path:
    """A cache directory sharing the user's converted models and token-estimate files."""
    from engine.paths import cache_dir

    for name in ("models", "tokenizers"):
        if (cache_dir() / name).exists():
            (directory / name).symlink_to(cache_dir() / name)
    return directory


def cli(cache: Path, doc: str, question: str, max_tokens: int, *extra: str) -> dict:
    env = dict(os.environ, STARCLI_CACHE=str(cache), STARCLI_CONFIG=os.devnull, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "starcli", "ask", doc, question, "--json"]
    command += ["--max-tokens", str(max_tokens)]
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    data = json.loads(done.stdout)
    answer = {"context_cache": data["context_cache"], "answer": data["answer"]}
    return {"wall_s": wall, **answer, **data["timings"]}


def entry_times(cache: Path, doc: str, question: str, reps: int) -> dict:
    """Load the entry the CLI saved (as a hit would), ``reps`` times, and write it once."""
    import torch

    from engine.comm import Comm
    from engine.context_store import StoreSpec, list_entries, model_fingerprint
    from engine.models import DEFAULT_MODEL, load_model, resolve_model_path
    from engine.runner import EncodedContext, ModelRunner
    from engine.runplan import make_run_plan
    from engine.saved_context import SavedContexts, save
    from starcli.config import Settings
    from starcli.prompt import ask_instructions, build, model_facts

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    from starcli.ingest import ingest, render_documents

    loaded = load_model(None, "cpu")
    documents = render_documents(ingest([doc]).documents)  # the documents' text as the CLI sends it
    prompt = build(loaded.tokenizer, documents, ask_instructions(question))
    window, cost = model_facts(None)
    settings = Settings().run_settings("ask")
    plan = make_run_plan(settings, len(prompt.context_ids), len(prompt.query_ids), 1, "cpu", window, cost)
    model_key = model_fingerprint(DEFAULT_MODEL, resolve_model_path(None))
    spec = StoreSpec(str(cache / "contexts"), 1 << 40, model_key)

    runner = ModelRunner(loaded.model, Comm(), plan.options)
    store = SavedContexts(spec, runner, plan, prompt.context_ids)
    loads = []
    for _ in range(reps):
        with torch.inference_mode():
            kv, seconds = store.load()
        assert kv is not None, "the CLI's entry was not found: keys differ"
        loads.append(seconds)
    encoded = EncodedContext(plan.context_tokens, plan, kv, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        save(Path(tmp) / "rank.safetensors", store.key, encoded, 0, 1)
        save_s = time.perf_counter() - started
    (entry,) = list_entries(cache / "contexts")
    median = statistics.median(loads)
    return {"entry_bytes": entry.bytes, "load_s": loads, "load_median_s": median, "save_s": save_s}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--doc", default=str(ROOT / "samples" / "long.txt"))
    parser.add_argument("--questions", nargs=2, default=QUESTIONS)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--load-reps", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="also ask Q2 with --no-cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    q1, q2 = args.questions
    with tempfile.TemporaryDirectory(prefix="starcli-bench-") as tmp:
        cache = private_cache(Path(tmp))
        first = cli(cache, args.doc, q1, args.max_tokens)
        second = cli(cache, args.doc, q2, args.max_tokens)
        fresh = cli(cache, args.doc, q2, args.max_tokens, "--no-cache") if args.fresh else None
        entry = entry_times(cache, args.doc, q2, args.load_reps)
    result = {
        **run_header(args.doc),
        "questions": [q1, q2],
        "max_tokens": args.max_tokens,
        "first": first,
        "second": second,
        "fresh": fresh,
        "second_over_first": second["wall_s"] / first["wall_s"],
        "hit_answer_equals_fresh": None if fresh is None else second["answer"] == fresh["answer"],
        "entry": entry,
        "encode_over_load": first["context_encoding_s"] / entry["load_median_s"],
    }
    write_report(result, args.out)


if __name__ == "__main__":
    main()
