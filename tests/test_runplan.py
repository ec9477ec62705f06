"""The run plan is decided once: by ``make_run_plan``, from settings, token counts and ranks; it
travels to the ranks unchanged, and a rank refuses a plan made for another run."""

from __future__ import annotations

import json

import pytest

from engine import Engine, Request
from engine.errors import BadSettingError, ContextTooLongError
from engine.plan import default_block_size
from engine.runplan import check_plan, make_run_plan
from engine.settings import Attention, EngineOptions, GenerationSettings, RunSettings
from tests.helpers import IdTokenizer, settings_of


def test_open_settings_are_decided_in_the_plan():
    plan = make_run_plan(RunSettings(), 20_000, 30, 2, window=32_768)
    assert plan.block_size == default_block_size(20_000, 2)
    assert plan.anchor_size == plan.block_size  # the anchor is as long as a block
    assert plan.max_tokens == 512 and plan.dtype == "float32"
    assert sum(plan.blocks_per_rank()) == plan.blocks == len(plan.layout.blocks)
    short = make_run_plan(RunSettings(), 8_000, 30, 1, window=8_192)
    assert short.max_tokens == 8_192 - 8_030  # a default answer limit fits the room left


@pytest.mark.parametrize("attention", list(Attention))
def test_a_plan_survives_the_trip_to_the_ranks(attention):
    settings = RunSettings(
        attention=attention,
        block_size=100,
        anchor_size=30,
        generation=GenerationSettings(max_tokens=7, temperature=0.5, seed=3, stop=("END",)),
        options=EngineOptions(share_anchor=False, collective_timeout_s=9.0),
    )
    world = 1 if attention == Attention.GLOBAL else 2
    plan = make_run_plan(settings, 450, 12, world)
    request = Request(list(range(450)), [[1] * 12], settings, plan)
    again = Request.from_json(request.to_json())
    assert again.plan == plan and again.settings == settings
    assert json.loads(request.to_json())["plan"]["attention"] == str(attention)


def test_ring_and_global_plans_have_no_anchor():
    ring = make_run_plan(RunSettings(attention=Attention.RING), 40, 3, 2)
    assert ring.anchor_size == 0 and ring.blocks_per_rank() == [2, 2]
    dense = make_run_plan(RunSettings(attention=Attention.GLOBAL), 40, 3, 1)
    assert dense.anchor_size == 0 and dense.blocks == 1 and dense.block_size == 40
    with pytest.raises(BadSettingError, match="one rank"):
        make_run_plan(RunSettings(attention=Attention.GLOBAL), 40, 3, 2)


def test_a_rank_refuses_a_plan_made_for_another_run():
    plan = make_run_plan(RunSettings(generation=GenerationSettings(max_tokens=8)), 100, 5, 2)
    check_plan(plan, 100, 5, 2, window=None)
    with pytest.raises(BadSettingError, match="made for 100 context tokens"):
        check_plan(plan, 101, 5, 2, window=None)
    with pytest.raises(BadSettingError, match="made for 2 ranks"):
        check_plan(plan, 100, 5, 3, window=None)
    with pytest.raises(ContextTooLongError):
        check_plan(plan, 100, 5, 2, window=110)


def test_stats_take_the_mode_and_anchor_from_the_plan(tiny_llama):
    engine = Engine(tiny_llama, IdTokenizer())
    for mode, anchor in (("ring", 0), ("global", 0), ("star", 64)):
        events = list(engine.run(Request(list(range(1, 41)), [[5, 6]], settings_of(mode, 2, block_size=64))))
        stats = events[-1]
        assert (stats.mode, stats.anchor_size) == (mode, anchor)  # one block: the anchor is still 64
