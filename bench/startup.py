"""Where the time before the first answer byte goes, on the default model (issue 14).

Two measurements:

1. ``first_byte``: ``starcli ask DOC QUESTION`` as a subprocess, stdout a pipe: the time from the
   command's start to the first byte of the answer, and to its exit; then the same with ``--json``
   for the engine's own figures (phase 1 = ``context_encoding_s``, phase 2's first token =
   ``ttft_s``, weights = ``load_s``). Each with a cold saved context (``--no-cache``) and a warm
   one (the second of two runs).
2. ``stages``: the CLI's steps run one after another in a fresh process, each timed: importing
   the CLI, reading the config and the sources, importing torch/transformers and the engine, the
   tokenizer, tokenizing, the model's config, the weights fingerprint, loading the weights,
   phase 1, phase 2 to the first token.

    OMP_NUM_THREADS=1 python bench/startup.py --out docs/startup-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.run_report import run_header, write_report  # noqa: E402

QUESTION = "Who wrote the logbook?"


def env_for(cache: Path) -> dict[str, str]:
    return dict(os.environ, STARCLI_CACHE=str(cache), STARCLI_CONFIG=os.devnull, PYTHONPATH=str(ROOT))


def first_byte(cache: Path, doc: str, question: str, max_tokens: int, *extra: str) -> dict:
    command = [sys.executable, "-m", "starcli", "ask", doc, question, "--max-tokens", str(max_tokens), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env_for(cache), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = proc.stdout.read(1)
    first_s = time.perf_counter() - started
    rest = proc.stdout.read()
    proc.wait()
    out = {"first_byte_s": first_s if first else None, "exit_s": time.perf_counter() - started}
    if "--json" in extra:
        data = json.loads(first + rest)
        out.update(data["timings"], context_cache=data["context_cache"])
        out["engine_ttft_s"] = data["timings"]["context_encoding_s"] + data["timings"]["ttft_s"]
    return out


STAGES = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import starcli.cli; mark("import starcli.cli")
from starcli.config import read_config, resolve
settings = resolve({}, read_config()[0])
from starcli.ingest import ingest, render_documents
ingested = ingest([DOC]); text = render_documents(ingested.documents); mark("config and sources")
import torch, transformers; mark("import torch, transformers")
from transformers import AutoTokenizer; mark("import the tokenizer classes")
import engine.api; from transformers import AutoModelForCausalLM; mark("import the engine, the model classes")
from starcli.launch import load_tokenizer, InProcessSession
tokenizer = load_tokenizer(None); mark("tokenizer")
from starcli.prompt import ask_instructions, build, model_facts
prompt = build(tokenizer, text, ask_instructions(QUESTION)); mark("tokenize")
window, cost = model_facts(None); mark("model config")
from starcli.cli import _saved_contexts
saved = _saved_contexts(settings); mark("weights fingerprint")
from engine.runplan import make_run_plan
from engine.api import Request
plan = make_run_plan(settings.run_settings("ask"), len(prompt.context_ids), len(prompt.query_ids), 1,
                     "cpu", window, cost)
request = Request(prompt.context_ids, [prompt.query_ids], settings.run_settings("ask"), plan, saved)
for event in InProcessSession(request, None).start():
    if event.kind == "loaded": mark("weights")
    if event.kind == "context_encoded": mark("phase 1 (" + event.context_cache + ")")
    if event.kind == "token": mark("phase 2 to the first token"); break
print(json.dumps([[name, t - marks[i][1]] for i, (name, t) in enumerate(marks[1:])]))
"""


def stages(cache: Path, doc: str) -> list:
    code = STAGES.replace("DOC", repr(doc)).replace("QUESTION", repr(QUESTION))
    done = subprocess.run([sys.executable, "-c", code], env=env_for(cache), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doc", default=str(ROOT / "samples" / "long.txt"))
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", default=None)
    parser.add_argument("--stages-only", action="store_true", help="only the stages, into --out's stages key")
    args = parser.parse_args()
    from engine.paths import cache_dir

    with tempfile.TemporaryDirectory(prefix="starcli-startup-") as tmp:
        cache = Path(tmp)
        for name in ("models", "tokenizers"):
            if (cache_dir() / name).exists():
                (cache / name).symlink_to(cache_dir() / name)
        if args.stages_only:
            first_byte(cache, args.doc, QUESTION, 1)  # saves the context
            result = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
            result["warm_stages"] = stages(cache, args.doc)
            print(json.dumps(result["warm_stages"]))
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            return
        cold = first_byte(cache, args.doc, QUESTION, args.max_tokens, "--no-cache")
        cold_json = first_byte(cache, args.doc, QUESTION, args.max_tokens, "--no-cache", "--json")
        first_byte(cache, args.doc, QUESTION, args.max_tokens)  # saves the context
        warm = first_byte(cache, args.doc, QUESTION, args.max_tokens)
        warm_json = first_byte(cache, args.doc, QUESTION, args.max_tokens, "--json")
        warm_stages = stages(cache, args.doc)
    result = {
        **run_header(args.doc),
        "question": QUESTION,
        "max_tokens": args.max_tokens,
        "cold": {"text": cold, "json": cold_json},
        "warm": {"text": warm, "json": warm_json},
        "warm_stages": warm_stages,
    }
    write_report(result, args.out)


if __name__ == "__main__":
    main()
