"""Attention kernels with log-sum-exp and the LSE merge; no dependency on engine or starcli."""

from kernels.delta import delta_block_attention, spread_deltas
from kernels.dispatch import (
    attention_with_lse,
    attention_with_lse_fp8,
    attention_with_lse_upto,
    block_attention,
    decode_attention,
    merge_partials,
    use_reference_kernels,
)
from kernels.quant import dequantize, is_fp8, quantize_fp8
from kernels.reference import attention_with_lse_math, empty_partial
from kernels.variants import positioned_attention_with_lse, sink_partial

__all__ = [
    "attention_with_lse",
    "attention_with_lse_fp8",
    "attention_with_lse_math",
    "attention_with_lse_upto",
    "block_attention",
    "decode_attention",
    "delta_block_attention",
    "dequantize",
    "empty_partial",
    "is_fp8",
    "merge_partials",
    "positioned_attention_with_lse",
    "quantize_fp8",
    "sink_partial",
    "spread_deltas",
    "use_reference_kernels",
]
