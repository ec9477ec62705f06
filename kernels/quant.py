"""The fp8 KV format: float8 e4m3 values with one float32 scale per token and KV head.

Why per token: a token's K (or V) vector over the head dimension is what one score (or one
weighted sum term) reads, so one scale per token keeps every token's own range whatever its
neighbours hold, costs 4 bytes next to ``D`` (3% at ``D = 128``), and lets a kernel apply the scale
to a whole column of scores (``s = q·k̂ · s_k``) and of probabilities (``p · s_v``) after the
matmul, where it is one multiply per key, not per element. e4m3 keeps a relative precision of
2^-4 down to its subnormals, so small components lose no more than large ones (unlike int8).
"""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest finite e4m3fn value
_TINY = 1e-12  # an all-zero vector still gets a finite, positive scale


def quantize_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [..., D] → (values in e4m3 [..., D], float32 scales [...]) with ``x ≈ values·scale``."""
    amax = x.abs().amax(dim=-1).float()
    scale = (amax / FP8_MAX).clamp_min(_TINY)
    values = (x.float() / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return values, scale


def dequantize(values: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor ``quantize_fp8`` approximated, in ``dtype``, contiguous whatever ``values``' layout
    (an fp8 cache's V is a keys-contiguous view, ``engine.cache``)."""
    wide = values.to(torch.float32, memory_format=torch.contiguous_format)
    return (wide * scale.unsqueeze(-1)).to(dtype)


def is_fp8(t: torch.Tensor | None) -> bool:
    return t is not None and t.dtype == FP8


def empty_keys_major(
    shape: tuple[int, ...], device: torch.device | str, dtype: torch.dtype = FP8
) -> torch.Tensor:
    """An uninitialised ``shape`` [..., L, D] tensor whose memory runs along L (a transposed view,
    each row padded to a multiple of 16 elements): how an fp8 cache stores V, so that the decode
    kernel's P·V product reads its 8-bit operand along the keys (``engine.cache``)."""
    *lead, length, d = shape
    padded = -(-length // 16) * 16
    return torch.empty((*lead, d, padded), dtype=dtype, device=device).transpose(-1, -2)[..., :length, :]


def keys_major(v: torch.Tensor) -> bool:
    """Whether ``v`` [B, H, L, D] is a view of values stored keys-contiguous (``engine.cache``'s
    fp8 layout): the kernel then reads V along its keys, as the P·V product wants its 8-bit operand
    (there is no transposing matrix load for 8-bit types; read D-contiguous, V reached the product
    one byte at a time through shared memory, docs/ncu-splitkv-fp8-h200.txt)."""
    return v.dim() == 4 and v.stride(2) == 1 and v.stride(3) != 1
