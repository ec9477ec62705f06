"""The systems compared: starcli in-process (as ``starcli.cli`` runs one rank) and plain
transformers ``generate`` on the same prompt tokens.

starcli's settings are the built-in defaults of the moment (``starcli.config.resolve`` with no
config file and no environment, ``Settings.run_settings(command)``), so the benchmark follows
whatever the CLI does today; a ``--variant`` changes named fields of ``Settings`` or of
``GenerationSettings`` on top of them. Items over the same documents have the same context
tokens (the question is in the query), so a starcli system encodes a context once and answers
each of its items over that encoding (``Engine.encode_context``/``Engine.answer``: the same tokens
as one ``Engine.run`` per question, phase 1's cache being query-independent); each item is
charged the encoding's time, as a CLI run would be. ``--no-reuse`` runs ``Engine.run`` per item.
``generate`` runs with the SmolLM2 model card's settings (``do_sample=True, temperature=0.2,
top_p=0.9``; the converted model's generation_config.json sets none) and greedy, each with the
same answer limit starcli's plan gives the prompt.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from bench.quality.dataset import Item, inside
from engine.settings import GenerationSettings
from starcli.config import Settings, resolve

MODEL_CARD = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}  # HuggingFaceTB/SmolLM2-135M-Instruct
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass
class Outcome:
    answer: str
    stop_reason: str
    generated_tokens: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """An item's prompt as the CLI builds it, and the plan facts every system needs."""

    command: str
    context_ids: list[int]
    query_ids: list[int]
    instructions: str
    skipped: list[str]


def prepare(item: Item, tokenizer, work) -> Prepared:
    """Ingest the item's sources and build its prompt exactly as ``starcli.cli._execute`` does."""
    from starcli import ingest
    from starcli.prompt import ask_instructions, build, summary_instructions

    defaults = starcli_defaults()
    with inside(work):
        ingested = ingest.ingest(list(item.sources))
        sources = list(item.sources)
        instructions = (
            ask_instructions(item.question) if item.command == "ask" else summary_instructions(sources)
        )
    prompt = build(tokenizer, ingest.render_documents(ingested.documents), instructions, defaults.system)
    skipped = [f"{s.path}: {s.reason}" for s in ingested.skipped]
    return Prepared(item.command, prompt.context_ids, prompt.query_ids, instructions, skipped)


def starcli_defaults() -> Settings:
    """The CLI's settings with no flags, no config file and no STARCLI_* variables."""
    return resolve({}, {}, {})


