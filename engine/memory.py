"""How much memory a run needs at its peak, per rank, known before any weights load (issue 16).

A rank holds, at once: the weights; its KV cache (its context tokens, plus on the query host the
room for the query and the answer), allocated in full by phase 1's first block; during phase 1
the anchor's KV where it is held apart from the rank's own blocks, and the transient activations
of one forward pass over its largest block; in phase 2 the activations of the query pass. Decode
steps are one token and need next to nothing. Everything here is arithmetic on the model's
config and the run plan (no torch), so the CLI can refuse a run that cannot fit, with both
numbers and a block size that fits, instead of failing inside a kernel
(``engine.memory_budget.check_budget``).

The transient count follows what transformers' modeling code and ``engine.attention`` keep alive
(``pass_bytes``): the residual stream and the normed input through a layer; Q, K and V; RoPE's
temporaries; the attention partials and their merge; RMSNorm's float32 round trip where it is not
fused; and the MLP's gate, up and product, over at most ``MLP_CHUNK_TOKENS`` tokens at a time
(``engine.chunked``). The context tokens' logits are never computed (``logits_to_keep=1``).
Dense ``global`` mode is one pass over the whole context through transformers' sdpa: a chunked
prefill cannot serve it, since sdpa needs an explicit ``chunk × context`` mask once queries and
keys differ in length and then leaves its fused kernels. With the MLP chunked, its one pass over
256K tokens of the 8B shape is estimated at about 15 GiB beside 32 GiB of KV and 15 GiB of weights
(``ring`` on one rank about 20 GiB), where the MLP alone took 21 GiB before: both fit one H200.
A chunked prefill through the star cache (each chunk's "anchor" all the context before it) would
bound it by a chunk, should a dense mode ever need to go further.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.plan import ZigzagLayout
from engine.runplan import RunPlan
from engine.settings import MLP_CHUNK_TOKENS, Attention, Correction
from engine.support import FUSED_MODEL_TYPES

GiB = 1 << 30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# The KV element sizes a run may store (a ``kv_dtype`` setting; auto: the model's dtype).
KV_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1}
FP8_SCALE_BYTES = 4  # fp8 KV: one float32 scale per token per KV head, for K and for V each
# What the count leaves out (allocator rounding and fragmentation, small tensors, kernels'
# scratch): the transients are taken this much larger.
TRANSIENT_MARGIN = 1.25
# Per CUDA rank: cuBLAS/cuDNN workspaces, Triton, NCCL buffers (the CUDA context itself is already
# outside the free figure, which is read after it exists).
CUDA_WORKSPACE = 1 * GiB
# Models whose MLP has no gate (two matrices, not three).
UNGATED_MLP_TYPES = frozenset({"gpt_neox", "phi", "starcoder2"})


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a model's config."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    parameters: int
    model_type: str = ""

    @classmethod
    def for_config(cls, config) -> ModelShape:
        heads = config.num_attention_heads
        hidden = config.hidden_size
        experts = _experts(config)
        inter = getattr(config, "moe_intermediate_size", None) if experts else None
        return cls(
            layers=config.num_hidden_layers,
            hidden=hidden,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads,
            intermediate=inter or getattr(config, "intermediate_size", None) or 4 * hidden,
            vocab=config.vocab_size,
            parameters=parameter_count(config),
            model_type=getattr(config, "model_type", "") or "",
        )

    def kv_token_bytes(self, element_bytes: int) -> int:
        """KV bytes of one token over every layer, with fp8's per-token scales."""
        scale = FP8_SCALE_BYTES if element_bytes == 1 else 0
        return self.layers * 2 * self.kv_heads * (self.head_dim * element_bytes + scale)


def _experts(config) -> int:
    return getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 0


