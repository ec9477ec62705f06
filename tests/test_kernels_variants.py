"""``kernels.variants`` against attention written out in full (one softmax over a masked score
matrix, transformers' eager order: scale, soft-cap, mask, sink column): windows, soft-capping
and sinks, whatever the split of the keys the partials are merged over."""

from __future__ import annotations

import pytest
import torch

from kernels import merge_partials, positioned_attention_with_lse, sink_partial


def full_attention(q, k, v, scale, window, softcap, sinks):
    """Queries at the end of the keys' sequence, over every key, in one softmax."""
    lq, lk, groups = q.shape[2], k.shape[2], q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    rows = torch.arange(lq).unsqueeze(1) + lk - lq
    cols = torch.arange(lk).unsqueeze(0)
    hidden = (cols > rows) | ((cols <= rows - window) if window else torch.zeros_like(cols > rows))
    scores = scores.masked_fill(hidden, float("-inf"))
    if sinks is not None:
        sink = sinks.reshape(1, -1, 1, 1).expand(*scores.shape[:3], 1)
        scores = torch.cat([scores, sink], dim=-1)
    probs = scores.softmax(-1)[..., :lk]
    return probs @ v


@pytest.mark.parametrize("window", [None, 1, 5, 40])
@pytest.mark.parametrize("softcap", [None, 0.7])
@pytest.mark.parametrize("sinks", [False, True])
@pytest.mark.parametrize("cuts", [(), (9,), (4, 17, 30)])
@pytest.mark.parametrize("lq", [1, 6])
def test_split_keys_merged_with_the_sink_equal_full_attention(window, softcap, sinks, cuts, lq):
    g = torch.Generator().manual_seed(0)
    lk = 36
    q = torch.randn(1, 4, lq, 8, generator=g) * 2
    k, v = torch.randn(1, 2, lk, 8, generator=g) * 2, torch.randn(1, 2, lk, 8, generator=g)
    sink = torch.randn(4, generator=g) if sinks else None
    q_start = lk - lq
    bounds = [0, *cuts, lk]
    parts = [
        positioned_attention_with_lse(q, k[:, :, a:b], v[:, :, a:b], 0.3, q_start, a, window, softcap)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    if sink is not None:
        parts.append(sink_partial(sink, q))
    out, _ = merge_partials([o for o, _ in parts], [s for _, s in parts])
    expected = full_attention(q, k, v, 0.3, window, softcap, sink)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
