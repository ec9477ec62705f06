"""The run plan: what exactly a run will compute, decided once.

``make_run_plan`` takes the caller's ``RunSettings``, the exact token counts, the world size and
the model's window, and decides every open setting (block size, anchor, answer length, the
block-to-rank assignment, dtype). The CLI builds the plan, shows it (``--dry-run``, progress),
and sends it in the request; each rank checks it against what it sees (``check_plan``) and follows
it, never re-deciding. No torch here: the CLI imports it before any heavy import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import BadSettingError, BeyondLocalPositionsError, ContextTooLongError, EmptyInputError
from engine.plan import BlockPlan, CostModel, ZigzagLayout, default_block_size, plan_blocks
from engine.settings import (
    DEFAULT_MAX_TOKENS,
    MAX_AUTO_LOCAL_MULTIPLE,
    MIN_ANSWER_TOKENS,
    MIN_LOCAL_BLOCK,
    Attention,
    Correction,
    EngineOptions,
    GenerationSettings,
    KVDtype,
    Positions,
    RunSettings,
)

DTYPES = ("float32", "bfloat16", "float16")


def default_dtype(device: str) -> str:
    """float32 on CPU (exact, and bf16 matmuls are slow there); bfloat16 on GPU."""
    return "bfloat16" if device.startswith("cuda") else "float32"


@dataclass(frozen=True)
class RunPlan:
    """Everything a rank needs to know about the run besides the tokens and the weights."""

    attention: Attention
    positions: Positions
    context_tokens: int
    query_tokens: int  # the longest query
    block_size: int  # star: tokens per block; ring: per zigzag chunk; global: the whole context
    anchor_size: int  # tokens each block after the first is encoded behind (0: no anchor)
    world_size: int
    device: str
    dtype: str
    layout: BlockPlan  # blocks and which rank holds which
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    options: EngineOptions = field(default_factory=EngineOptions)
    window: int | None = None  # the model's position limit the plan was checked against
    correction: Correction = Correction.NONE  # phase 1's correction (star only; kernels.delta)
    delta_stride: int = 0  # Correction.DELTA: every this-many-th block row is computed exactly
    kv_dtype: KVDtype = KVDtype.MODEL  # how the context KV is stored (fp8: kernels.quant); never AUTO

    @property
    def kv_fp8(self) -> bool:
        return self.kv_dtype == KVDtype.FP8

    @property
    def blocks(self) -> int:
        return len(self.layout.blocks)

    def blocks_per_rank(self) -> list[int]:
        return self.layout.blocks_per_rank()

    def block_position(self, index: int) -> int:
        """The position of block ``index``'s first token: its index in the context (global), or
        right after the anchor for every block but the first (local)."""
        start = self.layout.blocks[index][0]
        return self.layout.anchor if self.positions == Positions.LOCAL and index > 0 else start

    @property
    def context_span(self) -> int:
        """Positions the context occupies: every token's own (global), or the longest
        ``[anchor, block]`` (local). The query starts here; the window must hold it and the answer."""
        return context_span(self.positions, self.layout)

    @property
    def max_tokens(self) -> int:
        """The answer's token limit (decided by ``make_run_plan``, never ``None`` here)."""
        assert self.generation.max_tokens is not None
        return self.generation.max_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        layout = dict(data["layout"])
        layout["blocks"] = tuple(tuple(b) for b in layout["blocks"])
        layout["ranks"] = tuple(tuple(r) for r in layout["ranks"])
        return cls(
            **{
                **data,
                "attention": Attention(data["attention"]),
                "positions": Positions(data["positions"]),
                "layout": BlockPlan(**layout),
                "generation": GenerationSettings.from_dict(data["generation"]),
                "options": EngineOptions.from_dict(data["options"]),
                "correction": Correction(data.get("correction", Correction.NONE)),
                "kv_dtype": KVDtype(data.get("kv_dtype", KVDtype.MODEL)),
            }
        )


