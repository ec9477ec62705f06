"""What a caller may choose for a run, with every default in one place; no torch, so the CLI can
import it for ``--help`` and usage errors at no cost.

``RunSettings`` is what the user asked for (``None`` meaning "decide from the input");
``engine.runplan.make_run_plan`` turns it, the exact token counts and the world size into the one
frozen ``RunPlan`` every rank follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import BadSettingError


class Attention(StrEnum):
    """How the context is encoded; each is a sibling module under ``engine.modes``."""

    STAR = "star"  # Star Attention (the paper): blocks behind an anchor, exact phase 2
    GLOBAL = "global"  # dense causal attention, transformers' own sdpa, one rank: the baseline
    RING = "ring"  # exact causal ring attention across ranks (zigzag), star's phase 2


class Positions(StrEnum):
    """Which position each context token gets (``RunSettings.positions=None``: ``make_run_plan``
    picks ``global`` when the input fits the model's window, else ``local``)."""

    GLOBAL = "global"  # the token's index in the context (the paper; must fit the model's window)
    # Window-local (parallel context windows, APE): the anchor at 0..a-1, every later block at
    # a..a+b-1, the query right after the longest [anchor, block]; star attention only. Phase 1
    # never leaves the trained range, phase 2 attends to every block: inputs beyond the window.
    LOCAL = "local"


class Correction(StrEnum):
    """What corrects Star's phase-1 approximation (star attention only)."""

    NONE = "none"  # the paper: each block sees the anchor and itself
    # Delta Attention (Willette, Lee, Hwang 2025): exact attention for every ``delta_stride``-th
    # row of a block over all earlier context, its difference to Star's output added to the rows
    # after it (kernels.delta; over several ranks engine.delta_ranks).
    DELTA = "delta"


class KVDtype(StrEnum):
    """How the context's KV cache is stored (phase 1 writes it, phase 2 and decoding read it)."""

    # fp8 where it pays and was measured to cost nothing: on CUDA, for star and ring attention over
    # a bf16/fp16 model (docs/accuracy.md: 99% of dense over 627 needle questions, p = 0.68; half
    # the KV memory: 1M tokens fit one H200). Elsewhere the model's dtype (``make_run_plan``).
    AUTO = "auto"
    MODEL = "model"  # the model's dtype: exact
    # float8 e4m3 with one scale per token and KV head (kernels.quant): half of bf16's bytes, so
    # twice the context per GPU and half the KV read per decode step; not exact. Star and ring
    # attention only (dense attention keeps transformers' own cache).
    FP8 = "fp8"


class Kernels(StrEnum):
    """Attention kernels: the fastest for the device, or float32 math everywhere (debugging)."""

    AUTO = "auto"
    REFERENCE = "reference"


DEFAULT_MAX_TOKENS = 512  # lowered to the room left in the window when the user did not ask for more
# Against answers that loop (issue 20), chosen by measurement (docs/quality.md): the loop stop
# (engine.generate) is on; the repetition penalty (llama.cpp's repeat_penalty over repeat_last_n
# tokens of the answer, never the document) is off by default, as llama.cpp's is today: at 1.1
# it changed numbers (SmolLM2 writes digits as tokens: "255" became "256") and pushed answers
# into loops that vary a word each time; off, every answer is a prefix of greedy generate's.
DEFAULT_REPETITION_PENALTY = 1.0
REPETITION_WINDOW = 64
MIN_ANSWER_TOKENS = 16  # below this much room an answer is not worth generating
# Local positions are chosen on their own only up to this multiple of the window (the input
# fits, its answer does not). Past it the default model's needle accuracy with local positions
# falls to about 2/3 of the within-window rate at 2x, 2/5 at 4x and nothing from 8x, while the
# CLI's map-reduce over window-sized parts held 56-91% from 2x to 16x on held-out needles
# (docs/long-inputs.md): past it the CLI maps and reduces (or refuses: --fallback refuse), and
# local positions run only when asked for.
MAX_AUTO_LOCAL_MULTIPLE = 1.0
MIN_LOCAL_BLOCK = 256  # local positions: below this, the window is too small for blocks at all
MIN_BLOCK_SIZE = 128  # the CLI's floor: a block is a forward pass, so tiny blocks only cost time
DEFAULT_DELTA_STRIDE = 64  # the paper's gamma: ~1.5% of a block's query rows computed exactly
# Phase 1 runs the MLP over at most this many tokens at a time (engine.chunked): its gate, up and
# product (3 x tokens x intermediate) stay 0.66 GiB at the 8B shape in bf16 whatever the block,
# against 5.25 GiB for a whole 64K block; GEMMs of 8K rows still run at the matmul rate.
MLP_CHUNK_TOKENS = 8192
DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0  # long phase-1 blocks on slow CPUs must fit inside


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling and stopping. ``max_tokens=None``: ``default_max_tokens``, fitted to the window.

    ``repetition_penalty`` divides the logit of every token among the answer's last
    ``REPETITION_WINDOW`` tokens (1 = off); ``no_repeat_ngram`` (0 = off) forbids a token that
    would repeat an n-gram already in the answer; ``stop_on_repetition`` ends an answer whose
    tail has become a loop (``engine.generate.repeating_tail``), with stop reason ``repetition``.
    """

    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY
    no_repeat_ngram: int = 0
    stop_on_repetition: bool = True
    default_max_tokens: int = DEFAULT_MAX_TOKENS  # the limit when max_tokens is not chosen

    def validate(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BadSettingError(f"max tokens must be at least 1 (got {self.max_tokens})")
        if self.temperature < 0:
            raise BadSettingError(f"temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise BadSettingError(f"top-p must be in (0, 1] (got {self.top_p})")
        if not self.repetition_penalty >= 1:
            raise BadSettingError(f"repetition penalty must be at least 1 (got {self.repetition_penalty})")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise BadSettingError(
                f"no-repeat n-gram size must be 0 (off) or at least 2 (got {self.no_repeat_ngram})"
            )
        if self.default_max_tokens < 1:
            raise BadSettingError(f"default max tokens must be at least 1 (got {self.default_max_tokens})")

    @classmethod
    def plain(cls, **kwargs: Any) -> GenerationSettings:
        """The model's own choices, as transformers' ``generate`` makes them with no logits
        processors: no repetition penalty, no loop stop. For tests of exactness against the
        dense model and benchmarks that measure attention, not the answer rules."""
        return cls(**{"repetition_penalty": 1.0, "stop_on_repetition": False, **kwargs})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        return cls(**{**data, "stop": tuple(data.get("stop", ()))})


@dataclass(frozen=True)
class EngineOptions:
    """How the engine computes, never what: every option gives the same tokens (up to floating-point
    rounding). Sent to every rank in the request, never through inherited environment variables."""

    share_anchor: bool = True  # rank 0 sends the anchor's KV instead of every rank recomputing it
    cuda_graphs: bool = True  # replay the decode step as one CUDA graph (CUDA only)
    compile: bool = False  # torch.compile the norm/MLP/attention modules (CUDA only; slow first use)
    fused: bool = True  # fused Triton RMSNorm / SiLU-mul / RoPE (CUDA only; off when compiling)
    kernels: Kernels = Kernels.AUTO
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S
    # Refuse, before any weights load, a run whose estimated peak memory exceeds what its device
    # has free (engine.memory); off: run it anyway (an estimate can be wrong for an unusual model).
    memory_check: bool = True

    def validate(self) -> None:
        if not self.collective_timeout_s > 0:
            seconds = self.collective_timeout_s
            raise BadSettingError(
                f"the collective timeout must be a positive number of seconds (got {seconds})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        return cls(**{**data, "kernels": Kernels(data.get("kernels", Kernels.AUTO))})


@dataclass(frozen=True)
class RunSettings:
    """What the caller asked for; ``None`` means "decide from the input" (``make_run_plan``)."""

    attention: Attention = Attention.STAR
    positions: Positions | None = None  # None: global if the input fits the window, else local
    block_size: int | None = None  # None: engine.plan.default_block_size
    anchor_size: int | None = None  # None: as long as a block (the paper's choice)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    options: EngineOptions = field(default_factory=EngineOptions)
    correction: Correction = Correction.NONE
    delta_stride: int = DEFAULT_DELTA_STRIDE  # rows per exact row under Correction.DELTA
    kv_dtype: KVDtype = KVDtype.AUTO

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        return cls(
            attention=Attention(data.get("attention", Attention.STAR)),
            positions=Positions(data["positions"]) if data.get("positions") else None,
            block_size=data.get("block_size"),
            anchor_size=data.get("anchor_size"),
            generation=GenerationSettings.from_dict(data.get("generation", {})),
            options=EngineOptions.from_dict(data.get("options", {})),
            correction=Correction(data.get("correction", Correction.NONE)),
            delta_stride=data.get("delta_stride", DEFAULT_DELTA_STRIDE),
            kv_dtype=KVDtype(data.get("kv_dtype", KVDtype.AUTO)),
        )
