"""The errors starcli and its engine raise on purpose: one base class that carries its exit code.

Each message names the numbers and the way out. An error raised in a rank crosses to the launcher
as its class name and message (``Failure`` events) and is rebuilt by ``error_from_name`` from this
closed registry, so the user sees the same class, message and exit code as on one rank. No torch
here: the CLI maps errors to exit codes without importing it.
"""

from __future__ import annotations

EXIT_FAILURE, EXIT_USAGE = 1, 2


class StarcliError(Exception):
    """Base class of every deliberate error; ``exit_code`` is what the CLI exits with."""

    exit_code: int = EXIT_FAILURE


class EngineError(StarcliError):
    """A request the engine cannot serve as asked: bad usage or unusable input (exit 2)."""

    exit_code = EXIT_USAGE


class EmptyInputError(EngineError):
    """The context or a query has no tokens."""


class BadSettingError(EngineError):
    """A block size, anchor size, mode or generation setting outside its valid range."""


class ContextTooLongError(EngineError):
    """Context + query + max tokens exceed the model's position limit."""

    def __init__(
        self, needed: int, limit: int, context: int, query: int, max_tokens: int, message: str | None = None
    ):
        self.needed, self.limit = needed, limit
        self.context_tokens, self.query_tokens, self.max_tokens = context, query, max_tokens
        super().__init__(
            message
            or f"context ({context}) + query ({query}) + max tokens ({max_tokens}) = {needed} tokens, "
            f"beyond the model's limit of {limit} positions; shorten the input (filters, fewer "
            f"sources), lower --max-tokens, or use a model with a longer context"
        )


class BeyondLocalPositionsError(ContextTooLongError):
    """The input is past the length up to which window-local positions are chosen on their own
    (``MAX_AUTO_LOCAL_MULTIPLE`` times the window): the CLI's map-reduce fallback takes it from
    here, or it is refused with this message (``--fallback refuse``)."""


class UnsupportedModelError(EngineError):
    """A model type, or a feature of its config, the engine cannot run exactly: refused by name
    before its weights load (``engine.support.check_model_supported``), never run approximately."""

    def __init__(self, model_type: str, feature: str):
        self.model_type, self.feature = model_type, feature
        super().__init__(f"model type {model_type!r} is not supported: {feature}")


class NotEnoughMemoryError(EngineError):
    """The run's estimated peak memory exceeds what its device has free (``engine.memory``):
    refused before any weights load, naming both figures and the ways out (exit 2, like any run
    its settings cannot serve here). Past the estimate, a real allocation failure is
    ``OutOfMemoryError`` (exit 1)."""


class InputMismatchError(EngineError):
    """The nodes of a multi-node job read different input (token ids or run plan): each node reads
    and tokenizes its own sources, so they must be identical everywhere (exit 2)."""


class ModelLoadError(StarcliError):
    """The model or tokenizer could not be loaded (a runtime failure: exit 1)."""


class RankError(StarcliError):
    """A rank failed at run time (died, timed out, ran out of memory): exit 1."""


class OutOfMemoryError(RankError):
    """An allocation failed, on any device; the message names the ways out."""


def error_from_name(name: str, message: str) -> StarcliError | None:
    """The error a rank reported by class name, rebuilt with its message; ``None`` for a name that
    is not one of ours (an unexpected exception: the launcher reports it as a rank failure)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        return None
    error = cls.__new__(cls)  # the message is already composed: skip subclasses' own __init__
    StarcliError.__init__(error, message)
    return error


_REGISTRY: dict[str, type[StarcliError]] = {
    cls.__name__: cls
    for cls in (
        StarcliError,
        EngineError,
        EmptyInputError,
        BadSettingError,
        ContextTooLongError,
        UnsupportedModelError,
        NotEnoughMemoryError,
        InputMismatchError,
        ModelLoadError,
        RankError,
        OutOfMemoryError,
    )
}

# How allocation failures read when they are not a ``torch.OutOfMemoryError``: torch's CPU
# allocator raises a plain RuntimeError, and some CUDA libraries report their own codes.
_OUT_OF_MEMORY_TEXT = (
    "can't allocate memory",
    "not enough memory",
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure, on any device."""
    if isinstance(exc, (MemoryError, OutOfMemoryError)) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)
