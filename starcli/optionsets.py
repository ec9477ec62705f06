"""The options commands share, declared once as ordered sets.

A command names the set it takes (``@takes(RUN)``) and receives the values as ``**options``;
Typer reads a command's parameters from its signature, so ``takes`` appends the set's to it.
A new run option is its ``Annotated`` type in ``starcli.config`` plus one ``Shared`` line in a set
here, and ask, summarize and chat all have it. A set's order is the order ``--help`` lists the
options in, panel by panel.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starcli import config as opt

Command = TypeVar("Command", bound=Callable[..., Any])


@dataclass(frozen=True)
class Shared:
    """One option a command may take: its parameter name, ``Annotated`` type and default."""

    name: str
    annotation: Any
    default: Any = None

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default, annotation=self.annotation
        )


ENGINE = (
    Shared("model", opt.Model),
    Shared("attention", opt.Attention),
    Shared("positions", opt.PositionsOption),
    Shared("fallback", opt.FallbackOption),
    Shared("block_size", opt.BlockSize),
    Shared("anchor_size", opt.AnchorSize),
    Shared("correction", opt.CorrectionOption),
    Shared("delta_stride", opt.DeltaStride),
    Shared("kv_dtype", opt.KVDtypeOption),
    Shared("nproc", opt.Nproc),
    Shared("nnodes", opt.Nnodes),
    Shared("rdzv_endpoint", opt.RdzvEndpoint),
    Shared("rdzv_id", opt.RdzvId),
    Shared("device", opt.Device),
)
ANSWER = (
    Shared("max_tokens", opt.MaxTokens),
    Shared("temperature", opt.Temperature),
    Shared("seed", opt.Seed),
    Shared("repetition_penalty", opt.RepetitionPenalty),
    Shared("no_repeat_ngram", opt.NoRepeatNgram),
    Shared("loop_stop", opt.LoopStop),
    Shared("system", opt.System),
)
OUTPUT = (
    Shared("context_cache", opt.ContextCache),
    Shared("json", opt.Json, False),
    Shared("quiet", opt.Quiet, False),
    Shared("verbose", opt.Verbose, False),
    Shared("dry_run", opt.DryRun, False),
    Shared("fold_below", opt.FoldBelow),
)
INPUT = (
    Shared("include", opt.Include),
    Shared("exclude", opt.Exclude),
    Shared("no_gitignore", opt.NoGitignore, False),
    Shared("skip_unreadable", opt.SkipUnreadable, False),
    Shared("redact_secrets", opt.RedactSecrets, False),
)


def without(options: tuple[Shared, ...], *names: str) -> tuple[Shared, ...]:
    """``options`` less those ``names`` (each must be one of them: a typo fails at import)."""
    unknown = set(names) - {o.name for o in options}
    if unknown:
        raise ValueError(f"not in the set: {sorted(unknown)}")
    return tuple(o for o in options if o.name not in names)


RUN = ENGINE + ANSWER + OUTPUT + INPUT  # ask and summarize
# A conversation on one machine, read on a terminal: no map-reduce fallback, no several nodes,
# no JSON and no dry run (the questions are not known up front).
CHAT = without(RUN, "fallback", "nnodes", "rdzv_endpoint", "rdzv_id", "json", "dry_run", "fold_below")
CONTEXT = without(OUTPUT, "context_cache", "json", "dry_run", "fold_below") + INPUT  # reads, runs nothing


def takes(options: tuple[Shared, ...]) -> Callable[[Command], Command]:
    """Append ``options`` to ``command``'s signature, after its own parameters (arguments and
    the options only it has); the command ends in ``**options`` and gets their values there."""

    def add(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        if len(own) == len(signature.parameters) or {p.name for p in own} & {o.name for o in options}:
            raise TypeError(f"{command.__name__} must end in **options and not repeat a shared option")
        shared = [o.parameter() for o in options]
        command.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
        return command

    return add
