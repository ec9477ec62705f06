"""PDF text through pypdf: one block per page behind a ``[page N]`` marker.

pypdf is lenient with damaged files and says so through ``logging`` and ``warnings``; we keep
that chatter off the user's stderr and turn every failure into a ``PdfProblem`` with a kind of
skip and a short reason (for the skipped list) and a hint (for the error a directly named PDF gets).

A few kilobytes of PDF can hold a page whose content takes minutes to extract and yields millions
of characters (a 17 KB file of 100 pages sharing one 1 MB content stream took 388 s and 1.7 GB).
So extraction is bounded per page (time, decoded content bytes, characters) and per file (time,
characters); a page past a bound is skipped with the reason, the other pages are kept, and a page
that shares its content stream with an earlier one is not extracted twice. Runs of pages without
text collapse into one marker (``[pages 3–2000] (no text)``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from starcli.documents import SkipKind

PAGE_SECONDS = 5.0  # extracting one page (a typical page takes milliseconds)
FILE_SECONDS = 60.0  # all pages of one file
PAGE_CONTENT_BYTES = 8 << 20  # a page's decoded content stream (text-heavy pages hold ~50 KB)
PAGE_CHARS = 200_000  # text from one page (a dense page has ~5,000 characters)
FILE_CHARS = 64 << 20  # text from one file


class PdfProblem(Exception):
    """The PDF gives no text: ``kind`` says why (``note`` adds what varies), ``reason`` is short,
    ``hint`` says what to do."""

    def __init__(self, kind: SkipKind, hint: str, *, note: str = ""):
        self.kind, self.note, self.hint = kind, note, hint
        self.reason = kind.reason(note=note)
        super().__init__(self.reason)


@dataclass
class PdfText:
    text: str
    pages: int
    empty_pages: list[int] = field(default_factory=list)  # 1-based, no text layer
    failed_pages: list[int] = field(default_factory=list)  # 1-based, extraction raised
    skipped_pages: dict[int, str] = field(default_factory=dict)  # 1-based: past a bound, and why


class _OutOfTime(BaseException):
    """A page's time ran out (a BaseException: pypdf's own ``except Exception`` must not eat it)."""


class _TooMuchText(BaseException):
    """A page's text passed ``PAGE_CHARS`` while it was being extracted."""


def page_marker(number: int) -> str:
    return f"[page {number}]"


def _run_marker(first: int, last: int) -> str:
    return page_marker(first) if first == last else f"[pages {first}–{last}]"


def extract_pdf(data: bytes) -> PdfText:
    """Text of every page with page markers; ``PdfProblem`` when there is none to be had."""
    if b"%PDF-" not in data[:1024]:
        raise PdfProblem(
            SkipKind.PDF_MALFORMED, "check that the file really is a PDF", note="no %PDF- header"
        )
    with _quiet_pypdf():
        try:
            from pypdf import PdfReader
            from pypdf.errors import DependencyError
        except ImportError as exc:
            raise PdfProblem(SkipKind.PDF_UNSUPPORTED, "install pypdf: pip install pypdf") from exc
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                _decrypt_with_empty_password(reader, DependencyError)
            count = len(reader.pages)
        except PdfProblem:
            raise
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
            raise PdfProblem(
                SkipKind.PDF_MALFORMED,
                "check that the file is complete, or repair it (e.g. qpdf in.pdf out.pdf)",
                note=_describe(exc),
            ) from exc
        if count == 0:
            raise PdfProblem(SkipKind.PDF_NO_PAGES, "check that the file is complete")
        pages = list(_page_texts(reader, count))
    result = PdfText(_render(pages), count)
    for number, text, why in pages:
        if why == "failed":
            result.failed_pages.append(number)
        elif why:
            result.skipped_pages[number] = why
        elif not text:
            result.empty_pages.append(number)
    if len(result.failed_pages) == count:
        raise PdfProblem(
            SkipKind.PDF_MALFORMED, "check that the file is complete", note="no page could be read"
        )
    if result.skipped_pages and all(not text for _, text, _ in pages):
        first = next(iter(result.skipped_pages.values()))
        raise PdfProblem(SkipKind.PDF_LIMITS, "extract its text with another tool first", note=first)
    if len(result.empty_pages) + len(result.failed_pages) == count:
        raise PdfProblem(SkipKind.NO_TEXT, "run OCR on it first (e.g. ocrmypdf in.pdf out.pdf)")
    return result


