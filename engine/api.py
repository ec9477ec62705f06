"""The engine's Python API: a model, a context, one or more queries in; events out.

Every rank runs the same ``Engine.run`` (SPMD); only the query host yields tokens and stats,
every rank yields its own phase-1 progress. What the run computes is the request's ``RunPlan``
(built by the caller with ``engine.runplan.make_run_plan``, or here from the request's settings);
the mode module it names does the work (``engine.modes``).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import replace

import torch

from engine import attention, modes
from engine.chat import encode
from engine.comm import Comm
from engine.context_store import StoreSpec
from engine.errors import BadSettingError, ContextTooLongError, EmptyInputError
from engine.events import ContextEncoded, Event, QueryStarted, Stats
from engine.generate import DecodeResult, decode_loop
from engine.plan import CostModel
from engine.request import Request
from engine.runner import EncodedContext, ModelRunner
from engine.runplan import RunPlan, check_plan, make_run_plan
from engine.settings import GenerationSettings, RunSettings
from engine.support import check_model_supported


def position_limit(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


class Engine:
    """Star Attention (and the dense and ring baselines) over a transformers causal LM."""

    def __init__(self, model, tokenizer, comm: Comm | None = None, load_s: float = 0.0):
        check_model_supported(model.config)  # the CLI asks before loading; API callers here
        attention.register()
        self.model = model
        self.tokenizer = tokenizer
        self.comm = comm or Comm()
        self.load_s = load_s
        self.device = next(model.parameters()).device
        self.eos_ids = _eos_ids(model, tokenizer)
        self._runner: ModelRunner | None = None
        self.encoded: EncodedContext | None = None  # the latest run's context (``answer`` follow-ups)

    # --- public ---------------------------------------------------------------------------
    def run(self, request: Request) -> Generator[Event, None, EncodedContext]:
        """Check (or make) the plan, encode the context once (or load it), answer every query;
        yields events and returns the encoded context (follow-ups: ``answer``)."""
        context = self._ids(request.context, "context")
        if not request.queries:
            raise EmptyInputError("no query given: ask at least one question")
        queries = [self._ids(q, "query") for q in request.queries]
        longest = max(len(q) for q in queries)
        plan = request.plan or self.plan(request.settings, len(context), longest)
        check_plan(plan, len(context), longest, self.comm.world_size, position_limit(self.model))
        encoded = yield from self.encode_or_load(context, plan, request.saved)
        self.encoded = encoded  # for follow-ups, even before this generator has run to its end
        for index, q in enumerate(queries):
            yield from self.answer(encoded, q, index)
        return encoded

    def plan(self, settings: RunSettings, context_tokens: int, query_tokens: int) -> RunPlan:
        """The plan this engine would follow for ``settings`` (its world size, device, window)."""
        return make_run_plan(
            settings,
            context_tokens,
            query_tokens,
            self.comm.world_size,
            device=self.device.type,
            window=position_limit(self.model),
            cost=CostModel.for_config(self.model.config),
            dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
        )

    def encode_context(self, context: list[int], plan: RunPlan) -> Iterator[Event]:
        """Phase 1 as the plan's mode does it; returns an ``EncodedContext``."""
        runner = self.runner(plan)
        with torch.inference_mode():
            return (yield from modes.for_plan(plan).encode_context(runner, context, plan))

    def encode_or_load(
        self, context: list[int], plan: RunPlan, saved: StoreSpec | None
    ) -> Generator[Event, None, EncodedContext]:
        """Phase 1, or its result loaded from a saved context when every rank has a good file for
        exactly this run; after encoding, each rank saves its part (``engine.saved_context``)."""
        if saved is None or saved.max_bytes <= 0:
            return (yield from self.encode_context(context, plan))
        from engine.saved_context import HIT, MISS, SavedContexts

        store = SavedContexts(saved, self.runner(plan), plan, context)
        with torch.inference_mode():
            cache, seconds = store.load()
        if self.comm.all_true(cache is not None):
            store.used()
            per_rank = self.comm.gather_floats(seconds)
            if self.comm.is_host:
                blocks = plan.blocks_per_rank()
                yield ContextEncoded(plan.context_tokens, plan.blocks, blocks, max(per_rank), HIT)
            return EncodedContext(plan.context_tokens, plan, cache, max(per_rank), per_rank, HIT)
        del cache
        encoding = self.encode_context(context, plan)
        while True:
            try:
                event = next(encoding)
            except StopIteration as done:
                encoded = done.value
                break
            yield replace(event, context_cache=MISS) if isinstance(event, ContextEncoded) else event
        started = time.perf_counter()
        store.save(encoded)
        encoded.context_cache, encoded.save_s = MISS, time.perf_counter() - started
        return encoded

    def answer(
        self,
        encoded: EncodedContext,
        query: list[int],
        index: int = 0,
        generation: GenerationSettings | None = None,
        follow_up: bool = False,
    ) -> Iterator[Event]:
        """Phase 2 and decoding for one query over an encoded context, as its plan says (or with
        this query's own ``generation``, its ``max_tokens`` set: benchmarks ask each question
        with its own answer length and stop strings). ``follow_up``: the query continues the
        conversation of the earlier answers (they stay in the query host's tail, and the last
        answer's unfed token goes first); otherwise it starts afresh after the context."""
        plan = encoded.plan
        generation = generation or plan.generation
        if generation.max_tokens is None:
            raise BadSettingError("a query's own generation settings must set max_tokens")
        mode = modes.for_plan(plan)
        runner = self.runner(plan)
        follow_up = follow_up and encoded.tail_tokens + len(encoded.pending) > 0
        if follow_up:
            query = encoded.pending + list(query)
        n, m = encoded.tokens, len(query)
        start = plan.context_span + (encoded.tail_tokens if follow_up else 0)
        if follow_up:
            self.check_room(start + m + generation.max_tokens)
        if self.comm.is_host:
            yield QueryStarted(query=index, query_tokens=m)
        started = time.perf_counter()
        sink: list[DecodeResult] = []
        capture_s, fallback = 0.0, "no graph in this mode"
        with torch.inference_mode():
            if follow_up:
                cache = mode.continue_query(runner, encoded, m + generation.max_tokens)
            else:
                cache = mode.start_query(runner, encoded, m + generation.max_tokens)
            position = start + m
            logits = runner.forward(query, start, cache)

            def eager(token: int) -> torch.Tensor:
                nonlocal position
                out = runner.forward([token], position, cache)
                position += 1
                return out

            step = mode.decode_step(runner, cache, position, eager)
            try:
                yield from decode_loop(
                    logits,
                    step,
                    self.comm,
                    generation,
                    self.tokenizer,
                    self.eos_ids,
                    index,
                    started,
                    sink,
                )
            finally:
                if hasattr(step, "close"):
                    step.close()
                    capture_s, fallback = step.capture_s, step.fallback_reason
        result = sink[0]
        encoded.pending = result.pending  # an unfed last token (or EOS) goes first in a follow-up
        encoded.tail_tokens = start - plan.context_span + m + result.fed
        if self.comm.is_host:
            rate = (result.tokens - 1) / result.decode_s if result.tokens > 1 and result.decode_s > 0 else 0.0
            yield Stats(
                query=index,
                answer=result.text,
                mode=str(plan.attention),
                world_size=self.comm.world_size,
                block_size=plan.block_size,
                anchor_size=plan.anchor_size,
                context_tokens=n,
                query_tokens=m,
                generated_tokens=result.tokens,
                stop_reason=result.stop_reason,
                load_s=self.load_s,
                context_encoding_s=encoded.seconds,
                ttft_s=result.ttft_s,
                decode_s=result.decode_s,
                decode_tokens_per_s=rate,
                blocks_per_rank=plan.blocks_per_rank(),
                positions=str(plan.positions),
                graph_capture_s=capture_s,
                graph_fallback=fallback,
                context_cache=encoded.context_cache,
                context_save_s=encoded.save_s,
                tail_tokens=encoded.tail_tokens + len(encoded.pending),
            )

    def check_room(self, positions: int) -> None:
        """A query (with its answer) must end within the model's window: a conversation that has
        filled it stops here, before any rank runs a step."""
        window = position_limit(self.model)
        if window is not None and positions > window:
            raise ContextTooLongError(
                positions,
                window,
                0,
                0,
                0,
                message=f"the conversation needs {positions:,} positions, beyond the model's window "
                f"of {window:,}; start a new conversation or lower --max-tokens",
            )

    def runner(self, plan: RunPlan) -> ModelRunner:
        """The model under the plan's engine options (made once per set of options)."""
        if self._runner is None or self._runner.options != plan.options:
            self._runner = ModelRunner(self.model, self.comm, plan.options)
        return self._runner

    # --- helpers --------------------------------------------------------------------------
    def _ids(self, value: str | list[int], what: str) -> list[int]:
        ids = encode(self.tokenizer, value) if isinstance(value, str) else list(value)
        if not ids:
            raise EmptyInputError(f"the {what} is empty: give it at least one token of text")
        return ids


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids
