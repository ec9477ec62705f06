"""Accuracy against input length beyond the model's window: local positions, several block and
anchor sizes, against global positions (RoPE extrapolation past the window).

    # the prompts (CPU and the tokenizer only): one small file, reused by every run
    python -m bench.long_inputs --make-samples samples.xz --jobs 2
    # the run (one GPU; bf16, the plan's default there)
    python -m bench.long_inputs --samples samples.xz --device cuda --minutes 6 --out docs/long-inputs.json
    python -m bench.long_inputs_report docs/long-inputs.json     # tables into docs/long-inputs.md, plot

docs/long-inputs.md has the exact commands of the recorded runs and what they found.

The needle suites of ``bench.ruler`` (``single``: one needle; ``noise`` and ``essay``: three keys
in one haystack, RULER's multi-key setting; ``multi``: multi-value and multi-query) at lengths from
the window (8,000 prompt tokens: the last length where global positions are possible) to 16x
it (``--lengths``), each sample asked in every configuration of ``CONFIGS`` over one encoding through the
engine's public API (``Engine.plan``, ``encode_context``, ``answer``), as ``bench.accuracy_run``.

Configurations (``--configs``):

- ``global``: dense attention at global positions. Within the window this is the exact model,
  the reference; beyond it the bench raises the loaded model's ``max_position_embeddings`` so the
  engine's window check lets it through (RoPE extrapolation; the CLI never does this).
- ``local auto``: Star with local positions and the block the engine picks for the CLI's
  ``ask`` (answer limit 256: block = anchor = (window - query - 256) // 2, about 3.9K).
- ``local 2K/2K``, ``local 1K/1K``: blocks and anchor of that many tokens.
- ``local 2K+4K``: 2K blocks behind a 4K anchor. The engine refuses an anchor longer than the
  block, so the bench builds that plan itself: block 0 is the anchor's 4,096 tokens (encoded
  causally, as the anchor always is), every later block has 2,048 tokens and sits right after it.
- ``map-reduce``: the CLI's fallback past 2x the window (``starcli.mapreduce``): the documents
  (decoded back from the sample's tokens) cut into window-sized parts, each asked the question
  on its own (global positions: a part fits the window; with the question's answer prefix, as
  every configuration here), answers kept only where grounded in their part, one finding
  answering directly, several reduced by one more pass. Run per question, since the parts'
  prompts hold the question.
- ``local auto temp``, ``local auto temp2``: ``local auto``'s encoding, answered again with every
  context key scaled by ``log(n) / log(window)`` (1 at the window, 1.15 at 4x, 1.31 at 16x), or
  by its square: an attention temperature on the query's attention to the context only, as APE
  scales it, sized like scalable softmax. Costs no second phase 1.

Samples are scheduled so that every (length, suite) advances at the same pace and the JSON is
rewritten after each one: a run cut by ``--minutes`` still has balanced cells. Every record keeps
the prediction, its score, whether an answer came at all (``produced``), the stop reason and
phase-1 seconds (``encode_s``, synchronised; the shortest length's first sample is run once in
every configuration beforehand as a warm-up and not recorded). ``--skip-done`` leaves out the
samples earlier runs' JSON hold (a second run adds haystacks, the report pools the files);
``--global-up-to`` runs ``global`` only up to a length.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import lzma
import math
import os
import pickle
import platform
import shlex
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE_SAMPLES = {"single": 10, "noise": 6, "essay": 4, "multi": 3}  # per length: 10/18/12/6 questions
LENGTHS = (8000, 16384, 32768, 65536, 131072)
WINDOW_FRACTION_NOTE = "8000 = the default model's 8,192-token window less room for the answer"
CLI_ASK_ANSWER = 256  # the CLI's default answer limit for ``ask``: what sizes the automatic block


@dataclass(frozen=True)
class LongConfig:
    label: str
    positions: str  # "global" or "local"
    block: int | None = None  # None: the engine's automatic choice
    anchor: int | None = None  # None: as long as the block; longer: block 0 is the anchor
    # A phase-2 variant of configuration ``base``: its encoding, with every context key scaled by
    # ``(log(n) / log(window)) ** temp_power`` before answering (an attention temperature on the
    # context only, against the dilution of attention over n keys; APE's idea, sized like
    # scalable softmax's log n).
    base: str | None = None
    temp_power: float = 1.0
    map_reduce: bool = False  # starcli.mapreduce over window-sized parts (the CLI's fallback)


CONFIGS = (
    LongConfig("global", "global"),
    LongConfig("local auto", "local"),
    LongConfig("local 2K/2K", "local", 2048, 2048),
    LongConfig("local 1K/1K", "local", 1024, 1024),
    LongConfig("local 2K+4K", "local", 2048, 4096),
    LongConfig("local auto temp", "local", base="local auto"),
    LongConfig("local auto temp2", "local", base="local auto", temp_power=2.0),
    LongConfig("map-reduce", "global", map_reduce=True),
)
CONFIG_BY_LABEL = {c.label: c for c in CONFIGS}


# --- samples ------------------------------------------------------------------------------------
def sample_units(lengths, suites: dict[str, int]) -> list[tuple[int, int, str]]:
    """(index, length, suite) in the order that keeps every cell at the same fraction of its
    count (a run cut short stays balanced); longer lengths first at equal fractions, so the
    lengths beyond the window, the point of the run, are never the ones left out."""
    units = []
    for li, length in enumerate(lengths):
        for si, (suite, wanted) in enumerate(suites.items()):
            units += [(index / wanted, -li, si, index, length, suite) for index in range(wanted)]
    return [(index, length, suite) for *_, index, length, suite in sorted(units)]


def _pack(sample) -> dict:
    """A sample without its documents' text (not needed to ask), token ids as uint16 bytes."""
    ids = array("H", sample.context_ids)  # the default model's vocabulary has 49,152 tokens
    return {
        **{f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)},
        "documents": "",
        "context_ids": ids.tobytes(),
        "query_ids": [array("H", q).tobytes() for q in sample.query_ids],
    }


