"""The one LSE merge every attention variant shares (ring-flash-attention's lesson: write it once).

Partials over disjoint key sets combine exactly into attention over their union:
``LSE = logsumexp_h LSE_h`` and ``O = sum_h exp(LSE_h - LSE) * O_h``. Everything happens in float32
in the max-shifted form, so large LSE gaps cannot overflow (unlike ``log(1 + exp(d))``), and
partials with no keys (LSE = -inf) contribute nothing instead of NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def merge_partials(
    outs: Sequence[torch.Tensor] | torch.Tensor,
    lses: Sequence[torch.Tensor] | torch.Tensor,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``P`` partials: ``outs`` [P, ..., Lq, D] (or a list), ``lses`` [P, ..., Lq].

    Returns ``(O, LSE)``; ``O`` in ``out_dtype`` (default: the first partial's dtype), LSE fp32.
    Rows where every partial is empty come out as O = 0, LSE = -inf.
    """
    o = torch.stack(list(outs)) if not isinstance(outs, torch.Tensor) else outs
    lse = torch.stack(list(lses)) if not isinstance(lses, torch.Tensor) else lses
    dtype = out_dtype or o.dtype
    lse = lse.float()
    peak = lse.amax(dim=0)
    finite_peak = torch.where(torch.isinf(peak), torch.zeros_like(peak), peak)
    weights = torch.exp(lse - finite_peak.unsqueeze(0))  # exp(-inf) = 0 for empty partials
    total = weights.sum(dim=0)
    merged = (weights.unsqueeze(-1) * o.float()).sum(dim=0)
    merged = merged / torch.where(total > 0, total, torch.ones_like(total)).unsqueeze(-1)
    merged_lse = torch.where(total > 0, finite_peak + torch.log(total), peak)
    return merged.to(dtype), merged_lse
