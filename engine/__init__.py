"""starcli's engine: Star Attention over transformers models, runnable without the CLI."""

from engine.api import EncodedContext, Engine, Request
from engine.errors import (
    BadSettingError,
    ContextTooLongError,
    EmptyInputError,
    EngineError,
    ModelLoadError,
    RankFailure,
)
from engine.events import ContextEncoded, Event, Failure, Progress, QueryStarted, Stats, Token
from engine.generate import GenerationSettings
from engine.plan import BlockPlan, plan_blocks

__all__ = [
    "BadSettingError",
    "BlockPlan",
    "ContextEncoded",
    "ContextTooLongError",
    "EmptyInputError",
    "EncodedContext",
    "Engine",
    "EngineError",
    "Event",
    "Failure",
    "GenerationSettings",
    "ModelLoadError",
    "Progress",
    "QueryStarted",
    "RankFailure",
    "Request",
    "Stats",
    "Token",
    "plan_blocks",
]