def _unpack(data: dict):
    from bench.ruler.tasks import Sample

    def ids(raw: bytes) -> list[int]:
        a = array("H")
        a.frombytes(raw)
        return a.tolist()

    return Sample(
        **{**data, "context_ids": ids(data["context_ids"]), "query_ids": [ids(q) for q in data["query_ids"]]}
    )


_TOKENIZER = None


def _init_worker(tokenizer_path: str) -> None:
    global _TOKENIZER
    from transformers import AutoTokenizer

    _TOKENIZER = AutoTokenizer.from_pretrained(tokenizer_path)


def _make(unit: tuple[int, int, str, int]) -> dict:
    from bench.ruler.tasks import make_sample

    index, length, suite, seed = unit
    return _pack(make_sample(suite, _TOKENIZER, length, seed, index))


def make_samples(tokenizer_path: str, units, seed: int, jobs: int) -> list[dict]:
    """Every sample of ``units``, built in ``jobs`` processes (tokenizing 128K-token haystacks
    while fitting them to the budget takes seconds each)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = [(index, length, suite, seed) for index, length, suite in units]
    if jobs <= 1:
        _init_worker(tokenizer_path)
        return [_make(w) for w in work]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(jobs, _init_worker, (tokenizer_path,)) as pool:
        return pool.map(_make, work, chunksize=1)


def save_samples(path: Path, packed: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wb", preset=6) as f:
        pickle.dump({"meta": meta, "samples": packed}, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_samples(path: Path) -> tuple[dict, dict[tuple[int, int, str], dict]]:
    with lzma.open(path, "rb") as f:
        data = pickle.load(f)  # noqa: S301 - a file this module wrote
    return data["meta"], {(s["index"], s["target_tokens"], s["suite"]): s for s in data["samples"]}


# --- one sample in every configuration ----------------------------------------------------------
@contextlib.contextmanager
def window_raised(model, tokens: int) -> Iterator[bool]:
    """Let a global-positions plan past the model's window (RoPE extrapolation): raise the loaded
    model's ``max_position_embeddings`` for the duration; yields whether it had to."""
    config = model.config
    window = config.max_position_embeddings
    if tokens <= window:
        yield False
        return
    config.max_position_embeddings = tokens
    try:
        yield True
    finally:
        config.max_position_embeddings = window


