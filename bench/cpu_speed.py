"""CPU speed of the engine against transformers' own ``model.generate``, on the default model.

One real document (``samples/long.txt`` by default) and one question, built into a prompt by
``starcli.prompt.build`` exactly as the CLI does. Three ways to answer it:

- ``star`` and ``global`` through the engine's API: phase 1 (``Engine.encode_context``), then
  ``Engine.answer``, whose ``Stats.decode_tokens_per_s`` is the decode rate;
- ``generate``: greedy ``model.generate`` over the same ids (context + query), sdpa and
  transformers' default cache. Its phase 1 is the prefill of the whole prompt (tokens over the time
  to the first logits); its decode rate is the tokens after the first over the time after it
  (timestamps from a logits processor, which runs once per new token right after the forward).

Phase 1 runs ``--phase1-reps`` times per method. Decoding then runs ``--reps`` rounds over the
encoded context, as a resident session asks a follow-up question: the engine answers from its
``EncodedContext``, ``generate`` gets the context's KV (from its own prefill) as
``past_key_values`` and encodes only the query; its per-token work is that of a fresh call.
Every answer has exactly ``--new-tokens`` tokens (``min_new_tokens`` for ``generate``, no EOS for
the engine). Methods alternate within each round, since timings on a shared 2-core machine swing
by several times within minutes: compare each round's ratios, and the medians of those.

    python bench/cpu_speed.py --reps 7 --new-tokens 64 --out docs/cpu-speed.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTION = "What is the serial number of the new lamp?"  # samples/README.md: the answer has 4817
ENGINE_MODES = ("star", "global")


class Timestamps:
    """A logits processor that only records when ``generate`` asks for each new token's scores."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.times.append(time.perf_counter())
        return scores


def drain(events):
    """Run an event generator to its end; return (events, its return value)."""
    seen = []
    try:
        while True:
            seen.append(next(events))
    except StopIteration as stop:
        return seen, stop.value


def engine_encode(engine, prompt, mode: str, new_tokens: int, block_size: int | None):
    from engine.settings import Attention, GenerationSettings, RunSettings

    settings = RunSettings(
        attention=Attention(mode), block_size=block_size, generation=GenerationSettings(max_tokens=new_tokens)
    )
    plan = engine.plan(settings, len(prompt.context_ids), len(prompt.query_ids))
    _, encoded = drain(engine.encode_context(prompt.context_ids, plan))
    return encoded, {"phase1_tokens_per_s": encoded.tokens / encoded.seconds, "phase1_s": encoded.seconds}


def engine_answer(engine, encoded, prompt, new_tokens: int) -> dict:
    from engine import Stats

    events, _ = drain(engine.answer(encoded, prompt.query_ids))
    stats = next(e for e in events if isinstance(e, Stats))
    assert stats.generated_tokens == new_tokens, stats
    return {"decode_tokens_per_s": stats.decode_tokens_per_s, "ttft_s": stats.ttft_s, "answer": stats.answer}


def generate(model, tokenizer, prompt, new_tokens: int, cache) -> tuple[dict, float]:
    """One greedy ``model.generate`` call over the whole prompt, extending ``cache`` (empty: a
    full prefill; holding the context: only the query is encoded). Returns its figures."""
    from transformers import LogitsProcessorList

    from engine.modelcall import cache_keyword

    model.set_attn_implementation("sdpa")  # the engine's star mode switches it; generate's default
    ids = torch.tensor([prompt.context_ids + prompt.query_ids])
    stamps = Timestamps()
    started = time.perf_counter()
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        **{cache_keyword(type(model)): cache},  # past_key_values before transformers 5.24
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        logits_processor=LogitsProcessorList([stamps]),
        pad_token_id=model.generation_config.eos_token_id,
    )
    new = out[0, ids.shape[1] :].tolist()
    assert len(new) == new_tokens == len(stamps.times), (len(new), len(stamps.times))
    first, last = stamps.times[0], stamps.times[-1]
    rate = (new_tokens - 1) / (last - first) if new_tokens > 1 else 0.0
    answer = tokenizer.decode(new, skip_special_tokens=True)
    return {"decode_tokens_per_s": rate, "ttft_s": first - started, "answer": answer}, first - started


