"""The attention modes, siblings of one shape (ring-flash-attention's lesson):

- ``encode_context(runner, context, plan)``: phase 1, a generator of events that returns an
  ``EncodedContext``;
- ``start_query(runner, encoded, capacity)``: the cache a query and its answer extend;
- ``continue_query(runner, encoded, capacity)``: the same with a conversation's earlier turns kept;
- ``decode_step(runner, cache, position, eager)``: the per-token step (``eager`` or a faster one).

``for_plan`` picks the module once, from the run plan.
"""

from __future__ import annotations

from types import ModuleType

from engine.modes import dense, ring, star
from engine.runplan import RunPlan
from engine.settings import Attention

MODES: dict[Attention, ModuleType] = {Attention.STAR: star, Attention.GLOBAL: dense, Attention.RING: ring}


def for_plan(plan: RunPlan) -> ModuleType:
    return MODES[plan.attention]
