"""Split the context into blocks and give each rank a contiguous run of them, balancing work."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import BadSettingError, EmptyInputError
from engine.support import SINK_MODEL_TYPES

# Calibration against measured phase-1 times (Llama-3.1-8B shape, bf16, fused pointwise kernels,
# H100, docs/benchmarks.md): a 16K block without anchor took 0.487 s and one with a 16K anchor
# 0.739 s. Counting FLOPs at the measured matmul rate (785 TFLOP/s), a token costs its matmul
# FLOPs plus this fraction more (pointwise work, and matmuls of these shapes running below the
# 8192-cube rate), and attention runs at this fraction of the matmul rate.
POINTWISE_FRACTION = 0.24
ATTENTION_RATE = 0.71


@dataclass(frozen=True)
class CostModel:
    """Work per token in FLOPs: ``linear`` for projections/MLP, ``per_key`` for each attended key
    of the full-attention layers (both plain FLOP counts, which the benchmark's floors use too),
    ``windowed`` the same for sliding-window layers grouped by window: there a token attends to at
    most ``W`` keys, so a window layer's cost stops growing with the block. ``block`` weighs them
    into matmul-equivalent FLOPs: ``pointwise`` more per token, attention divided by ``attn_rate``."""

    linear: float = 1.0
    per_key: float = 0.0
    pointwise: float = 0.0
    attn_rate: float = 1.0
    windowed: tuple[tuple[int, float], ...] = ()
    # Whether the fp8 split-KV kernel serves this model's phase 2 (a power-of-two head dim from 16
    # to 256, no sliding window, soft-capping or sink); elsewhere an fp8 context would be widened
    # back to the model's dtype in every layer of every step, so ``--kv-dtype auto`` keeps that.
    fp8_kernel: bool = True

    @classmethod
    def for_config(cls, config) -> CostModel:
        hidden = config.hidden_size
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        layers = config.num_hidden_layers
        inter = getattr(config, "intermediate_size", 4 * hidden)
        per_layer = 2 * hidden * head_dim * (2 * heads + 2 * kv_heads) + 2 * 3 * hidden * inter
        linear = float(per_layer * layers)
        key_cost = float(4 * heads * head_dim)
        windows = layer_windows(config)
        by_window: dict[int, float] = {}
        for window in windows:
            if window is not None:
                by_window[window] = by_window.get(window, 0.0) + key_cost
        plain = not by_window and not getattr(config, "attn_logit_softcapping", None)
        plain = plain and getattr(config, "model_type", None) not in SINK_MODEL_TYPES
        return cls(
            linear=linear,
            per_key=key_cost * sum(1 for w in windows if w is None),
            pointwise=POINTWISE_FRACTION * linear,
            attn_rate=ATTENTION_RATE,
            windowed=tuple(sorted(by_window.items())),
            fp8_kernel=plain and 16 <= head_dim <= 256 and head_dim & (head_dim - 1) == 0,
        )

    def block(self, tokens: int, anchor: int) -> float:
        """One block of ``tokens`` attending to ``anchor`` keys and causally to itself."""
        keys = tokens * anchor + tokens * (tokens + 1) / 2
        attention = keys * self.per_key
        for window, per_key in self.windowed:
            attention += (_window_keys(anchor + tokens, window) - _window_keys(anchor, window)) * per_key
        return tokens * (self.linear + self.pointwise) + attention / self.attn_rate


def layer_windows(config) -> list[int | None]:
    """Each layer's sliding window (``None``: full attention), as the model applies them: from
    ``layer_types`` where the config has them, else one ``sliding_window`` for every layer (Mistral,
    Mixtral, Phi-3, StarCoder2 have no layer types)."""
    layers = config.num_hidden_layers
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return [window if kind == "sliding_attention" and window else None for kind in layer_types[:layers]]
    if window and getattr(config, "use_sliding_window", True) is not False:
        return [int(window)] * layers
    return [None] * layers


def _window_keys(n: int, window: int) -> float:
    """Keys the first ``n`` tokens of a sequence attend to under a causal window ``W``: token ``p``
    sees ``min(W, p + 1)``."""
    if n <= window:
        return n * (n + 1) / 2
    return window * (window + 1) / 2 + (n - window) * window


@dataclass(frozen=True)
class BlockPlan:
    """Blocks are ``[start, stop)`` token ranges; ``ranks[r]`` is the run of block indices of rank r."""

    context_tokens: int
    block_size: int
    anchor_size: int
    blocks: tuple[tuple[int, int], ...]
    ranks: tuple[tuple[int, ...], ...]
    anchor_shared: bool = False  # rank 0 sends the anchor's KV; no rank recomputes it

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def anchor(self) -> int:
        """Anchor tokens actually used: none when there is only one block."""
        return min(self.anchor_size, self.blocks[0][1]) if len(self.blocks) > 1 else 0

    def rank_span(self, rank: int) -> tuple[int, int]:
        """The token range ``[start, stop)`` owned by ``rank`` (empty if no blocks); contiguous in
        star plans."""
        own = self.ranks[rank]
        if not own:
            return (0, 0)
        return (self.blocks[own[0]][0], self.blocks[own[-1]][1])

    def rank_needs_anchor(self, rank: int) -> bool:
        own = self.ranks[rank]
        return self.anchor > 0 and any(i > 0 for i in own)

    def blocks_per_rank(self) -> list[int]:
        return [len(r) for r in self.ranks]


@dataclass(frozen=True)
class ZigzagLayout:
    """Ring mode's split: chunk ``i`` is ``[bounds[i], bounds[i+1])``; rank ``r`` holds chunks
    ``r`` and ``2W-1-r`` (zigzag: every rank gets the same causal work)."""

    bounds: tuple[int, ...]
    world_size: int

    @classmethod
    def build(cls, tokens: int, world_size: int) -> ZigzagLayout:
        parts = 2 * world_size
        sizes = [tokens // parts + (1 if i < tokens % parts else 0) for i in range(parts)]
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        return cls(tuple(bounds), world_size)

    @classmethod
    def from_plan(cls, plan: BlockPlan) -> ZigzagLayout:
        return cls(tuple(start for start, _ in plan.blocks) + (plan.context_tokens,), plan.world_size)

    def chunks(self, rank: int) -> tuple[int, int]:
        return rank, 2 * self.world_size - 1 - rank

    def span(self, chunk: int) -> tuple[int, int]:
        return self.bounds[chunk], self.bounds[chunk + 1]

    def length(self, chunk: int) -> int:
        return self.bounds[chunk + 1] - self.bounds[chunk]

    def positions(self, rank: int) -> list[int]:
        a, b = (self.span(c) for c in self.chunks(rank))
        return list(range(*a)) + list(range(*b))

    def as_plan(self) -> BlockPlan:
        """The layout as a ``BlockPlan`` (chunks as blocks, no anchor), as the run plan holds it."""
        parts = 2 * self.world_size
        blocks = tuple(self.span(i) for i in range(parts))
        ranks = tuple(self.chunks(r) for r in range(self.world_size))
        return BlockPlan(self.bounds[-1], max(self.length(i) for i in range(parts)), 0, blocks, ranks)


MIN_AUTO_BLOCK = 4096
MAX_AUTO_BLOCK = 16384


def default_block_size(context_tokens: int, world_size: int) -> int:
    """The block size used when none is given: a quarter of each rank's share, kept between
    4,096 and 16,384 tokens.

    Why (docs/accuracy.md, docs/benchmarks.md): on RULER-style needles Star lost answers only with
    blocks under ~1K tokens and none at ~2K, so 4K leaves a 2x margin (and a short context is one
    block: exactly dense); at 128K on one H100, 16K blocks reached the first token 2x sooner than
    dense, 32K blocks only 1.4x, while the paper validates 16K blocks at 128K.
    """
    share = -(-context_tokens // (4 * max(1, world_size)))
    return min(MAX_AUTO_BLOCK, max(MIN_AUTO_BLOCK, share))


def plan_blocks(
    context_tokens: int,
    block_size: int,
    anchor_size: int | None,
    world_size: int,
    cost: CostModel | None = None,
    share_anchor: bool = False,
) -> BlockPlan:
    """Blocks of ``block_size`` (the last may be shorter), assigned in contiguous runs so that the
    most loaded rank has as little work as possible; a rank not holding block 0 also pays for
    computing the anchor once, unless ``share_anchor`` (rank 0 sends it while encoding block 0)."""
    if context_tokens < 1:
        raise EmptyInputError("the context is empty: give the engine at least one context token")
    if block_size < 1:
        raise BadSettingError(f"block size must be at least 1 (got {block_size})")
    anchor = block_size if anchor_size is None else anchor_size
    if anchor < 0 or anchor > block_size:
        raise BadSettingError(
            f"anchor size {anchor} must be between 0 and the block size {block_size}; "
            f"lower --anchor-size or raise --block-size"
        )
    if world_size < 1:
        raise BadSettingError(f"world size must be at least 1 (got {world_size})")
    cost = cost or CostModel()
    blocks = tuple((s, min(s + block_size, context_tokens)) for s in range(0, context_tokens, block_size))
    used_anchor = min(anchor, blocks[0][1]) if len(blocks) > 1 else 0
    work = [cost.block(stop - start, used_anchor if i > 0 else 0) for i, (start, stop) in enumerate(blocks)]
    shared = share_anchor and used_anchor > 0 and world_size > 1
    anchor_work = 0.0 if shared else cost.block(used_anchor, 0)
    ranks = _partition(tuple(work), anchor_work, world_size)
    return BlockPlan(context_tokens, block_size, anchor, blocks, ranks, shared)


def _partition(work: tuple[float, ...], anchor_work: float, world: int) -> tuple[tuple[int, ...], ...]:
    """Contiguous split of ``work`` into ``world`` runs minimising the heaviest run: binary search
    on that maximum with a greedy fill (a run not starting at block 0 also pays ``anchor_work``).
    Ranks left over at the end get no blocks."""

    def fill(limit: float) -> list[list[int]] | None:
        runs: list[list[int]] = [[]]
        load = 0.0
        for i, w in enumerate(work):
            if runs[-1] and load + w > limit:
                runs.append([])
                load = anchor_work
            load += w
            if load > limit:
                return None
            runs[-1].append(i)
        return runs if len(runs) <= world else None

    lo, hi = max(work), sum(work) + anchor_work
    best = fill(hi)
    for _ in range(64):
        mid = (lo + hi) / 2
        runs = fill(mid)
        if runs is None:
            lo = mid
        else:
            hi, best = mid, runs
    assert best is not None
    best += [[] for _ in range(world - len(best))]
    return tuple(tuple(r) for r in best)
