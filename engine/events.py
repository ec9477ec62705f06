"""Events the engine yields while it works; JSON lines carry them between processes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass
class Started(Event):
    """A rank process is up; the launcher keeps its pid to make sure none outlives the job."""

    kind: ClassVar[str] = "started"
    rank: int
    pid: int
    world_size: int
    node: int = 0  # torchrun's group rank: which machine of a multi-node job it runs on


@dataclass
class Loaded(Event):
    """A rank has its model weights in memory (``seconds`` to load them) and starts phase 1."""

    kind: ClassVar[str] = "loaded"
    rank: int
    seconds: float


@dataclass
class Progress(Event):
    """A unit of phase 1 finished: ``stage`` is ``anchor`` (this rank's anchor) or ``phase1``
    (``done`` of this rank's ``total`` blocks)."""

    kind: ClassVar[str] = "progress"
    stage: str
    done: int
    total: int
    rank: int = 0
    tokens: int = 0


@dataclass
class ContextEncoded(Event):
    """Phase 1 finished on every rank (emitted by the query host)."""

    kind: ClassVar[str] = "context_encoded"
    context_tokens: int
    blocks: int
    blocks_per_rank: list[int]
    seconds: float
    context_cache: str = "off"  # hit: loaded from a saved context (seconds to load); miss; off


@dataclass
class QueryStarted(Event):
    kind: ClassVar[str] = "query_started"
    query: int
    query_tokens: int


@dataclass
class Token(Event):
    """New answer text; ``text`` may be empty while a multi-byte character or stop string is pending."""

    kind: ClassVar[str] = "token"
    query: int
    token_id: int
    text: str


@dataclass
class Stats(Event):
    """Final figures for one query."""

    kind: ClassVar[str] = "stats"
    query: int
    answer: str
    mode: str
    world_size: int
    block_size: int
    anchor_size: int
    context_tokens: int
    query_tokens: int
    generated_tokens: int
    stop_reason: str
    load_s: float
    context_encoding_s: float
    ttft_s: float
    decode_s: float
    decode_tokens_per_s: float
    blocks_per_rank: list[int] = field(default_factory=list)
    positions: str = "global"  # the positions the context was encoded at (RunPlan.positions)
    graph_capture_s: float = 0.0  # part of decode_s spent capturing the CUDA graph (once per query)
    graph_fallback: str | None = None  # why decoding ran without a CUDA graph (None: it had one)
    context_cache: str = "off"  # hit (context_encoding_s is then the load), miss (encoded) or off
    context_save_s: float = 0.0  # seconds spent saving the encoded context (after a miss)
    tail_tokens: int = 0  # positions after the context used once this answer is in (a follow-up's start)


@dataclass
class Joined(Event):
    """The ranks of a multi-node job found each other: ``hosts[r]`` is rank r's machine, so that a
    launcher can name the machine of a node it loses."""

    kind: ClassVar[str] = "joined"
    hosts: list[str]


@dataclass
class Failure(Event):
    """A rank failed; the launcher turns this into one ``Error:`` line."""

    kind: ClassVar[str] = "error"
    rank: int
    phase: str
    error_type: str
    message: str


def phase_after(event: Event, phase: str) -> str:
    """The phase a rank is in once ``event`` has happened, as failure messages name it: ``startup``,
    ``model load``, ``phase 1``, ``phase 2`` or ``decode`` (one mapping for ranks and launcher);
    a rank in ``model load`` stays there until its ``Loaded``."""
    if isinstance(event, (Loaded, Progress)):
        return "phase 1"
    if isinstance(event, QueryStarted):
        return "phase 2"
    if isinstance(event, Token):
        return "decode"
    return phase


_KINDS = {
    cls.kind: cls
    for cls in (Started, Loaded, Progress, ContextEncoded, QueryStarted, Token, Stats, Joined, Failure)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form (the launcher side of the event stream)."""
    cls = _KINDS[data["event"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
