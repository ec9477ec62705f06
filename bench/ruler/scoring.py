"""RULER's scoring: case-insensitive string matching of references against the prediction.

``string_match_all`` (every synthetic RULER task): the fraction of references found in the
prediction. ``string_match_part`` (RULER's QA tasks, where any one of several references is
right): 1 if any reference is found. RULER reports the mean over samples times 100.
"""

from __future__ import annotations

import re

_NON_PRINTABLE = re.compile(r"[\x00-\x1f]")


def postprocess(prediction: str) -> str:
    """RULER's ``postprocess_pred``: control characters become newlines, ends trimmed."""
    return _NON_PRINTABLE.sub("\n", prediction).strip()


def string_match_all(prediction: str, references: list[str]) -> float:
    text = postprocess(prediction).lower()
    return sum(ref.lower() in text for ref in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    text = postprocess(prediction).lower()
    return float(any(ref.lower() in text for ref in references))


METRICS = {"all": string_match_all, "part": string_match_part}