def anchor_longer_plan(plan, n: int, block: int, anchor: int):
    """``plan`` with block 0 = the first ``anchor`` tokens (the anchor) and ``block``-token blocks
    after it, each at local positions ``anchor .. anchor + block - 1`` (one rank)."""
    from engine.plan import BlockPlan

    if n <= anchor:
        return plan
    blocks = ((0, anchor),) + tuple((s, min(s + block, n)) for s in range(anchor, n, block))
    layout = BlockPlan(n, block, anchor, blocks, (tuple(range(len(blocks))),), False)
    return dataclasses.replace(plan, layout=layout, block_size=block, anchor_size=anchor)


def plan_for(engine, config: LongConfig, n: int, m: int, longest: int):
    """The engine's plan for ``config`` (and whether the window had to be raised for it)."""
    from engine import GenerationSettings, RunSettings
    from engine.settings import Attention, Positions

    if config.positions == "global":
        settings = RunSettings(
            attention=Attention.GLOBAL,
            positions=Positions.GLOBAL,
            generation=GenerationSettings.plain(max_tokens=longest),
        )
        with window_raised(engine.model, n + m + longest) as raised:
            return engine.plan(settings, n, m), raised
    if config.block is None:  # the automatic choice, as the CLI's ask would size it
        generation = GenerationSettings.plain(default_max_tokens=CLI_ASK_ANSWER)
        settings = RunSettings(attention=Attention.STAR, positions=Positions.LOCAL, generation=generation)
        return engine.plan(settings, n, m), False
    generation = GenerationSettings.plain(max_tokens=longest)
    if config.anchor is not None and config.anchor > config.block:
        from engine.api import position_limit
        from engine.runplan import fit_max_tokens

        settings = RunSettings(
            attention=Attention.STAR,
            positions=Positions.LOCAL,
            block_size=config.block,
            generation=generation,
        )
        plan = anchor_longer_plan(engine.plan(settings, n, m), n, config.block, config.anchor)
        fit_max_tokens(plan.context_span, m, longest, position_limit(engine.model))  # raises if too long
        return plan, False
    settings = RunSettings(
        attention=Attention.STAR,
        positions=Positions.LOCAL,
        block_size=config.block,
        anchor_size=config.anchor,
        generation=generation,
    )
    return engine.plan(settings, n, m), False


def _sync(engine) -> None:
    import torch

    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def key_temperature(n: int, window: int, power: float = 1.0) -> float:
    """The factor on the context's attention logits for ``n`` context tokens: 1 at the window."""
    return max(1.0, math.log(n) / math.log(window)) ** power


def scale_context_keys(encoded, factor: float, originals: list) -> None:
    """Set every layer's context keys to ``factor`` times their phase-1 values (kept in
    ``originals`` on first use): a temperature ``1/factor`` on the query's attention to the
    context, none on its own tokens. An fp8 cache (``--kv-dtype auto`` on a GPU) has its keys'
    per-token scales multiplied instead, which scales each key exactly. Bench only: it reaches
    into the cache's layers."""
    import torch

    def keys(layer):
        return layer.context_k if layer.context_ks is None else layer.context_ks

    with torch.inference_mode():  # the cache's tensors were made under it
        layers = encoded.cache.layers
        if not originals:
            originals.extend(keys(layer).clone() for layer in layers)
        for layer, original in zip(layers, originals):
            torch.mul(original, factor, out=keys(layer))


