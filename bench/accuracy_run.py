"""Run one sample through the engine in every attention configuration and score the answers.

Each configuration encodes the sample's context once (phase 1, or a dense prefill for the
baseline) and answers every question of the sample over that one encoding, each with its own
token limit and stop strings, through the engine's public ``encode_context``/``answer``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass

from bench.ruler.scoring import string_match_all
from bench.ruler.tasks import Sample
from engine import Engine, GenerationSettings, RunSettings, Stats


@dataclass(frozen=True)
class Config:
    """An attention configuration; block and anchor are fractions ``n / block_div`` of the context."""

    label: str
    mode: str
    block_div: int | None = None
    anchor_div: int | None = None  # None: anchor = block
    delta_stride: int | None = None  # the delta correction's stride (issue 15); None: plain Star
    kv_dtype: str = "model"  # fp8: the context's KV stored in e4m3 (issue 16); never auto (fp8 on CUDA)

    def sizes(self, n: int) -> tuple[int, int | None]:
        if self.block_div is None:
            return n, None
        block = math.ceil(n / self.block_div)
        return block, None if self.anchor_div is None else math.ceil(n / self.anchor_div)


DENSE = Config("dense", "global")
CONFIGS = (
    DENSE,
    Config("star n/8", "star", 8),
    Config("star n/4", "star", 4),
    Config("star n/2", "star", 2),
    Config("star n/4 a=n/16", "star", 4, 16),
)
# Star with the delta correction of phase 1 (issue 15; --configs picks them, not by default).
CORRECTED = tuple(
    Config(f"star n/{div} delta {stride}", "star", div, delta_stride=stride)
    for div in (8, 4)
    for stride in (16, 64, 256)
)
# The fp8 KV cache (issue 16): n/1 is dense attention with only the stored KV quantized, so
# "dense" vs "star n/1 fp8" is the cost of fp8 alone; n/4 shows it on top of Star's phase 1.
FP8 = (
    Config("star n/1 fp8", "star", 1, kv_dtype="fp8"),
    Config("star n/4 fp8", "star", 4, kv_dtype="fp8"),
)
ALL_CONFIGS = CONFIGS + CORRECTED + FP8


def drain(gen: Generator):
    """Run an engine generator to its end and return its return value (events are not needed)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def run_sample(engine: Engine, sample: Sample, configs=CONFIGS) -> list[dict]:
    """One record per (configuration, question): the prediction, its score and timings."""
    records = []
    n = len(sample.context_ids)
    for config in configs:
        block, anchor = config.sizes(n)
        longest = max(question.max_tokens for question in sample.questions)
        settings = RunSettings(
            attention=config.mode,
            block_size=block if config.mode == "star" else None,
            anchor_size=anchor if config.mode == "star" else None,
            generation=GenerationSettings.plain(max_tokens=longest),
            **({"correction": "delta", "delta_stride": config.delta_stride} if config.delta_stride else {}),
            kv_dtype=config.kv_dtype,
        )
        plan = engine.plan(settings, n, max(len(q) for q in sample.query_ids))
        started = time.perf_counter()
        encoded = drain(engine.encode_context(sample.context_ids, plan))
        encode_s = time.perf_counter() - started
        for index, (question, query_ids) in enumerate(zip(sample.questions, sample.query_ids)):
            settings = GenerationSettings.plain(max_tokens=question.max_tokens, stop=tuple(question.stop))
            started = time.perf_counter()
            events = list(engine.answer(encoded, query_ids, index, settings))
            stats = next(e for e in events if isinstance(e, Stats))
            records.append(
                {
                    "suite": sample.suite,
                    "task": question.task,
                    "target_tokens": sample.target_tokens,
                    "sample": sample.index,
                    "question": index,
                    "config": config.label,
                    "mode": config.mode,
                    "block_size": plan.block_size,
                    "anchor_size": plan.layout.anchor,
                    "delta_stride": plan.delta_stride,
                    "context_tokens": n,
                    "prompt_tokens": n + len(query_ids),
                    "depths": question.depths,
                    "prediction": stats.answer,
                    "references": question.references,
                    "score": string_match_all(stats.answer, question.references),
                    "encode_s": round(encode_s, 3),
                    "answer_s": round(time.perf_counter() - started, 3),
                }
            )
    return records
