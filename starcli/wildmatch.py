"""gitignore patterns, matched in bounded time whatever a ``.gitignore`` holds.

pathspec turns each pattern into a regular expression with one ``[^/]*`` per ``*``; Python's
``re`` backtracks over them, so the line ``a*a*…a*b`` (22 ``a*``) against a 60-character name
never finished, where git's own wildmatch takes milliseconds. Patterns with more than
``MAX_BACKTRACKING_QUANTIFIERS`` unbounded quantifiers are matched by RE2 instead (google-re2, the
engine pathspec itself offers as a backend): linear in the path, and with the same leftmost-first
match and groups as ``re``, so pathspec's rules (last match wins, directory marks) are unchanged.
The common patterns (``*.log``, ``build/``) stay on ``re``, which is faster to call.

pathspec's own RE2 backend (which it picks by default once google-re2 is installed, so the backend
is named here) compiles every pattern into one set, which fails (and logs to stderr) past about a
thousand patterns and ranks directory matches differently; one expression per pattern does not.
A pattern longer than ``MAX_PATTERN_CHARS`` or with more than ``MAX_WILDCARDS`` wildcards is not
applied, and said so: RE2 runs out of its memory budget on such patterns and then logs to stderr,
and no real ignore file holds them.
"""

from __future__ import annotations

import re
import warnings

import pathspec
import re2

MAX_BACKTRACKING_QUANTIFIERS = 2  # ``(?:.+/)?`` and one ``[^/]*``, as in ``*.log``
MAX_PATTERN_CHARS = 1024
MAX_WILDCARDS = 64
_QUANTIFIER = re.compile(r"(?<!\\)[*+]")
BACKEND = "simple"  # pathspec's loop over patterns, each matched by its own regex object


class BadPattern(ValueError):
    """A glob that gitignore syntax rejects."""


def gitignore_spec(lines: list[str], *, strict: bool = False) -> tuple[pathspec.GitIgnoreSpec, list[str]]:
    """The spec of ``lines`` and the patterns left out (too long or with too many wildcards).

    A line gitignore syntax rejects is dropped, as git drops it; with ``strict`` (``--include``
    and ``--exclude``, which the user typed) it is a ``BadPattern``, and so is one left out."""
    patterns, left_out = [], []
    for line in lines:
        if len(line) > MAX_PATTERN_CHARS or line.count("*") + line.count("?") > MAX_WILDCARDS:
            if strict:
                raise BadPattern(f"pattern too long or with too many wildcards: {line[:40]}…")
            left_out.append(line)
            continue
        try:
            with warnings.catch_warnings():  # re's FutureWarning on a "[[" inside a class
                warnings.simplefilter("ignore")
                [pattern] = pathspec.GitIgnoreSpec.from_lines([line], backend=BACKEND).patterns
        except Exception as exc:  # noqa: BLE001 - pathspec's error types vary by version
            if strict:
                raise BadPattern(f"{exc}") from exc
            continue
        patterns.append(_bounded(pattern))
    return pathspec.GitIgnoreSpec(patterns, backend=BACKEND), left_out


def _bounded(pattern):
    """The pattern itself, or a copy matched by RE2 when ``re`` could backtrack without bound."""
    regex = getattr(pattern, "regex", None)
    if regex is None or len(_QUANTIFIER.findall(regex.pattern)) <= MAX_BACKTRACKING_QUANTIFIERS:
        return pattern
    linear = pathspec.RegexPattern(re2.compile(regex.pattern), pattern.include)
    linear.pattern = pattern.pattern  # the line as written, for the reasons shown to the user
    return linear
