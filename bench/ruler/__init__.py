"""Offline, seeded RULER-style long-context tasks (Hsieh et al., "RULER", 2024) for starcli's
accuracy benchmark: haystacks, needles, suites of questions and RULER's string-match scoring."""

from bench.ruler.scoring import string_match_all, string_match_part
from bench.ruler.tasks import SUITES, TASKS, Question, Sample, make_sample

__all__ = ["SUITES", "TASKS", "Question", "Sample", "make_sample", "string_match_all", "string_match_part"]