def main() -> None:  # noqa: C901 - one flat measurement script reads best top to bottom
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--document", type=Path, default=ROOT / "samples" / "long.txt")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7, help="decode rounds")
    parser.add_argument("--phase1-reps", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=None, help="star blocks (default: the engine's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write the raw JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import DynamicCache

    from engine import Engine
    from engine.models import load_model
    from starcli.prompt import build

    loaded = load_model(None)
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt = build(tokenizer, args.document.read_text(encoding="utf-8"), args.question)
    n, m = len(prompt.context_ids), len(prompt.query_ids)
    engine = Engine(model, tokenizer)
    engine.eos_ids = set()  # every answer has --new-tokens tokens, as min_new_tokens does for generate
    print(f"context {n} tokens, query {m}, {args.new_tokens} new, {torch.get_num_threads()} threads")

    methods = (*ENGINE_MODES, "generate")
    phase1: dict[str, list[dict]] = {k: [] for k in methods}
    encoded, context_cache = {}, None
    for rep in range(args.phase1_reps):
        for method in methods:
            load = os.getloadavg()[0]
            if method == "generate":
                context_cache = DynamicCache(config=model.config)
                _, seconds = generate(model, tokenizer, prompt, 1, context_cache)
                context_cache.crop(-m)  # keep the context's KV for the decode rounds
                result = {"phase1_tokens_per_s": (n + m) / seconds, "phase1_s": seconds}
            else:
                encoded[method], result = engine_encode(
                    engine, prompt, method, args.new_tokens, args.block_size
                )
            result["load_average_1m"] = load
            phase1[method].append(result)
            print(f"phase 1 {rep} {method:8s} {result['phase1_tokens_per_s']:7.1f} tok/s  (load {load:.1f})")

    decode: dict[str, list[dict]] = {k: [] for k in methods}
    for rep in range(args.reps):
        for method in methods:  # alternating, so that a busy spell on the machine hits every method
            load = os.getloadavg()[0]
            if method == "generate":
                result, _ = generate(model, tokenizer, prompt, args.new_tokens, context_cache)
                context_cache.crop(-(m + args.new_tokens - 1))  # back to the context alone
            else:
                result = engine_answer(engine, encoded[method], prompt, args.new_tokens)
            result["load_average_1m"] = load
            decode[method].append(result)
        rates = {k: decode[k][-1]["decode_tokens_per_s"] for k in methods}
        ratios = "  ".join(f"{k} {r:6.2f} tok/s ({r / rates['generate']:.2f}x)" for k, r in rates.items())
        print(f"decode {rep}  {ratios}  (load {load:.1f})", flush=True)

    summary = {}
    for k in methods:
        rates = [r["decode_tokens_per_s"] for r in decode[k]]
        vs = [r / g["decode_tokens_per_s"] for r, g in zip(rates, decode["generate"], strict=True)]
        summary[k] = {
            "phase1_tokens_per_s": statistics.median(r["phase1_tokens_per_s"] for r in phase1[k]),
            "decode_tokens_per_s": statistics.median(rates),
            "decode_tokens_per_s_best": max(rates),
            "decode_vs_generate_median_of_rounds": statistics.median(vs),
            "decode_vs_generate_min": min(vs),
        }
        print(
            f"median {k:8s} phase 1 {summary[k]['phase1_tokens_per_s']:7.1f} tok/s  "
            f"decode {summary[k]['decode_tokens_per_s']:6.2f} tok/s (best {max(rates):.2f}), "
            f"{summary[k]['decode_vs_generate_median_of_rounds']:.2f}x generate (median of rounds)"
        )
    reference = decode["generate"][0]["answer"].strip()  # the engine holds back a trailing newline
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "python": platform.python_version(),
        },
        "model": "SmolLM2-135M-Instruct (the default model, float32)",
        "document": os.path.relpath(args.document.resolve(), ROOT),
        "question": args.question,
        "context_tokens": n,
        "query_tokens": m,
        "new_tokens": args.new_tokens,
        "reps": args.reps,
        "phase1_reps": args.phase1_reps,
        "star_block_size": encoded["star"].plan.block_size,
        "summary": summary,
        "same_answer_as_generate": {k: decode[k][0]["answer"].strip() == reference for k in ENGINE_MODES},
        "phase1": phase1,
        "decode": decode,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