def parameter_count(config) -> int:
    """The model's parameters from its config: embeddings (twice unless tied), attention
    projections, the MLP (gated or not, or its experts and router), two norms a layer and the
    final norm. Biases are left out: they are a fraction of a percent of any real model."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = 2 * hidden * q + 2 * hidden * kv
    experts = _experts(config)
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    if experts:
        per_expert = getattr(config, "moe_intermediate_size", None) or inter
        mlp = experts * 3 * hidden * per_expert + hidden * experts
    elif getattr(config, "model_type", "") in UNGATED_MLP_TYPES:
        mlp = 2 * hidden * inter
    else:
        mlp = 3 * hidden * inter
    embeddings = config.vocab_size * hidden * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return config.num_hidden_layers * (attention + mlp + 2 * hidden) + embeddings + hidden


def kv_element_bytes(kv_dtype: str, dtype: str) -> int:
    """Bytes of one stored KV element: ``model`` is the model's ``dtype`` (a plan's kv_dtype is
    never ``auto``: ``make_run_plan`` resolves it)."""
    return DTYPE_BYTES[dtype] if kv_dtype in ("model", "auto") else KV_DTYPE_BYTES[kv_dtype]


def plan_kv_bytes(plan: RunPlan) -> int:
    """Bytes of one KV element under the plan: one under ``--kv-dtype fp8`` (``kv_token_bytes``
    adds its scales), else the model's dtype."""
    return kv_element_bytes(str(plan.kv_dtype), plan.dtype)


@dataclass(frozen=True)
class MemoryEstimate:
    """One rank's peak, in bytes, by what holds it (transients with ``TRANSIENT_MARGIN`` applied)."""

    rank: int
    weights: int
    kv_cache: int
    anchor: int  # the anchor's KV, where held apart from the rank's blocks (phase 1 only)
    phase1: int  # one forward pass over the rank's largest block
    phase2: int  # the query's pass
    workspace: int

    @property
    def work(self) -> int:
        """Everything besides the weights and the KV cache, at its largest."""
        return max(self.anchor + self.phase1, self.phase2) + self.workspace

    @property
    def peak(self) -> int:
        return self.weights + self.kv_cache + self.work


def pass_bytes(
    shape: ModelShape,
    tokens: int,
    act_bytes: int,
    *,
    fused: bool,
    outputs: float,
    extra_kv: int = 0,
    mlp_chunk: int | None = MLP_CHUNK_TOKENS,
) -> int:
    """Activation bytes alive at the peak of one forward pass over ``tokens`` tokens: the largest of
    the attention sublayer (residual, normed input, Q/K/V, then RoPE's temporaries or the
    ``outputs`` attention outputs of Q's size and ``extra_kv`` K-sized copies), RMSNorm (its float32
    round trip unless ``fused``) and the MLP (gate, up and product over ``mlp_chunk`` tokens at a
    time, its output written into one buffer), plus RoPE's tables and the last token's logits."""
    h, e = shape.hidden, act_bytes
    q, k, inter = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    rope = q + k if fused else 3 * q
    attention_out = outputs * q + extra_kv * k
    attention = (2 * h + q + 2 * k + max(rope, attention_out)) * e + outputs * shape.heads * 4
    norm = 2 * h * e + (0 if fused else (8 if e == 4 else 12) * h)
    chunk = tokens if mlp_chunk is None else min(tokens, mlp_chunk)
    mlp = (3 if chunk < tokens else 2) * h * e * tokens + max(3 * inter, inter + h) * e * chunk
    rope_tables = tokens * shape.head_dim * 16
    logits = shape.vocab * (e + 8)
    return int(max(attention * tokens, norm * tokens, mlp) + rope_tables + logits)


