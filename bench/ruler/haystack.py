"""Haystacks and needles: the filler text, where needles go, and fitting a prompt to a token budget.

A haystack is a list of *units* (sentences). Needles are inserted between units at a relative
depth; the number of units is then searched so that the whole prompt, measured with the model's
own tokenizer, is as long as possible without passing the target.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench.ruler.words import ADJECTIVE_LIST, NOUN_LIST, VERB_LIST

# RULER's "noise" haystack, one sentence per unit.
NOISE_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)

# Essay-like filler: varied sentences from templates, standing in for RULER's Paul Graham essays.
_ESSAY_TEMPLATES = (
    "Most people who {v} a {n} never stop to ask why the {n2} matters.",
    "The {a} {n} taught me more about patience than any {n2} ever did.",
    "If you want to {v} well, start with a {a} {n} and keep going.",
    "It is tempting to think that a {n} is just a {a} kind of {n2}.",
    "When I was young I thought the {n} was {a}, but it was only {a2}.",
    "A good way to {v} is to watch someone else {v2} a {n} first.",
    "Nobody plans to build a {a} {n}; it happens while you {v} something else.",
    "The hard part is not to {v} the {n} but to notice the {a} {n2} beside it.",
    "Some of the best ideas look {a} at first, like a {n} in a {n2}.",
    "You can learn a lot about a town from its {n} and its {a} {n2}.",
    "Startups rarely fail because the {n} was {a}; they fail because nobody would {v} it.",
    "There is a {a} difference between a {n} that works and a {n2} that only looks right.",
    "Whenever the {n} gets {a}, people {v} it and move on.",
    "I once spent a whole summer trying to {v} a {a} {n}.",
    "The reason is simple: a {n} that nobody can {v} is not worth much.",
    "Writing is like trying to {v} a {n} in the dark: slow, {a} and strangely rewarding.",
    "Ask any {n} maker and they will tell you the {n2} is the {a} part.",
    "What surprised me most was how {a} the {n} became once we stopped trying to {v} it.",
    "In the long run, a {a} {n} beats a clever {n2}.",
    "Every {n} has a story, even the {a} one by the {n2}.",
)


def noise_units(count: int, rng: random.Random) -> list[str]:
    return [NOISE_SENTENCES[i % len(NOISE_SENTENCES)] for i in range(count)]


def essay_units(count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        template = rng.choice(_ESSAY_TEMPLATES)
        n, n2 = rng.sample(NOUN_LIST, 2)
        a, a2 = rng.sample(ADJECTIVE_LIST, 2)
        v, v2 = rng.sample(VERB_LIST, 2)
        out.append(template.format(n=n, n2=n2, a=a, a2=a2, v=v, v2=v2))
    return out


# --- values and keys ----------------------------------------------------------------------------
def random_number(rng: random.Random) -> str:
    return str(rng.randint(1_000_000, 9_999_999))


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_key(rng: random.Random) -> str:
    """RULER's keys are adjective-noun pairs such as ``abundant-grape``."""
    return f"{rng.choice(ADJECTIVE_LIST)}-{rng.choice(NOUN_LIST)}"


def random_var(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=5))


def unique(draw: Callable[[random.Random], str], rng: random.Random, taken: set[str]) -> str:
    """A fresh value from ``draw`` that is not in ``taken`` (and is then added to it)."""
    while True:
        value = draw(rng)
        if value not in taken:
            taken.add(value)
            return value


def stratified_depths(count: int, rng: random.Random, low: float = 0.02, high: float = 0.98) -> list[float]:
    """``count`` depths, one in each equal slice of ``[low, high]``, in shuffled order: needles
    land at every depth (and so in every Star block) rather than where chance puts them."""
    width = (high - low) / max(count, 1)
    depths = [low + width * (i + rng.uniform(0.1, 0.9)) for i in range(count)]
    rng.shuffle(depths)
    return depths


# --- composition --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Needle:
    text: str
    depth: float  # 0 = start of the haystack, 1 = its end


def compose(units: list[str], needles: list[Needle]) -> str:
    """Join ``units`` with each needle inserted before unit ``round(depth * len(units))``;
    needles at the same place keep their given order."""
    slots: dict[int, list[str]] = {}
    for needle in needles:
        slots.setdefault(round(needle.depth * len(units)), []).append(needle.text)
    parts: list[str] = []
    for i in range(len(units) + 1):
        parts.extend(slots.get(i, []))
        if i < len(units):
            parts.append(units[i])
    return " ".join(parts)


def fit(build: Callable[[int], int], lo: int, hi: int) -> int:
    """Largest ``k`` in ``[lo, hi]`` with ``build(k) <= 0`` (``build`` grows with ``k``); ``lo`` if none."""
    best = lo
    while lo <= hi:
        mid = (lo + hi) // 2
        if build(mid) <= 0:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best