def run_sample(engine, sample, configs) -> list[dict]:  # noqa: C901 - one flat loop reads best
    """One record per (configuration, question); a configuration that fails (out of memory, a
    refusal) gives records with ``error`` set and score 0, never stops the run."""
    import torch

    from bench.accuracy_run import drain
    from bench.ruler.scoring import string_match_all
    from engine import GenerationSettings, Stats

    records = []
    n = len(sample.context_ids)
    m = max(len(q) for q in sample.query_ids)
    longest = max(q.max_tokens for q in sample.questions)
    done: dict[str, tuple] = {}  # label -> (plan, encoded, error, encode_s, raised, original keys)
    for config in configs:
        if config.map_reduce:
            records += run_map_reduce(engine, sample, config)
            continue
        base = {
            "suite": sample.suite,
            "target_tokens": sample.target_tokens,
            "sample": sample.index,
            "config": config.label,
            "positions": config.positions,
            "context_tokens": n,
        }
        plan = encoded = None
        error, encode_s, raised, factor = None, None, False, None
        if config.base is not None:
            if config.base not in done:
                raise SystemExit(f"configuration {config.label!r} needs {config.base!r} before it")
            plan, encoded, error, encode_s, raised, originals = done[config.base]
            if encoded is not None:
                factor = key_temperature(n, engine.model.config.max_position_embeddings, config.temp_power)
                scale_context_keys(encoded, factor, originals)
        else:
            try:
                plan, raised = plan_for(engine, config, n, m, longest)
                _sync(engine)
                started = time.perf_counter()
                encoded = drain(engine.encode_context(sample.context_ids, plan))
                _sync(engine)
                encode_s = time.perf_counter() - started
            except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                error = f"{type(exc).__name__}: {exc}"
        layout = plan.layout if plan is not None else None
        base.update(
            {
                "block_size": plan.block_size if plan is not None else config.block,
                "anchor_size": layout.anchor if layout is not None else config.anchor,
                "blocks": len(layout.blocks) if layout is not None else None,
                "context_span": plan.context_span if plan is not None else None,
                "window_raised": raised,
                "key_scale": None if factor is None else round(factor, 4),
                "encode_s": None if encode_s is None else round(encode_s, 4),
            }
        )
        for index, (question, query_ids) in enumerate(zip(sample.questions, sample.query_ids)):
            record = {
                **base,
                "task": question.task,
                "question": index,
                "prompt_tokens": n + len(query_ids),
                "depths": question.depths,
                "references": question.references,
                "prediction": None,
                "score": 0.0,
                "produced": False,
                "stop_reason": None,
                "generated_tokens": 0,
                "answer_s": None,
                "error": error,
            }
            if encoded is not None:
                settings = GenerationSettings.plain(max_tokens=question.max_tokens, stop=tuple(question.stop))
                try:
                    started = time.perf_counter()
                    events = list(engine.answer(encoded, query_ids, index, settings))
                    stats = next(e for e in events if isinstance(e, Stats))
                    record.update(
                        {
                            "prediction": stats.answer,
                            "score": string_match_all(stats.answer, question.references),
                            "produced": bool(stats.answer.strip()),
                            "stop_reason": stats.stop_reason,
                            "generated_tokens": stats.generated_tokens,
                            "answer_s": round(time.perf_counter() - started, 4),
                        }
                    )
                except Exception as exc:  # noqa: BLE001
                    record["error"] = f"{type(exc).__name__}: {exc}"
            records.append(record)
        if any(c.base == config.label for c in configs):
            done[config.label] = (plan, encoded, error, encode_s, raised, [])
        del encoded
        if engine.device.type == "cuda" and error is not None and "OutOfMemory" in error:
            torch.cuda.empty_cache()
    return records


def sample_documents(tokenizer, context_ids: list[int]) -> str:
    """The documents of a sample, decoded back from its context tokens (samples keep no text):
    the context is the chat template's head followed by the documents."""
    from engine.chat import build_prompt, encode

    head = encode(tokenizer, build_prompt(tokenizer, "", "")[0])
    if context_ids[: len(head)] != head:
        raise ValueError("the sample's context does not start with this tokenizer's chat template")
    return tokenizer.decode(context_ids[len(head) :])


