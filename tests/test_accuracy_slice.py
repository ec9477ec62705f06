"""A slice of the accuracy benchmark that CI can afford: Star Attention with four blocks
(block = n/4, anchor = block) must answer at least as many questions as dense attention minus
one, on the real default model.

The slice is RULER's niah_single_2 (one number needle in essay filler) at ~2K tokens, samples
0-3 of seed 0, needles at different depths. It guards the engine (a broken phase 1 or merge
answers none of them); how Star fares on the harder multi-needle tasks is in docs/accuracy.md.
"""

from __future__ import annotations

import torch

from bench.accuracy_run import CONFIGS, DENSE, run_sample
from bench.ruler.tasks import make_sample
from engine import Engine

STAR_N4 = next(c for c in CONFIGS if c.label == "star n/4")


def test_star_n4_answers_as_many_as_dense_minus_one(default_model):
    torch.manual_seed(0)
    engine = Engine(default_model.model, default_model.tokenizer)
    right = {DENSE.label: 0, STAR_N4.label: 0}
    for index in range(4):
        sample = make_sample("single", default_model.tokenizer, 2048, seed=0, index=index)
        assert sample.prompt_tokens <= 2048
        for record in run_sample(engine, sample, (DENSE, STAR_N4)):
            right[record["config"]] += record["score"] == 1.0
    assert right[DENSE.label] >= 2, f"the default model should find most single needles: {right}"
    assert right[STAR_N4.label] >= right[DENSE.label] - 1, right
