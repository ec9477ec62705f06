"""starcli's engine: Star Attention over transformers models, runnable without the CLI.

The names below load on first use (PEP 562), so ``engine.errors``, ``engine.settings`` and
``engine.runplan`` (no torch) cost nothing to the CLI's ``--help`` and usage errors.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Engine": "engine.api",
    "Request": "engine.api",
    "EncodedContext": "engine.runner",
    "Attention": "engine.settings",
    "EngineOptions": "engine.settings",
    "GenerationSettings": "engine.settings",
    "Positions": "engine.settings",
    "RunSettings": "engine.settings",
    "RunPlan": "engine.runplan",
    "make_run_plan": "engine.runplan",
    "BlockPlan": "engine.plan",
    "plan_blocks": "engine.plan",
    "StarcliError": "engine.errors",
    "EngineError": "engine.errors",
    "BadSettingError": "engine.errors",
    "ContextTooLongError": "engine.errors",
    "BeyondLocalPositionsError": "engine.errors",
    "EmptyInputError": "engine.errors",
    "ModelLoadError": "engine.errors",
    "RankError": "engine.errors",
    "OutOfMemoryError": "engine.errors",
    "UnsupportedModelError": "engine.errors",
    "check_model_supported": "engine.support",
    "Event": "engine.events",
    "ContextEncoded": "engine.events",
    "Failure": "engine.events",
    "Loaded": "engine.events",
    "Started": "engine.events",
    "Progress": "engine.events",
    "QueryStarted": "engine.events",
    "Stats": "engine.events",
    "Token": "engine.events",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