@dataclass
class StarcliSystem:
    """starcli's engine with the default settings, ``settings`` and ``generation`` changed."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)  # Settings fields
    generation: dict[str, Any] = field(default_factory=dict)  # GenerationSettings fields
    kind: str = "starcli"
    reuse: bool = True  # encode a context once for the items that share it
    _encoded: tuple[list[int], Any, float] | None = field(default=None, repr=False)

    def run_settings(self, seed: int, command: str = "ask"):
        base = starcli_defaults()
        if base.seed is None and "seed" not in self.settings:
            base = dataclasses.replace(base, seed=seed)  # matters only when sampling
        run = dataclasses.replace(base, **self.settings).run_settings(command)
        return dataclasses.replace(run, generation=dataclasses.replace(run.generation, **self.generation))

    def plan(self, prepared: Prepared, seed: int, window, cost):
        from engine.runplan import make_run_plan

        settings = self.run_settings(seed, prepared.command)
        n, m = len(prepared.context_ids), len(prepared.query_ids)
        return settings, make_run_plan(settings, n, m, 1, "cpu", window, cost)

    def run(self, engine, prepared: Prepared, seed: int, window, cost) -> Outcome:
        from engine.api import Request
        from engine.events import Stats

        settings, plan = self.plan(prepared, seed, window, cost)
        started = time.perf_counter()
        if not self.reuse:
            request = Request(prepared.context_ids, [prepared.query_ids], settings, plan)
            stats = next(e for e in engine.run(request) if isinstance(e, Stats))
            seconds = time.perf_counter() - started
            encoding_s, reused, wall_s = stats.context_encoding_s, False, seconds
        else:
            encoded, encoding_s, reused = self._encode(engine, prepared, plan)
            started = time.perf_counter()
            answer = engine.answer(encoded, prepared.query_ids, 0, plan.generation)
            stats = next(e for e in answer if isinstance(e, Stats))
            answer_s = time.perf_counter() - started
            seconds = answer_s + encoding_s  # what one CLI run would spend
            wall_s = answer_s + (0.0 if reused else encoding_s)
        extra = {
            "blocks": plan.blocks,
            "block_size": plan.block_size,
            "max_tokens": plan.max_tokens,
            "context_encoding_s": round(encoding_s, 2),
            "context_reused": reused,
            "wall_s": round(wall_s, 2),
        }
        return Outcome(stats.answer, stats.stop_reason, stats.generated_tokens, seconds, extra)

    def _encode(self, engine, prepared: Prepared, plan):
        """The encoded context for this prompt: the last one when the tokens and layout match."""
        from engine.runplan import check_plan

        check_plan(plan, len(prepared.context_ids), len(prepared.query_ids), 1, window_of(engine))
        last = self._encoded
        if last is not None and last[0] == prepared.context_ids and _same_layout(last[1].plan, plan):
            return last[1], last[2], True
        self._encoded = None  # free the old cache before the new one is made
        started = time.perf_counter()
        gen = engine.encode_context(prepared.context_ids, plan)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                encoded = done.value
                break
        seconds = time.perf_counter() - started
        self._encoded = (prepared.context_ids, encoded, seconds)
        return encoded, seconds, False

    def describe(self, seed: int) -> dict[str, Any]:
        settings = self.run_settings(seed)
        return {
            "kind": self.kind,
            "attention": str(settings.attention),
            "block_size": settings.block_size,
            "anchor_size": settings.anchor_size,
            "generation (ask)": dataclasses.asdict(settings.generation),
            "changed": {**self.settings, **self.generation},
            "context_reuse": self.reuse,
        }


def window_of(engine) -> int | None:
    return getattr(engine.model.config, "max_position_embeddings", None)


def _same_layout(a, b) -> bool:
    """Plans that encode a context the same way: equal but for the query's length and the answer's
    settings (phase 1 reads neither)."""
    return dataclasses.replace(a, query_tokens=b.query_tokens, generation=b.generation) == b


@dataclass(frozen=True)
class GenerateSystem:
    """Plain ``model.generate`` on starcli's prompt tokens, up to the same answer limit."""

    name: str
    sampling: dict[str, Any]
    kind: str = "generate"

    def run(self, model, tokenizer, prepared: Prepared, max_new_tokens: int, seed: int) -> Outcome:
        import torch

        ids = torch.tensor([prepared.context_ids + prepared.query_ids])
        eos = model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                pad_token_id=model.generation_config.pad_token_id,
                **self.sampling,
            )
        seconds = time.perf_counter() - started
        new = out[0, ids.shape[1] :].tolist()
        stop = "eos" if new and new[-1] in eos_ids else "max_tokens"
        tokens = [t for t in new if t not in eos_ids]
        answer = tokenizer.decode(tokens, skip_special_tokens=True)
        return Outcome(answer, stop, len(tokens), seconds)

    def describe(self, seed: int) -> dict[str, Any]:
        return {"kind": self.kind, "sampling": self.sampling, "seed": seed}


def built_in(name: str):
    """A fresh built-in system (starcli systems hold their last encoded context)."""
    return {
        "star": lambda: StarcliSystem("star", {"attention": "star"}),
        "global": lambda: StarcliSystem("global", {"attention": "global"}),
        "generate": lambda: GenerateSystem("generate", MODEL_CARD),
        "greedy": lambda: GenerateSystem("greedy", {"do_sample": False}),
    }[name]()


BUILT_IN = ("star", "global", "generate", "greedy")


def parse_variant(text: str) -> StarcliSystem:
    """``name:field=value,...`` → a starcli system; fields of ``Settings`` or ``GenerationSettings``
    (``attention=global``, ``block_size=1024``, ``repetition_penalty=1.1``, ``no_repeat_ngram=0``)."""
    name, _, assignments = text.partition(":")
    if not name or not assignments:
        raise ValueError(f"variant {text!r}: write name:field=value[,field=value]")
    settings_fields = {f.name: f for f in dataclasses.fields(Settings)}
    generation_fields = {f.name: f for f in dataclasses.fields(GenerationSettings)}
    settings: dict[str, Any] = {}
    generation: dict[str, Any] = {}
    for assignment in assignments.split(","):
        key, _, value = assignment.partition("=")
        key = key.strip().replace("-", "_")
        if key in settings_fields:  # first: Settings.run_settings carries it into the generation
            settings[key] = _typed(value.strip(), _default(settings_fields[key]), key)
        elif key in generation_fields:
            generation[key] = _typed(value.strip(), _default(generation_fields[key]), key)
        else:
            known = sorted(set(settings_fields) | set(generation_fields))
            raise ValueError(f"variant {name}: unknown field {key!r} (known: {', '.join(known)})")
    return StarcliSystem(name, settings, generation)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _typed(text: str, default: Any, key: str) -> Any:
    """``text`` as the type of the field's default (a ``None`` default: int, float, else text)."""
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{key} must be true or false (got {text!r})")
        return text.lower() in _TRUE
    if default is None:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return None if text.lower() == "none" else text
    return type(default)(text)