def make_run_plan(
    settings: RunSettings,
    context_tokens: int,
    query_tokens: int,
    world_size: int,
    device: str = "cpu",
    window: int | None = None,
    cost: CostModel | None = None,
    dtype: str | None = None,
) -> RunPlan:
    """Decide every open setting of a run, or raise the engine error that says what to change.

    ``window`` (the model's position limit) is checked when known: the input is never truncated,
    and an answer limit the user did not set is lowered to the room left. ``cost`` weighs blocks
    for the rank assignment (``CostModel.for_config``); without it every token costs the same."""
    settings.generation.validate()
    settings.options.validate()
    attention = _choice(Attention, settings.attention)
    if context_tokens < 1:
        raise EmptyInputError("the context is empty: give it at least one token of text")
    if query_tokens < 1:
        raise EmptyInputError("the query is empty: give it at least one token of text")
    if world_size < 1:
        raise BadSettingError(f"world size must be at least 1 (got {world_size})")
    if attention == Attention.GLOBAL and world_size > 1:
        raise BadSettingError(
            f"global (dense) attention runs on one rank, not {world_size}; use --nproc 1 or star"
        )
    dtype = dtype or default_dtype(device)
    if dtype not in DTYPES:
        raise BadSettingError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    generation = settings.generation
    positions = _positions(settings, attention, context_tokens, query_tokens, window)
    layout = _layout(settings, attention, positions, context_tokens, query_tokens, world_size, window, cost)
    max_tokens = fit_max_tokens(
        context_span(positions, layout),
        query_tokens,
        generation.max_tokens,
        window,
        generation.default_max_tokens,
        context_tokens=context_tokens,
    )
    anchor = layout.anchor_size if attention == Attention.STAR else 0
    correction = _correction(settings, attention, positions, world_size)
    return RunPlan(
        attention=attention,
        positions=positions,
        context_tokens=context_tokens,
        query_tokens=query_tokens,
        block_size=layout.block_size,
        anchor_size=anchor,
        world_size=world_size,
        device=device,
        dtype=dtype,
        layout=layout,
        generation=GenerationSettings(**{**asdict(settings.generation), "max_tokens": max_tokens}),
        options=settings.options,
        window=window,
        correction=correction,
        delta_stride=settings.delta_stride if correction == Correction.DELTA else 0,
        kv_dtype=_kv_dtype(settings, attention, device, dtype, cost),
    )


def _kv_dtype(
    settings: RunSettings, attention: Attention, device: str, dtype: str, cost: CostModel | None
) -> KVDtype:
    """The KV storage asked for (``auto``: fp8 on CUDA for star and ring attention over a 16-bit
    model whose attention the fp8 kernel serves, else the model's dtype), or the error saying why
    it cannot run here."""
    kv_dtype = _choice(KVDtype, settings.kv_dtype)
    if kv_dtype == KVDtype.AUTO:
        fp8 = device.startswith("cuda") and attention != Attention.GLOBAL and dtype in ("bfloat16", "float16")
        fp8 = fp8 and (cost is None or cost.fp8_kernel)
        return KVDtype.FP8 if fp8 else KVDtype.MODEL
    if kv_dtype == KVDtype.FP8 and attention == Attention.GLOBAL:
        raise BadSettingError(
            "--kv-dtype fp8 stores star or ring attention's context cache; global (dense) attention "
            "keeps transformers' own cache (use --attention star, or --kv-dtype auto)"
        )
    return kv_dtype


def _correction(settings: RunSettings, attention: Attention, positions: Positions, world: int) -> Correction:
    """The phase-1 correction asked for, or the error saying why it cannot run here."""
    correction = _choice(Correction, settings.correction)
    if correction == Correction.NONE:
        return correction
    if attention != Attention.STAR:
        raise BadSettingError(
            f"--correction {correction} corrects star attention's phase 1; {attention} attention "
            "needs none (use --correction none)"
        )
    if positions != Positions.GLOBAL:
        raise BadSettingError(
            f"--correction {correction} needs global positions (under local positions the blocks "
            "share positions, so there is no exact attention to correct towards); use --positions global"
        )
    if settings.delta_stride < 1:
        raise BadSettingError(f"the delta stride must be at least 1 (got {settings.delta_stride})")
    return correction


