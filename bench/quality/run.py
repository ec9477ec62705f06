"""Run every selected system on every selected item and write the raw results as JSON.

Items run one after another, every system on an item before the next item, and the JSON is
rewritten after each item: a run stopped early still compares the systems on the same items, and
``--resume`` continues it. The model is loaded once for starcli (``engine.models.load_model``)
and once more, untouched by the engine, for plain ``generate``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from bench.quality import scoring
from bench.quality.dataset import Item, load, materialize, select
from bench.quality.systems import Prepared, StarcliSystem, prepare


def run(args, systems: list) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from engine import Engine
    from engine.models import load_model
    from starcli.prompt import model_facts

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    documents, items = load()
    items = _grouped(select(items, args.only, args.limit))
    work = Path(args.work)
    materialize(documents, work)
    out = Path(args.out)
    report = _resume(out, args) if args.resume else None
    report = report or _header(args, systems)
    done = {(r["item"], r["system"]) for r in report["results"]}

    started = time.perf_counter()
    loaded = load_model(None)
    plain = AutoModelForCausalLM.from_pretrained(loaded.path, dtype=torch.float32).eval()
    engine = Engine(loaded.model, loaded.tokenizer)
    window, cost = model_facts(None)
    report["load_s"] = round(time.perf_counter() - started, 2)
    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    report["threads"] = torch.get_num_threads()
    print(f"loaded in {report['load_s']} s; {len(items)} items x {len(systems)} systems", flush=True)

    for item in items:
        prepared = prepare(item, loaded.tokenizer, work)
        max_tokens = _max_tokens(systems, prepared, args.seed, window, cost)
        _record_item(report, item, prepared, max_tokens)
        for system in systems:
            if (item.id, system.name) in done:
                continue
            if isinstance(system, StarcliSystem):
                outcome = system.run(engine, prepared, args.seed, window, cost)
            else:
                outcome = system.run(plain, loaded.tokenizer, prepared, max_tokens, args.seed)
            result = _score(item, system.name, outcome, loaded.tokenizer)
            report["results"].append(result)
            print(
                f"{item.id:32} {system.name:10} {result['verdict']:6} {result['stop_reason']:10} "
                f"{result['generated_tokens']:4} tok {result['seconds']:6.1f} s  {result['answer'][:70]!r}",
                flush=True,
            )
        report["finished"] = _now()
        out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def _grouped(items: list[Item]) -> list[Item]:
    """Items over the same documents one after another (in the order they first appear), so that
    a starcli system encodes each context once."""
    first: dict[tuple[str, ...], int] = {}
    for index, item in enumerate(items):
        first.setdefault(item.documents, index)
    return sorted(items, key=lambda item: first[item.documents])


def _max_tokens(systems: list, prepared: Prepared, seed: int, window, cost) -> int:
    """The answer limit starcli's default plan gives this prompt: every system gets the same."""
    reference = next((s for s in systems if isinstance(s, StarcliSystem)), StarcliSystem("default"))
    return reference.plan(prepared, seed, window, cost)[1].max_tokens


def _score(item: Item, system: str, outcome, tokenizer) -> dict:
    if item.command == "ask":
        matched = scoring.accepted(outcome.answer, item.accept)
    else:
        matched = scoring.covers(outcome.answer, item.require)
    ids = tokenizer(outcome.answer, add_special_tokens=False)["input_ids"]
    is_loop = scoring.looped(outcome.stop_reason, ids)
    return {
        "item": item.id,
        "system": system,
        "verdict": scoring.verdict(matched, is_loop),
        "matched": matched,
        "looped": is_loop,
        "answer": outcome.answer,
        "stop_reason": outcome.stop_reason,
        "generated_tokens": outcome.generated_tokens,
        "seconds": round(outcome.seconds, 2),
        **outcome.extra,
    }


def _record_item(report: dict, item: Item, prepared: Prepared, max_tokens: int) -> None:
    if any(entry["id"] == item.id for entry in report["items"]):
        return
    report["items"].append(
        {
            "id": item.id,
            "command": item.command,
            "sources": list(item.sources),
            "question": item.question,
            "instructions": prepared.instructions,
            "accept": list(item.accept),
            "require": [list(group) for group in item.require],
            "context_tokens": len(prepared.context_ids),
            "query_tokens": len(prepared.query_ids),
            "max_tokens": max_tokens,
            "skipped": prepared.skipped,
        }
    )


def _header(args, systems: list) -> dict:
    return {
        "benchmark": "quality",
        "started": _now(),
        "machine": args.machine or _machine(),
        "commit": _commit(),
        "model": "SmolLM2-135M-Instruct (bundled default, float32, CPU)",
        "seed": args.seed,
        "systems": {s.name: s.describe(args.seed) for s in systems},
        "items": [],
        "results": [],
    }


def _resume(out: Path, args) -> dict | None:
    if not out.is_file():
        return None
    report = json.loads(out.read_text())
    if report.get("seed") != args.seed:
        raise SystemExit(f"{out} was run with seed {report.get('seed')}, not {args.seed}")
    return report


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def _commit() -> str:
    """HEAD (read only: the working tree may hold changes of others not yet committed)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip()


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def systems_from(names: list[str], variants: list[str], reuse: bool = True) -> list:
    from bench.quality.systems import BUILT_IN, built_in, parse_variant

    unknown = [n for n in names if n not in BUILT_IN]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; built in: {', '.join(BUILT_IN)}")
    chosen = [built_in(n) for n in names] + [parse_variant(v) for v in variants]
    if len({s.name for s in chosen}) != len(chosen):
        raise SystemExit("system names must be unique")
    for system in chosen:
        if isinstance(system, StarcliSystem):
            system.reuse = reuse
    return chosen
