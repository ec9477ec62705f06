"""Errors the engine raises for bad requests; each message names the numbers and the way out."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a request the engine cannot serve as asked."""


class EmptyInputError(EngineError):
    """The context or a query has no tokens."""


class BadSettingError(EngineError):
    """A block size, anchor size, mode or generation setting outside its valid range."""


class ContextTooLongError(EngineError):
    """Context + query + max tokens exceed the model's position limit."""

    def __init__(self, needed: int, limit: int, context: int, query: int, max_tokens: int):
        self.needed, self.limit = needed, limit
        self.context_tokens, self.query_tokens, self.max_tokens = context, query, max_tokens
        super().__init__(
            f"context ({context}) + query ({query}) + max tokens ({max_tokens}) = {needed} tokens, "
            f"beyond the model's limit of {limit} positions; shorten the input (filters, fewer "
            f"sources), lower --max-tokens, or use a model with a longer context"
        )


class ModelLoadError(EngineError):
    """The model or tokenizer could not be loaded."""


class RankFailure(EngineError):
    """Another rank failed or a collective timed out."""


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
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)
