"""The benchmarks of the delta correction (issue 15): the speed bench's extra-work count and its
ratio to plain Star, the communication formula against the bytes the engine's exchange really
sends over gloo, the report's sign test, and ``bench.accuracy --jobs`` against one process."""

from __future__ import annotations

import json
import math

import pytest

from bench.delta_comm import formula_bytes, measure
from bench.delta_report import sign_test
from bench.speed import compare_to_plain, delta_pairs
from engine.plan import plan_blocks


def test_delta_pairs_count_every_exact_row_over_the_context_before_its_block():
    plan = plan_blocks(1000, 250, None, 1)  # blocks at 0, 250, 500, 750
    assert delta_pairs(plan, 64, (0, 1000)) == 4 * (250 + 500 + 750)  # ceil(250 / 64) rows a block
    assert delta_pairs(plan, 1, (0, 1000)) == 250 * (250 + 500 + 750)
    n, stride = 131072, 64
    big = plan_blocks(n, 16384, None, 1)
    assert delta_pairs(big, stride, (0, n)) == pytest.approx(n * n / (2 * stride) * (1 - 16384 / n))


def test_delta_pairs_split_over_ranks_by_the_keys_each_holds():
    plan = plan_blocks(1000, 250, None, 2)
    spans = [plan.rank_span(r) for r in range(2)]
    assert sum(delta_pairs(plan, 16, span) for span in spans) == delta_pairs(plan, 16, (0, 1000))


def test_phase1_ratio_is_best_over_best_at_the_same_shape():
    def run(stride, seconds, block=16384):
        shape = {"mode": "star", "context": 8, "block": block, "gpus": 1}
        return {**shape, "delta_stride": stride, "phase1_s": seconds}

    runs = [run(0, 5.0), run(0, 4.0), run(64, 4.6), run(64, 4.4), run(64, 9.0, block=32768)]
    compare_to_plain(runs)
    assert runs[2]["phase1_vs_plain"] == pytest.approx(4.4 / 4.0)
    assert runs[3]["phase1_vs_plain"] == pytest.approx(4.4 / 4.0)
    assert "phase1_vs_plain" not in runs[0] and "phase1_vs_plain" not in runs[4]  # no plain run there


@pytest.mark.parametrize("world", [2, 3])
def test_communication_formula_is_what_the_exchange_sends(world):
    """engine.delta_ranks.exchange over real gloo ranks: the bytes each rank receives per layer
    are the formula's, with and without keys to attend."""
    settings = dict(context=700, block=100, stride=16, heads=4, kv_heads=2, head_dim=8, dtype="float32")
    settings.update(layers=1, compute_layers=1, threads=1)
    run = measure(world, settings)
    plan = plan_blocks(700, 100, None, world)
    expected = formula_bytes(plan, 16, 4, 8, 4)
    assert expected["sampled_rows"] == 6 * math.ceil(100 / 16)
    for rank in run["per_rank"]:
        assert rank["bytes_per_layer"] == expected["total"]
        assert rank["all_gathers_per_layer"] == 5  # 2 row counts, queries, cutoffs, partials


def test_sign_test_is_the_exact_binomial_two_sided_p():
    assert sign_test(0, 8) == pytest.approx(2 / 256)
    assert sign_test(3, 3) == 1.0
    assert sign_test(1, 4) == pytest.approx(2 * 6 / 32)
    assert sign_test(0, 0) == 1.0


def test_accuracy_jobs_merge_the_same_records_as_one_process(tmp_path):
    from bench.accuracy import main

    common = ["--lengths", "512", "--samples", "2", "--suites", "single", "--configs", "star n/4 delta 16"]
    main([*common, "--out", str(tmp_path / "one.json")])
    main([*common, "--jobs", "2", "--out", str(tmp_path / "two.json")])
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))

    def answers(data):
        return sorted((r["sample"], r["question"], r["config"], r["prediction"]) for r in data["records"])

    assert len(one["records"]) == 2 and answers(one) == answers(two)
    assert two["meta"]["jobs"] == 2 and two["meta"]["status"] == "complete"