def run_map_reduce(engine, sample, config: LongConfig) -> list[dict]:
    """``config``'s records: every question of ``sample`` answered by ``starcli.mapreduce``."""
    from bench.ruler.scoring import string_match_all
    from engine import GenerationSettings, RunSettings
    from engine.settings import Attention
    from starcli.mapreduce import map_reduce

    tokenizer = engine.tokenizer
    documents = sample_documents(tokenizer, sample.context_ids)
    window = engine.model.config.max_position_embeddings
    encode_s = [0.0]

    def answer(prompt, max_tokens):
        generation = GenerationSettings.plain(max_tokens=max_tokens)
        settings = RunSettings(attention=Attention.STAR, generation=generation)
        plan = engine.plan(settings, len(prompt.context_ids), len(prompt.query_ids))
        _sync(engine)
        started = time.perf_counter()
        encoded = yield from engine.encode_context(prompt.context_ids, plan)
        _sync(engine)
        encode_s[0] += time.perf_counter() - started
        yield from engine.answer(encoded, prompt.query_ids, 0, generation)

    records = []
    for index, question in enumerate(sample.questions):
        record = {
            "suite": sample.suite,
            "target_tokens": sample.target_tokens,
            "sample": sample.index,
            "config": config.label,
            "positions": "global",
            "context_tokens": len(sample.context_ids),
            "task": question.task,
            "question": index,
            "prompt_tokens": len(sample.context_ids) + len(sample.query_ids[index]),
            "depths": question.depths,
            "references": question.references,
            "prediction": None,
            "score": 0.0,
            "produced": False,
            "error": None,
        }
        encode_s[0] = 0.0
        started = time.perf_counter()
        try:
            result = map_reduce(
                tokenizer,
                answer,
                documents,
                question.question,
                window=window,
                final_tokens=question.max_tokens,
                answer_prefix=question.answer_prefix,
            )
            record.update(
                {
                    "prediction": result.answer,
                    "score": string_match_all(result.answer, question.references),
                    "produced": bool(result.findings),
                    "parts": len(result.parts),
                    "findings": [f.part for f in result.findings],
                    "part_answers": result.answers,
                    "final_pass": result.final_pass,
                    "encode_s": round(encode_s[0], 4),
                    "answer_s": round(time.perf_counter() - started, 4),
                }
            )
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            record["error"] = f"{type(exc).__name__}: {exc}"
        records.append(record)
    return records