def _page_texts(reader, count: int) -> Iterator[tuple[int, str, str]]:
    """``(number, text, why)`` per page: ``why`` is "" for a page read (its text may be empty),
    "failed" when pypdf raised, else the bound that skipped it."""
    started, chars = time.monotonic(), 0
    seen: dict[tuple, int] = {}  # content stream references: the first page that had them
    for number in range(1, count + 1):
        if time.monotonic() - started > FILE_SECONDS:
            yield number, "", f"the file's {FILE_SECONDS:g} s extraction time ran out"
            continue
        if chars > FILE_CHARS:
            yield number, "", f"the file's text passed {FILE_CHARS:,} characters"
            continue
        try:
            page = reader.pages[number - 1]
            key = _contents_key(page)
            if key and key in seen:
                yield number, "", f"same content as page {seen[key]}"
                continue
            if key:
                seen[key] = number
            with _time_limit(PAGE_SECONDS):
                why = _too_much_content(page)
                text = "" if why else _extract(page)
        except _OutOfTime:
            yield number, "", f"extraction took over {PAGE_SECONDS:g} s"
            continue
        except _TooMuchText:
            yield number, "", f"text over {PAGE_CHARS:,} characters"
            continue
        except Exception:  # noqa: BLE001 - one bad page must not lose the others
            yield number, "", "failed"
            continue
        if why:
            yield number, "", why
            continue
        if len(text) > PAGE_CHARS:
            yield number, "", f"text over {PAGE_CHARS:,} characters"
            continue
        text = text.replace("\x00", "").strip()
        chars += len(text)
        yield number, text, ""


def _extract(page) -> str:
    """The page's text, stopped as soon as it passes ``PAGE_CHARS`` (``_TooMuchText``)."""
    seen = 0

    def count(text, *_args) -> None:
        nonlocal seen
        seen += len(text)
        if seen > PAGE_CHARS:
            raise _TooMuchText

    return page.extract_text(visitor_text=count) or ""


def _contents_key(page) -> tuple:
    """The page's content streams as object references (empty when they are inline)."""
    contents = page.get("/Contents")
    refs = contents if isinstance(contents, list) else [contents]
    return tuple((ref.idnum, ref.generation) for ref in refs if hasattr(ref, "idnum"))


def _too_much_content(page) -> str:
    """Why the page is not extracted, judged by its decoded content stream's size ("" to go on)."""
    contents = page.get_contents()
    size = len(contents.get_data()) if contents is not None else 0
    if size > PAGE_CONTENT_BYTES:
        return f"content stream of {size:,} bytes (over {PAGE_CONTENT_BYTES:,})"
    return ""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_OutOfTime`` in the block after ``seconds`` (a SIGALRM timer; only in the main
    thread, where signals arrive: elsewhere the per-file time, checked between pages, bounds it)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(_signum, _frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _page_note(why: str) -> str:
    if why == "failed":
        return "could not be read"
    return f"skipped: {why}" if why else "no text"


def _render(pages: list[tuple[int, str, str]]) -> str:
    """The pages' text behind markers; a run of pages without text (empty, or skipped for one
    reason) is one marker, not one per page."""
    blocks: list[str] = []
    run: list[int] = []
    run_note = ""
    for number, text, why in [*pages, (0, "end", "")]:
        note = "" if text else _page_note(why)
        if run and note != run_note:
            blocks.append(f"{_run_marker(run[0], run[-1])} ({run_note})")
            run = []
        if note:
            run.append(number)
            run_note = note
        elif number:
            blocks.append(f"{page_marker(number)}\n{text}")
    return "\n\n".join(blocks) + "\n"


def _decrypt_with_empty_password(reader, dependency_error: type[Exception]) -> None:
    """Many PDFs are encrypted only to set permissions and open with the empty password."""
    try:
        opened = reader.decrypt("")
    except dependency_error as exc:
        raise PdfProblem(
            SkipKind.PDF_ENCRYPTED,
            "install it (pip install cryptography) or decrypt the file first",
            note="AES needs the cryptography package",
        ) from exc
    if not opened:
        raise PdfProblem(
            SkipKind.PDF_ENCRYPTED,
            "decrypt it first, e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf",
            note="password needed",
        )


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_pypdf():
    """Silence pypdf's log records and warnings while it reads one file."""
    logger = logging.getLogger("pypdf")  # its modules log to children of this one
    saved = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(saved)
