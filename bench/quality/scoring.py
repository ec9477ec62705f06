"""Scoring: is an answer right, wrong, or a loop? Pure functions, no model, no torch.

An answer is compared after NFKC normalization (PDF text carries ligatures such as "ﬁ", which the
model copies), case-insensitively. A question is right when any of its ``accept`` patterns is
found; a summary when every ``require`` group has a match. An answer *looped* when it ran into its
token limit while repeating itself: the engine said so (stop reason ``repetition``), or it stopped
at ``max_tokens`` with some run of ``LOOP_NGRAM`` tokens found ``LOOP_TIMES`` times or more.
A loop is reported apart from a wrong answer, whether or not the right string is somewhere inside.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

LOOP_NGRAM = 8
LOOP_TIMES = 3
RIGHT, WRONG, LOOPED = "right", "wrong", "looped"
VERDICTS = (RIGHT, WRONG, LOOPED)


def normalize(text: str) -> str:
    """NFKC (ligatures and compatibility forms) with every run of white space as one space."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def found(pattern: str, text: str) -> bool:
    return re.search(pattern, normalize(text), flags=re.IGNORECASE) is not None


def accepted(answer: str, accept: Sequence[str]) -> bool:
    """A question's answer is right when any accepted pattern is found in it."""
    return any(found(pattern, answer) for pattern in accept)


def covers(answer: str, require: Sequence[Sequence[str]]) -> bool:
    """A summary is right when each group of keywords has at least one match."""
    return all(any(found(pattern, answer) for pattern in group) for group in require)


def repeats(ids: Sequence[int], n: int = LOOP_NGRAM, times: int = LOOP_TIMES) -> bool:
    """Whether some run of ``n`` tokens occurs ``times`` times or more (overlaps count)."""
    if len(ids) < n:
        return False
    counts = Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))
    return max(counts.values()) >= times


def looped(stop_reason: str, ids: Sequence[int]) -> bool:
    """The answer hit its limit while repeating itself (or the engine stopped it for repeating)."""
    return stop_reason == "repetition" or (stop_reason == "max_tokens" and repeats(ids))


def verdict(matched: bool, is_loop: bool) -> str:
    return LOOPED if is_loop else RIGHT if matched else WRONG