# --- the run ------------------------------------------------------------------------------------
def _save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _suite_counts(values: list[str] | None) -> dict[str, int]:
    if not values:
        return dict(SUITE_SAMPLES)
    counts = {}
    for value in values:
        suite, _, count = value.partition("=")
        counts[suite] = int(count) if count else SUITE_SAMPLES.get(suite, 1)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument(
        "--suites",
        nargs="+",
        default=None,
        metavar="SUITE=N",
        help=f"samples per length (default {SUITE_SAMPLES})",
    )
    parser.add_argument(
        "--configs", nargs="+", default=[c.label for c in CONFIGS], choices=list(CONFIG_BY_LABEL)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--make-samples", type=Path, default=None, help="write the prompts to this file and stop"
    )
    parser.add_argument("--samples", type=Path, nargs="+", default=[], help="prompts made by --make-samples")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes that build prompts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--minutes", type=float, default=None, help="start no new sample after this")
    parser.add_argument("--out", type=Path, default=Path("docs/long-inputs.json"))
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument(
        "--global-up-to", type=int, default=None, help="run the global configuration only up to this length"
    )
    parser.add_argument(
        "--skip-done", type=Path, nargs="+", default=[], help="skip the samples these runs' JSON already hold"
    )
    args = parser.parse_args(argv)
    suites = _suite_counts(args.suites)
    units = sample_units(args.lengths, suites)
    command = "python -m bench.long_inputs " + shlex.join(sys.argv[1:] if argv is None else argv)

    if args.make_samples is not None:
        from engine.models import resolve_model_path

        started = time.perf_counter()
        packed = make_samples(resolve_model_path(None), units, args.seed, args.jobs)
        meta = {"seed": args.seed, "lengths": args.lengths, "suites": suites, "command": command}
        save_samples(args.make_samples, packed, meta)
        print(f"{len(packed)} samples in {time.perf_counter() - started:.0f} s -> {args.make_samples}")
        return

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    from engine import Engine
    from engine.models import load_model

    load_started = time.perf_counter()
    loaded = load_model(None, device=args.device)
    engine = Engine(loaded.model, loaded.tokenizer)
    load_s = time.perf_counter() - load_started
    stored: dict = {}
    for path in args.samples:
        samples_meta, more = load_samples(path)
        if samples_meta["seed"] != args.seed:
            raise SystemExit(f"{path} was made with seed {samples_meta['seed']}, not {args.seed}")
        stored.update(more)
    configs = [CONFIG_BY_LABEL[label] for label in args.configs]
    dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor()
    data = {
        "meta": {
            "command": command,
            "seed": args.seed,
            "model": loaded.name,
            "window": loaded.model.config.max_position_embeddings,
            "device": args.device,
            "device_name": device_name,
            "dtype": dtype,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "lengths": args.lengths,
            "suites": suites,
            "configs": [c.label for c in configs],
            "config_defs": [dataclasses.asdict(c) for c in configs],
            "load_s": round(load_s, 1),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "status": "running",
        },
        "records": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def sample_for(index: int, length: int, suite: str):
        if (index, length, suite) in stored:
            return _unpack(stored[(index, length, suite)])
        from bench.ruler.tasks import make_sample

        return make_sample(suite, loaded.tokenizer, length, args.seed, index)

    if not args.no_warmup:  # kernels compiled, graphs and allocator warmed: not in any timing
        first = min(units, key=lambda unit: (unit[1], unit[0]))  # the shortest length's first sample
        warm_started = time.perf_counter()
        warm = run_sample(engine, sample_for(*first), configs)
        data["meta"]["warmup_s"] = round(time.perf_counter() - warm_started, 1)
        print(f"warm-up on {first}: {data['meta']['warmup_s']} s", flush=True)
        for r in warm:
            print(
                f"  {r['config']:12s} {r['prediction']!r} refs {r['references']} error {r['error']}",
                flush=True,
            )
    started = time.perf_counter()
    status = "complete"
    skip = set()
    for path in args.skip_done:
        skip |= {
            (r["sample"], r["target_tokens"], r["suite"]) for r in json.loads(path.read_text())["records"]
        }
    for index, length, suite in units:
        if (index, length, suite) in skip:
            continue
        minutes = (time.perf_counter() - started) / 60
        if args.minutes is not None and minutes >= args.minutes:
            status = "stopped at the time budget"
            break
        sample = sample_for(index, length, suite)
        unit_started = time.perf_counter()
        here = [
            c
            for c in configs
            if c.label != "global" or args.global_up_to is None or length <= args.global_up_to
        ]
        records = run_sample(engine, sample, here)
        data["records"].extend(records)
        data["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
        _save(args.out, data)
        by_config = {}
        for r in records:
            by_config.setdefault(r["config"], []).append(r["score"])
        scores = " ".join(f"{c}={sum(s):.0f}/{len(s)}" for c, s in by_config.items())
        errors = sum(1 for r in records if r["error"])
        print(
            f"[{minutes:5.1f} min] {length:>6} {suite:6s} #{index} n={len(sample.context_ids)} "
            f"{time.perf_counter() - unit_started:5.1f} s  {scores}"
            + (f"  errors={errors}" if errors else ""),
            flush=True,
        )
    data["meta"]["status"] = status
    data["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    data["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    _save(args.out, data)
    print(
        f"{status}: {len(data['records'])} answers in {data['meta']['elapsed_s'] / 60:.1f} min -> {args.out}"
    )


if __name__ == "__main__":
    main()
