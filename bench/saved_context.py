"""A second question over unchanged sources, through the real CLI: what a saved context saves.

Runs ``starcli ask DOC Q1 --json`` (a miss: encodes and saves), then ``starcli ask DOC Q2 --json``
(a hit: loads), each as its own process with a private ``$STARCLI_CACHE`` (the converted default
model linked in, so that no run converts it), and ``--fresh`` adds ``Q2 --no-cache`` to check that
the hit answers as a run without it. Then, in this process, the saved entry itself: the time to
load it (``engine.saved_context``, ``--load-reps`` times, page cache warm) and to write it again,
beside the encoding time the miss reported. Prints (and writes with ``--out``) one JSON object.

    OMP_NUM_THREADS=1 python bench/saved_context.py --fresh --out docs/saved-context-cpu.json

``--engine`` measures instead, in this process on ``--device``, what the choice between loading
and encoding rests on (issue 14: save a context only where writing and loading it once beats
encoding it again), for each ``--tokens`` size of text (``bench/startup.py``'s logbook text)
under ``--positions``: phase 1 twice (the first in a fresh process, the second warm), writing the
entry, loading it with the page cache warm (``--load-reps`` times) and cold (the file's pages
dropped first), the load's parts (getting the tensors, their CRC-32s, the copy to the device),
and what ``engine.saved_context.worth_saving`` decides:

    python bench/saved_context.py --engine --device cuda --positions local --tokens 32768 131072
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
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
    from bench.startup import env_for

    env = env_for(cache)
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


def drop_from_page_cache(path: Path) -> bool:
    """Write the file's pages out and ask the kernel to drop them, so that the next read comes
    from the disk; False where the platform has no ``posix_fadvise``."""
    if not hasattr(os, "posix_fadvise"):
        return False
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def filesystem_of(path: Path) -> str:
    """The mount holding ``path`` as /proc/mounts names it (tmpfs reads at memory speed)."""
    best = ("", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best[0]):
                best = (mount, kind)
    return f"{best[1]} at {best[0]}"


def load_parts(path: Path, device) -> dict:
    """The three parts of a load, one after another over the whole file: getting every tensor
    (safetensors may map the file rather than read it: then the CRC pass reads the pages), their
    CRC-32s, the copy to the device."""
    import torch
    from safetensors import safe_open

    from engine.saved_context import _crc

    started = time.perf_counter()
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        tensors = [handle.get_tensor(name) for name in handle.keys()]
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    for tensor in tensors:
        _crc(tensor)
    crc_s = time.perf_counter() - started
    started = time.perf_counter()
    moved = [tensor.to(device) for tensor in tensors]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    copy_s = time.perf_counter() - started
    del moved
    return {"get_tensors_s": read_s, "crc_s": crc_s, "copy_to_device_s": copy_s}


def drain(events):
    """Run an event generator to its end; its return value."""
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


def engine_times(args) -> dict:
    """Encode, save and load the context at each size in this process (``--engine``)."""
    import torch

    from bench.startup import make_doc
    from engine import Engine
    from engine.context_store import StoreSpec, model_fingerprint
    from engine.models import DEFAULT_MODEL, load_model, resolve_model_path
    from engine.paths import cache_dir
    from engine.runplan import make_run_plan
    from engine.saved_context import (
        LOAD_BYTES_PER_S,
        SAVE_BYTES_PER_S,
        SavedContexts,
        kv_bytes,
        save,
        worth_saving,
    )
    from starcli.config import Settings
    from starcli.ingest import ingest, render_documents
    from starcli.prompt import ask_instructions, build, model_facts

    started = time.perf_counter()
    loaded = load_model(None, args.device)
    load_model_s = time.perf_counter() - started
    engine = Engine(loaded.model, loaded.tokenizer)
    device = engine.device
    window, cost = model_facts(None)
    settings = Settings(positions=args.positions, max_tokens=16).run_settings("ask")
    model_key = model_fingerprint(DEFAULT_MODEL, resolve_model_path(None))
    sizes = []
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-saved-", dir=cache_dir()) as tmp:
        spec = StoreSpec(tmp, 1 << 40, model_key)
        for tokens in args.tokens:
            doc = make_doc(tokens, Path(tmp))
            text = render_documents(ingest([str(doc)]).documents)
            prompt = build(loaded.tokenizer, text, ask_instructions(QUESTIONS[0]))
            ids = prompt.context_ids
            plan = make_run_plan(settings, len(ids), len(prompt.query_ids), 1, device.type, window, cost)
            encodes, encoded = [], None
            for _ in range(2):
                encoded = None  # the earlier encoding's memory goes first
                encoded = drain(engine.encode_context(ids, plan))
                encodes.append(encoded.seconds)
            store = SavedContexts(spec, engine.runner(plan), plan, ids)
            started = time.perf_counter()
            save(store.path, store.key, encoded, 0, 1)
            save_s = time.perf_counter() - started
            entry_bytes = store.path.stat().st_size
            del encoded
            warm = []
            for _ in range(args.load_reps):
                with torch.inference_mode():
                    cache, seconds = store.load()
                assert cache is not None, "the entry just written did not load"
                warm.append(seconds)
                del cache
            dropped = drop_from_page_cache(store.path)
            with torch.inference_mode():
                cache, cold = store.load()
            del cache
            parts = load_parts(store.path, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            best = min(warm)
            row = {
                "tokens": len(ids),
                "blocks": plan.blocks,
                "block_size": plan.block_size,
                "kv_bytes": kv_bytes(loaded.model.config, len(ids), next(loaded.model.parameters()).dtype),
                "entry_bytes": entry_bytes,
                "encode_s": encodes,
                "save_s": save_s,
                "load_warm_s": warm,
                "load_cold_s": cold if dropped else None,
                "load_parts_warm": parts,
                "load_bytes_per_s_warm": entry_bytes / best,
                "load_bytes_per_s_cold": entry_bytes / cold if dropped else None,
                "encode_over_load_warm": encodes[-1] / best,
                "worth_saving": {
                    "first_encode": worth_saving(entry_bytes, encodes[0], device.type),
                    "warm_encode": worth_saving(entry_bytes, encodes[-1], device.type),
                    "rate_assumed": LOAD_BYTES_PER_S.get(device.type),
                    "save_rate_assumed": SAVE_BYTES_PER_S.get(device.type),
                },
            }
            sizes.append(row)
            print(json.dumps(row), flush=True)
            store.path.unlink()
        filesystem = filesystem_of(Path(tmp))
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": str(next(loaded.model.parameters()).dtype),
        "positions": args.positions,
        "store_filesystem": filesystem,
        "load_model_s": load_model_s,
        "sizes": sizes,
    }


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--doc", default=str(ROOT / "samples" / "long.txt"))
    parser.add_argument("--questions", nargs=2, default=QUESTIONS)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--load-reps", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="also ask Q2 with --no-cache")
    parser.add_argument("--out", default=None)
    parser.add_argument("--engine", action="store_true", help="encode vs save vs load in-process")
    parser.add_argument("--device", default="cpu", help="--engine: cpu or cuda")
    parser.add_argument("--positions", default="local", help="--engine: the plan's positions")
    parser.add_argument("--tokens", type=int, nargs="+", default=[32768, 131072], help="--engine: sizes")
    args = parser.parse_args()
    if args.engine:
        result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), **engine_times(args)}
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
        text = json.dumps(result, indent=2)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return
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
