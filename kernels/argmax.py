"""Greedy decoding's argmax over the vocabulary, in two short Triton launches.

``torch.argmax`` over one 128K-entry row of logits ran as a single-block reduction: 27 µs on an
H200, after a 2 µs copy to float32, and every decode step waits for it before the next token can
start (docs/benchmarks.md). Here many programs each reduce a slice of the row as stored (any float
dtype: widening is exact, so the order of values is the same), and one program reduces their
partials. Ties go to the first index and a NaN counts as the largest value, as ``torch.argmax``'s.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_SLICE = 2048  # values a program reduces


@triton.jit
def _first_max(values, index, n):
    """(largest value, its first index) of a tile; a NaN counts as largest (and its first index
    wins among NaNs); index ``n`` for lanes outside the row."""
    nan = values != values
    any_nan = tl.max(nan.to(tl.int32), 0) > 0
    top = tl.max(tl.where(nan, float("-inf"), values), 0)
    hit = tl.where(any_nan, nan, values == top)
    return tl.where(any_nan, float("nan"), top), tl.min(tl.where(hit, index, n), 0)


@triton.jit
def _slices_kernel(X, VALUES, INDEX, n, SLICE: tl.constexpr):
    offs = tl.program_id(0) * SLICE + tl.arange(0, SLICE)
    x = tl.load(X + offs, mask=offs < n, other=float("-inf")).to(tl.float32)
    top, first = _first_max(x, offs, n)
    tl.store(VALUES + tl.program_id(0), top)
    tl.store(INDEX + tl.program_id(0), first)


@triton.jit
def _partials_kernel(VALUES, INDEX, OUT, parts, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    ok = offs < parts
    values = tl.load(VALUES + offs, mask=ok, other=float("-inf"))
    index = tl.load(INDEX + offs, mask=ok, other=n)
    # the partials' indices rise with their slices, so the first maximal partial holds the first index
    top, first = _first_max(values, offs, parts)
    tl.store(OUT, tl.sum(tl.where(offs == first, index, 0), 0))


def argmax(x: torch.Tensor) -> int:
    """The index of the largest value of the 1-D floating tensor ``x`` (``int(torch.argmax(x))``),
    by the kernels above for a CUDA tensor of at least one slice, else by torch."""
    if not (
        x.is_cuda and x.dim() == 1 and x.is_contiguous() and x.is_floating_point() and x.numel() >= _SLICE
    ):
        return int(torch.argmax(x))
    return argmax_triton(x)


def argmax_triton(x: torch.Tensor) -> int:
    """``argmax`` by the two launches, for a contiguous 1-D floating ``x`` on the kernels' device
    (or any device under Triton's interpreter, tests/interpreter_kernels.py)."""
    n = x.numel()
    parts = triton.cdiv(n, _SLICE)
    values = torch.empty(parts, dtype=torch.float32, device=x.device)
    index = torch.empty(parts, dtype=torch.int64, device=x.device)
    out = torch.empty(1, dtype=torch.int64, device=x.device)
    _slices_kernel[(parts,)](x, values, index, n, SLICE=_SLICE, num_warps=4)
    block = max(16, triton.next_power_of_2(parts))
    _partials_kernel[(1,)](values, index, out, parts, n, BLOCK=block, num_warps=4)
    return int(out)
