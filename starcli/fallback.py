"""Run ``starcli.mapreduce`` for the CLI: one model load in this process, every part and the final
pass through the engine with a plan of its own (each fits the window: global positions), the
stages on stderr, the final answer streamed like any other.

Parts run one after another on one rank: a part is at most one window long, which one rank
encodes in the time a multi-rank job takes to start.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from engine.events import Event, Stats
from starcli.interrupts import held_signals
from starcli.mapreduce import MapReduceResult, map_reduce
from starcli.prompt import Prompt
from starcli.render import Renderer


def load_engine(renderer: Renderer, settings, device: str):
    """The model, loaded once in this process for every part and question."""
    from starcli.launch import LaunchError

    with held_signals():  # the engine's imports and the weights: Ctrl-C acts once they are in
        from engine.api import Engine
        from engine.models import load_model
        from engine.runplan import default_dtype

        renderer.stage("Loading weights")
        started = time.perf_counter()
        try:
            loaded = load_model(settings.model, device, default_dtype(device))
        except Exception as exc:  # noqa: BLE001 - ModelLoadError and friends: one line, exit 1
            raise LaunchError(str(exc)) from exc
        load_s = time.perf_counter() - started
    return Engine(loaded.model, loaded.tokenizer, load_s=load_s)


def run_map_reduce(
    renderer: Renderer,
    engine,
    settings,
    command: str,
    device: str,
    tokenizer,
    documents_text: str,
    question: str,
    user_question: str | None,
    window: int,
    cost,
) -> tuple[Stats, MapReduceResult]:
    """Answer by map-reduce; returns the answer's ``Stats`` (a not-found answer gets one made
    here, with ``stop_reason`` ``not_found``) and what every part answered."""
    from engine.request import Request
    from engine.runplan import make_run_plan

    load_s = engine.load_s
    base = settings.run_settings(command)

    def answer(prompt: Prompt, max_tokens: int) -> Iterator[Event]:
        generation = dataclasses.replace(base.generation, max_tokens=max_tokens)
        run = dataclasses.replace(base, generation=generation, positions=None)
        plan = make_run_plan(run, len(prompt.context_ids), len(prompt.query_ids), 1, device, window, cost)
        yield from engine.run(Request(prompt.context_ids, [prompt.query_ids], run, plan))

    def on_part(index: int, total: int) -> None:
        """One stage for every part, its bar and time left counting parts done."""
        if index == 0:
            renderer.stage(f"Map-reduce over {total} parts", total=total)
        renderer.update_stage(f"Map-reduce: reading part {index + 1} of {total}", done=index, total=total)

    def on_final(event: Event) -> None:
        if event.kind in ("token", "query_started", "stats"):
            renderer.handle(event)

    result = map_reduce(
        tokenizer,
        answer,
        documents_text,
        user_question or question,
        window=window,
        final_tokens=base.generation.max_tokens or base.generation.default_max_tokens,
        summarize=user_question is None,
        system=settings.system,
        on_part=on_part,
        on_final=on_final,
    )
    if result.final_pass:  # streamed through on_final
        return result.stats, result
    renderer.print_text("" if renderer.json_output else result.answer.strip() + "\n")
    if result.stats is not None:
        return result.stats, result
    stats = Stats(
        query=0,
        answer=result.answer,
        mode=str(base.attention),
        world_size=1,
        block_size=0,
        anchor_size=0,
        context_tokens=0,
        query_tokens=0,
        generated_tokens=0,
        stop_reason="not_found",
        load_s=load_s,
        context_encoding_s=0.0,
        ttft_s=0.0,
        decode_s=0.0,
        decode_tokens_per_s=0.0,
    )
    return stats, result


def fallback_json(result: MapReduceResult | None) -> dict[str, Any]:
    """The ``--json`` keys that say whether a fallback ran (issue 13) and what its parts found."""
    if result is None:
        return {"fallback": None}
    return {"fallback": "map-reduce", **result.to_json()}