def _choice(kind, value):
    """``value`` as a member of the enum ``kind``, or the error naming the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise BadSettingError(
            f"unknown {kind.__name__.lower()} mode {value!r}; choose one of {choices}"
        ) from None


def _positions(settings: RunSettings, attention: Attention, n: int, m: int, window: int | None) -> Positions:
    """The positions asked for, or (``None``) global where the input and the shortest useful
    answer fit the window, else local; local needs star attention."""
    if settings.positions is not None:
        positions = _choice(Positions, settings.positions)
    else:
        chosen = settings.generation.max_tokens
        answer = MIN_ANSWER_TOKENS if chosen is None else chosen
        fits = window is None or n + m + answer <= window
        positions = Positions.GLOBAL if fits or attention != Attention.STAR else Positions.LOCAL
        if positions == Positions.LOCAL and n + m > MAX_AUTO_LOCAL_MULTIPLE * window:
            raise BeyondLocalPositionsError(
                n + m + answer, window, n, m, answer, message=_beyond_local(n + m, window)
            )
    if positions == Positions.LOCAL and attention != Attention.STAR:
        raise BadSettingError(
            f"local positions need star attention (blocks behind an anchor), not {attention}; "
            "use --attention star or --positions global"
        )
    return positions


def _beyond_local(tokens: int, window: int) -> str:
    return (
        f"the input is {tokens:,} tokens, {tokens / window:.1f}x the model's window of {window:,}, "
        "past the length one encoding answers reliably (docs/long-inputs.md): answer by "
        "map-reduce over window-sized parts (--fallback map-reduce), narrow the input "
        "(--include/--exclude, fewer sources), use a model with a longer context (--model), or "
        "force --positions local"
    )


def _layout(
    settings: RunSettings,
    attention: Attention,
    positions: Positions,
    n: int,
    m: int,
    world: int,
    window: int | None,
    cost: CostModel | None,
) -> BlockPlan:
    if attention == Attention.GLOBAL:
        return BlockPlan(n, n, 0, ((0, n),), ((0,),))
    if attention == Attention.RING:
        if n < 2 * world:
            raise BadSettingError(f"ring mode needs at least {2 * world} context tokens (got {n})")
        return ZigzagLayout.build(n, world).as_plan()
    block_size, anchor_size = settings.block_size, settings.anchor_size
    if block_size is None:
        block_size = default_block_size(n, world)
        if positions == Positions.LOCAL and window is not None:
            block_size = min(block_size, local_block_size(settings, m, window))
    share = settings.options.share_anchor and world > 1
    return plan_blocks(n, block_size, anchor_size, world, cost, share_anchor=share)


def local_block_size(settings: RunSettings, query_tokens: int, window: int) -> int:
    """The largest block whose ``[anchor, block]``, the query and the answer fit the window (the
    anchor as long as the block unless set): local positions never leave the trained range."""
    generation = settings.generation
    answer = generation.max_tokens if generation.max_tokens is not None else generation.default_max_tokens
    room = window - query_tokens - answer
    anchor = settings.anchor_size
    size = room // 2 if anchor is None else room - anchor
    smallest = max(1, min(MIN_LOCAL_BLOCK, window // 8))
    if size < smallest:
        needed = query_tokens + answer + (anchor if anchor is not None else smallest) + smallest
        raise ContextTooLongError(
            needed,
            window,
            0,
            query_tokens,
            answer,
            message=f"the question ({query_tokens:,} tokens) and the answer ({answer:,}) leave no "
            f"room in the model's window of {window:,} for blocks of at least {smallest:,} tokens "
            "behind their anchor; shorten the question, lower --max-tokens or --anchor-size",
        )
    return size


def context_span(positions: Positions, layout: BlockPlan) -> int:
    """Positions the context occupies under ``positions`` (``RunPlan.context_span``)."""
    if positions != Positions.LOCAL or len(layout.blocks) == 1:
        return layout.context_tokens
    first = layout.blocks[0][1] - layout.blocks[0][0]
    return max(first, layout.anchor + max(stop - start for start, stop in layout.blocks[1:]))


def fit_max_tokens(
    context: int,
    query: int,
    max_tokens: int | None,
    window: int | None,
    default: int = DEFAULT_MAX_TOKENS,
    *,
    context_tokens: int | None = None,
) -> int:
    """The answer's token limit, given the positions the context occupies (``context``: its
    tokens, or under local positions its longest ``[anchor, block]``, with ``context_tokens`` its
    real length for the message). ``None`` (not chosen) is ``default`` lowered to the
    room the window leaves; a chosen limit is honoured or refused. The input is never truncated:
    if it does not fit, the error names both numbers and the ways out."""
    chosen = max_tokens is not None
    limit = max_tokens if max_tokens is not None else default
    if window is None:
        return limit
    used = context + query
    room = window - used
    if used + limit <= window:
        return limit
    if not chosen and room >= MIN_ANSWER_TOKENS:
        return room
    message = None
    if context_tokens is not None and context_tokens != context:  # local positions: the blocks are
        message = (  # what does not fit, not the document
            f"a block with its anchor ({context:,} positions), the question ({query:,}) and the "
            f"answer ({limit:,}) need {used + limit:,} positions, beyond the model's window of "
            f"{window:,}; use a smaller --block-size or --anchor-size, or a lower --max-tokens"
        )
    elif room < MIN_ANSWER_TOKENS and not chosen:  # the input itself is the problem: no --max-tokens advice
        message = (
            f"the input is {used:,} tokens (documents {context:,} + question {query:,}), beyond the "
            f"model's window of {window:,} tokens; shorten it (--include/--exclude, fewer sources) "
            f"or use a model with a longer context (--model)"
        )
    raise ContextTooLongError(used + limit, window, context, query, limit, message=message)


def check_plan(plan: RunPlan, context_tokens: int, query_tokens: int, world_size: int, window: int | None):
    """A rank's check that the plan it was sent fits what it holds; raises ``BadSettingError``
    naming the difference (a plan made for other tokens, ranks or model is never followed)."""
    seen = {"context tokens": context_tokens, "ranks": world_size}
    planned = {"context tokens": plan.context_tokens, "ranks": plan.world_size}
    for what, value in seen.items():
        if planned[what] != value:
            raise BadSettingError(f"the run plan was made for {planned[what]} {what}, this run has {value}")
    if query_tokens > plan.query_tokens:
        raise BadSettingError(
            f"the run plan was made for queries of up to {plan.query_tokens} tokens, not {query_tokens}"
        )
    fit_max_tokens(plan.context_span, query_tokens, plan.max_tokens, window)  # raises if it does not fit