def estimate_rank(plan: RunPlan, shape: ModelShape, rank: int, kv_bytes: int | None = None) -> MemoryEstimate:
    """Rank ``rank``'s peak under ``plan`` (``kv_bytes``: one KV element; the plan's by default)."""
    e = DTYPE_BYTES[plan.dtype]
    kv_bytes = plan_kv_bytes(plan) if kv_bytes is None else kv_bytes
    world, layout = plan.world_size, plan.layout
    host = rank == world - 1
    room = plan.query_tokens + plan.max_tokens
    options = plan.options
    fused = plan.device == "cuda" and options.fused and not options.compile and e == 2
    fused = fused and shape.model_type in FUSED_MODEL_TYPES
    compiled = plan.device == "cuda" and options.compile
    chunk = None if compiled else MLP_CHUNK_TOKENS  # engine.chunked leaves compiled MLPs whole

    def one_pass(tokens: int, outputs: float, extra_kv: int = 0) -> int:
        if tokens <= 0:
            return 0
        size = pass_bytes(shape, tokens, e, fused=fused, outputs=outputs, extra_kv=extra_kv, mlp_chunk=chunk)
        return int(size * TRANSIENT_MARGIN)

    anchor = 0
    if plan.attention == Attention.GLOBAL:
        local = layout.context_tokens
        kv_tokens = local + room  # transformers' cache, grown in place with room for the answer
        phase1 = one_pass(local, outputs=2)
        # The query's pass: transformers builds a mask once queries and keys differ in length, and
        # sdpa then repeats K and V to every query head, for the whole context, in every layer.
        repeat = 2 * shape.heads * shape.head_dim * (local + plan.query_tokens) * e
        phase2 = one_pass(plan.query_tokens, outputs=2) + int(repeat * TRANSIENT_MARGIN)
    elif plan.attention == Attention.RING:
        local = len(ZigzagLayout.from_plan(layout).positions(rank))
        kv_tokens = local + (room if host else 0)
        phase1 = one_pass(local, outputs=(world + 2) / 2 + 2, extra_kv=2 * (2 if world > 1 else 1))
        phase2 = one_pass(plan.query_tokens, outputs=3 + world)
    else:
        start, stop = layout.rank_span(rank)
        local = stop - start
        kv_tokens = local + (room if host else 0)
        own = layout.ranks[rank]
        largest = max((layout.blocks[i][1] - layout.blocks[i][0] for i in own), default=0)
        if plan.correction == Correction.DELTA and world > 1:
            largest = local  # every block of the rank in one layer-synchronous pass
        outputs = 3 if layout.anchor and any(i > 0 for i in own) else 2
        if plan.correction == Correction.DELTA:
            outputs += 2  # the exact rows' partials and their correction
        phase1 = one_pass(largest, outputs=outputs)
        phase2 = one_pass(plan.query_tokens, outputs=3 + world)
        anchor = _anchor_tokens(plan, rank, kv_bytes != e) * shape.kv_token_bytes(e)
    return MemoryEstimate(
        rank=rank,
        weights=shape.parameters * e,
        kv_cache=_kv_cache_bytes(shape, kv_tokens, room if host else 0, kv_bytes, e),
        anchor=anchor,
        phase1=phase1,
        phase2=phase2,
        workspace=CUDA_WORKSPACE if plan.device == "cuda" else 0,
    )


def _kv_cache_bytes(shape: ModelShape, tokens: int, room: int, kv_bytes: int, model_bytes: int) -> int:
    """A rank's KV cache: under fp8 the query/answer tail (``room``, the host's) stays in the
    model's dtype (``engine.cache``); otherwise every token is stored alike."""
    if kv_bytes == model_bytes or room == 0:
        return tokens * shape.kv_token_bytes(kv_bytes)
    return (tokens - room) * shape.kv_token_bytes(kv_bytes) + room * shape.kv_token_bytes(model_bytes)


def _anchor_tokens(plan: RunPlan, rank: int, cache_differs: bool) -> int:
    """Anchor tokens whose KV a rank holds apart from its own blocks during phase 1: computed (or
    received) where block 0 is elsewhere; sent from block 0 by rank 0 (kept until every layer is
    out); a copy beside block 0 where the cache stores another dtype than the model computes."""
    layout = plan.layout
    own = layout.ranks[rank]
    if not layout.rank_needs_anchor(rank) and not (own and own[0] == 0 and layout.anchor):
        return 0
    if own and own[0] != 0:
        return layout.anchor
    others_need = any(layout.rank_needs_anchor(r) for r in range(1, plan.world_size))
    sends = layout.anchor_shared and plan.world_size > 1 and others_need
    return layout.anchor if sends or cache_differs else 0


def estimate(plan: RunPlan, shape: ModelShape, kv_bytes: int | None = None) -> list[MemoryEstimate]:
    """Every rank's estimate (index = rank)."""
    return [estimate_rank(plan, shape, rank, kv_bytes) for rank in range(plan.world_size)]
