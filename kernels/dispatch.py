"""Pick the fastest attention implementation available for the tensors' device.

Each entry point has a CPU path here and GPU paths registered by the GPU modules when they
import (Triton / cuDNN need CUDA); the engine calls only these functions, never an
implementation directly, so a faster kernel lands in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels.merge import merge_partials as _merge_reference
from kernels.quant import dequantize
from kernels.reference import attention_with_lse_cpu_flash, attention_with_lse_math

AttentionFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]

# device type -> implementation; the CUDA entries are added on first use (_register_cuda).
_ATTENTION: dict[str, AttentionFn] = {"cpu": attention_with_lse_cpu_flash}


_MERGE: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}
_cuda_checked = False
_reference_only = False


def use_reference_kernels(on: bool) -> None:
    """Force the float32 math version everywhere (debugging); the engine sets this once per run
    from its options, so the hot path reads a module flag, not the environment."""
    global _reference_only
    _reference_only = on


def reference_only() -> bool:
    """Whether ``use_reference_kernels(True)`` is in force (the variants' kernels honour it too)."""
    return _reference_only


def _register_cuda() -> None:
    """Register the cuDNN/flash/Triton kernels the first time a CUDA tensor arrives (importing
    Triton at import time would slow every CPU run)."""
    global _cuda_checked
    _cuda_checked = True
    if "cuda" in _ATTENTION:
        return
    try:
        from kernels.cuda_attention import attention_with_lse_cuda, merge_cuda
    except ImportError:  # no Triton: the math version stays the CUDA path
        return
    _ATTENTION["cuda"] = attention_with_lse_cuda
    _MERGE["cuda"] = merge_cuda


def merge_partials(outs, lses, out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.merge.merge_partials`` through the fastest merge for the partials' device."""
    first = outs if isinstance(outs, torch.Tensor) else outs[0]
    if first.device.type == "cuda" and not _cuda_checked:
        _register_cuda()
    fn = _MERGE.get(first.device.type, _merge_reference)
    if _reference_only:
        fn = _merge_reference
    return fn(outs, lses, out_dtype)


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` over ``k``/``v`` returning ``(O, LSE)``; causal is bottom-right aligned.

    ``use_reference_kernels(True)`` forces the float32 math version everywhere (for debugging).
    """
    if _reference_only:
        return attention_with_lse_math(q, k, v, scale, causal)
    if q.device.type == "cuda" and not _cuda_checked:
        _register_cuda()
    fn = _ATTENTION.get(q.device.type, attention_with_lse_math)
    return fn(q, k, v, scale, causal)


def attention_with_lse_upto(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, kv_len: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention over the first ``kv_len`` keys (a one-element device tensor), so that a
    CUDA graph can replay one launch over a growing cache: the decode step's tail attention."""
    if q.device.type == "cuda" and not _reference_only:
        from kernels.triton_attention import split_kv_attention, supported

        if supported(q) and q.dtype in (torch.float16, torch.bfloat16):
            return split_kv_attention(q, k, v, scale, kv_len=kv_len)
    n = int(kv_len.reshape(-1)[0])  # host sync: fine off the graph path
    return attention_with_lse(q, k[:, :, :n], v[:, :, :n], scale, causal=False)


def _triton_ready(q: torch.Tensor) -> bool:
    """Whether the Triton split-KV kernels take these queries (CUDA, fp16/bf16, a head dim they
    handle) and the reference kernels are not forced."""
    if q.device.type != "cuda" or _reference_only:
        return False
    from kernels.triton_attention import supported

    return supported(q) and q.dtype in (torch.float16, torch.bfloat16)


def attention_with_lse_fp8(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_scales: tuple[torch.Tensor, torch.Tensor],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention over an fp8 KV (``kernels.quant``: values and per-token scales): on CUDA
    the split-KV kernel dequantizes as it reads, so the context is never widened in memory;
    elsewhere the KV is dequantized to ``q``'s dtype and attended as usual."""
    if _triton_ready(q):
        from kernels.triton_attention import split_kv_attention

        return split_kv_attention(q, k, v, scale, kv_scales=kv_scales)
    return attention_with_lse(
        q, dequantize(k, kv_scales[0], q.dtype), dequantize(v, kv_scales[1], q.dtype), scale, causal=False
    )


def decode_attention(
    q: torch.Tensor,
    ctx_k: torch.Tensor | None,
    ctx_v: torch.Tensor | None,
    tail_k: torch.Tensor | None,
    tail_v: torch.Tensor | None,
    tail_len: torch.Tensor | None,
    scale: float,
    ctx_scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention over all context keys and the first ``tail_len`` tail keys (either part
    may be ``None``): the decode step's attention, one split-KV pass and one merge on CUDA.
    ``ctx_scales``: the context KV is fp8 (``kernels.quant``)."""
    if _triton_ready(q):
        from kernels.triton_attention import decode_attention as fused

        return fused(q, ctx_k, ctx_v, tail_k, tail_v, tail_len, scale, ctx_scales)
    outs, lses = [], []
    if ctx_k is not None and ctx_k.shape[2] > 0:
        if ctx_scales is not None:
            o, lse = attention_with_lse_fp8(q, ctx_k, ctx_v, ctx_scales, scale)
        else:
            o, lse = attention_with_lse(q, ctx_k, ctx_v, scale, causal=False)
        outs.append(o)
        lses.append(lse)
    if tail_k is not None and tail_k.shape[2] > 0:
        o, lse = attention_with_lse_upto(q, tail_k, tail_v, scale, tail_len)
        outs.append(o)
        lses.append(lse)
    if not outs:
        from kernels.reference import empty_partial

        return empty_partial(q, q.shape[-1] if ctx_v is None else ctx_v.shape[-1])
    if len(outs) == 1:
        return outs[0], lses[0]
    return merge_partials(outs, lses, out_dtype=q.dtype)


def block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    anchor_k: torch.Tensor | None,
    anchor_v: torch.Tensor | None,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase-1 attention of a context block: full attention to the anchor, causal within the block.

    Two unmasked/causal calls merged by LSE: on Hopper that beat one masked call by 2.6x (DESIGN.md),
    and on CPU it keeps the fused kernel usable.
    """
    own = attention_with_lse(q, k, v, scale, causal=True)
    if anchor_k is None or anchor_k.shape[2] == 0:
        return own
    anchor = attention_with_lse(q, anchor_k, anchor_v, scale, causal=False)
    return merge_partials([own[0], anchor[0]], [own[1], anchor[1]])
