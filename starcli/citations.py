"""Citations: line marks the model can cite, and the answer's citations checked against the sources.

The context gives PDFs a ``[page N]`` marker per page (``starcli.pdf``) and every other document a
``[line N]`` mark at the start of every ``LINE_MARK_EVERY``-th line (``mark_lines``): about 3 % more
tokens on samples/ (docs/citations.md), where a number on every line would cost a third more.
The question asks the model to cite ``[page N]`` or ``path:line``. ``find_citations`` reads the
answer's citations back (``path:line``, ``path:line-line``, ``path [line N]``, ``[page N]``,
``path [page N]``, ``path, page N``, ``path p. N``) and checks each: the source exists, the page or
line exists, and a quotation on the same line of the answer (``"..."``) is found on that page or
near that line (within the marks' spacing). What fails is returned as unverified with the reason,
never passed on as fact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from starcli.documents import Document

LINE_MARK_EVERY = 10
_MARK = "[line {}] "
_PAGE = re.compile(r"^\[page (\d+)\](?: \(no text\))?$", re.MULTILINE)
_PATH = r"(?P<path>(?:<stdin>|[\w.~/-]*[\w-]\.[A-Za-z0-9]+|[\w.~-]*/[\w.~/-]+|[A-Z][A-Za-z]+file))"
_PATTERNS = (
    re.compile(_PATH + r":(?P<line>\d+)(?:-(?P<end>\d+))?"),
    re.compile(_PATH + r"?\s*\[line (?P<line>\d+)\]"),
    re.compile(_PATH + r"?,?\s*\[page (?P<page>\d+)\]"),
    re.compile(_PATH + r",?\s+(?:page|p\.)\s*(?P<page>\d+)\b", re.IGNORECASE),
)
_QUOTE = re.compile(r"[\"“]([^\"”\n]{3,}?)[\"”]")


@dataclass(frozen=True)
class Citation:
    text: str  # as written in the answer
    path: str | None  # the source it names (as shown in the context), None if none matches
    page: int | None
    line: int | None
    verified: bool
    quote: str | None = None
    reason: str | None = None  # why it is not verified

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def mark_lines(text: str, every: int = LINE_MARK_EVERY) -> str:
    """``text`` with ``[line N] `` before every ``every``-th line (line 1 is the header's)."""
    lines = text.split("\n")
    for index in range(every - 1, len(lines), every):
        if lines[index] or index < len(lines) - 1:
            lines[index] = _MARK.format(index + 1) + lines[index]
    return "\n".join(lines)


def find_citations(answer: str, documents: Sequence[Document]) -> list[Citation]:
    """Every citation in ``answer``, in order, each checked against ``documents``."""
    found: list[tuple[int, int, dict]] = []
    for pattern in _PATTERNS:
        for match in pattern.finditer(answer):
            if any(start <= match.start() < end or start < match.end() <= end for start, end, _ in found):
                continue  # the same words, read by an earlier (more specific) pattern
            found.append((match.start(), match.end(), match.groupdict()))
    found.sort(key=lambda f: f[0])
    citations = []
    for index, (start, end, groups) in enumerate(found):
        after_previous = max(answer.rfind("\n", 0, start) + 1, found[index - 1][1] if index else 0)
        line_end = answer.find("\n", end)
        bounds = [line_end if line_end >= 0 else len(answer)] + [f[0] for f in found[index + 1 : index + 2]]
        before_next = min(bounds)
        quote = _quote(answer[after_previous:start], answer[end:before_next])
        citation = _check(answer[start:end].strip(), groups, quote, documents)
        if citation is not None:
            citations.append(citation)
    return citations


def _quote(before: str, after: str) -> str | None:
    """The quotation a citation vouches for: the last one between the previous citation (or the
    start of its line) and it, else the first one after it before the next citation."""
    quotes = _QUOTE.findall(before)
    if quotes:
        return quotes[-1].strip()
    quotes = _QUOTE.findall(after)
    return quotes[0].strip() if quotes else None


def _check(text: str, groups: dict, quote: str | None, documents: Sequence[Document]) -> Citation | None:
    page = int(groups["page"]) if groups.get("page") else None
    line = int(groups["line"]) if groups.get("line") else None
    named = groups.get("path")
    candidates = _sources(named, documents, want_pdf=page is not None)
    if named and not candidates:
        if page is None and "/" not in named and "." not in named:
            return None  # "Note:12" and the like: not a file name
        return Citation(text, named, page, line, False, quote, f"no source named {named}")
    if not candidates:
        return Citation(text, None, page, line, False, quote, "no source it could refer to")
    reason = None
    for doc in candidates:
        reason = _locate(doc, page, line, quote)
        if reason is None:
            return Citation(text, doc.path, page, line, True, quote)
    path = candidates[0].path if len(candidates) == 1 else None
    return Citation(text, path, page, line, False, quote, reason)


def _sources(named: str | None, documents: Sequence[Document], *, want_pdf: bool) -> list[Document]:
    """The documents a citation may mean: the one it names (exactly, or by its tail: ``server.py``
    for ``repo/pebble/server.py``), or with no name, every PDF for a page and every other
    document for a line."""
    if named:
        exact = [d for d in documents if d.path == named]
        return exact or [d for d in documents if d.path.endswith("/" + named.lstrip("./"))]
    return [d for d in documents if (d.kind == "pdf") == want_pdf]


def _locate(doc: Document, page: int | None, line: int | None, quote: str | None) -> str | None:
    """None when the page or line exists in ``doc`` (and holds the quote, if any), else why not."""
    if page is not None:
        pages = _pages(doc)
        if page not in pages:
            return f"{doc.path} has no page {page}" if pages else f"{doc.path} has no pages"
        where = pages[page]
    else:
        lines = doc.text.splitlines()
        if line is None or not 1 <= line <= len(lines):
            return f"{doc.path} has no line {line} (it has {len(lines)})"
        low, high = max(line - LINE_MARK_EVERY, 1), min(line + LINE_MARK_EVERY, len(lines))
        where = "\n".join(lines[low - 1 : high])
    if quote and _normal(quote) not in _normal(where):
        at = f"page {page}" if page is not None else f"lines {low}-{high}"
        return f"the quoted words are not in {doc.path} at {at}"
    return None


def _pages(doc: Document) -> dict[int, str]:
    if doc.kind != "pdf":
        return {}
    marks = list(_PAGE.finditer(doc.text))
    return {
        int(m.group(1)): doc.text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(doc.text)]
        for i, m in enumerate(marks)
    }


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def file_url(citation: Citation) -> str | None:
    """A ``file://`` link to the cited file (for a terminal's OSC 8 hyperlink), if it is a file."""
    if citation.path is None or citation.path == "<stdin>" or not os.path.isfile(citation.path):
        return None
    return Path(citation.path).resolve().as_uri()
