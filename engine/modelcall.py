"""The one place the engine calls a transformers model, under the argument names its version expects.

transformers renames forward arguments between minor versions: 5.24 renamed ``past_key_values``
to ``cache`` (the old name warns with a FutureWarning on every call and goes away in 5.40), while
the GPU machines carry 5.17, which knows only ``past_key_values``. The name is read from the
model's own ``forward`` signature once per model class, so every engine path (dense prefill, star
phases, ring, the CUDA-graph decode step) and the tests pass the cache the same way, and a future
rename is one edit here.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from functools import cache
from typing import Any

import torch

NEW_CACHE_NAME, OLD_CACHE_NAME = "cache", "past_key_values"

# The attention kwargs of the model call in progress: some modeling code (StableLM's decoder
# layer) does not pass its ``**kwargs`` on to the attention function, which reads them here.
_ATTENTION_KWARGS: ContextVar[dict[str, Any] | None] = ContextVar("attention_kwargs", default=None)


def current_attention_kwargs() -> dict[str, Any]:
    """The extra keyword arguments of the ``call_model`` running now (empty outside one)."""
    return _ATTENTION_KWARGS.get() or {}


@cache
def cache_keyword(model_class: type) -> str:
    """``cache`` where the model's forward takes it, else ``past_key_values`` (transformers < 5.24)."""
    parameters = inspect.signature(model_class.forward).parameters
    return NEW_CACHE_NAME if NEW_CACHE_NAME in parameters else OLD_CACHE_NAME


def call_model(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    kv_cache: Any,
    logits_to_keep: int = 1,
    **attention_kwargs: Any,
) -> Any:
    """Run ``model`` over ``input_ids`` at ``position_ids``, appending to ``kv_cache``; extra
    keyword arguments reach the attention function (the star cache, for instance)."""
    token = _ATTENTION_KWARGS.set(attention_kwargs)
    try:
        return model(
            input_ids=input_ids,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **{cache_keyword(type(model)): kv_cache},
            **attention_kwargs,
        )
    finally:
        _ATTENTION_KWARGS.reset(token)
