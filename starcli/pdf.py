"""PDF text through pypdf: one block per page behind a ``[page N]`` marker.

pypdf is lenient with damaged files and says so through ``logging`` and ``warnings``; we keep
that chatter off the user's stderr and turn every failure into a ``PdfProblem`` with a kind of
skip and a short reason (for the skipped list) and a hint (for the error a directly named PDF gets).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field

from starcli.documents import SkipKind


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


def page_marker(number: int) -> str:
    return f"[page {number}]"


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
        blocks, empty, failed = [], [], []
        for number in range(1, count + 1):
            try:
                text = reader.pages[number - 1].extract_text() or ""
            except Exception:  # noqa: BLE001 - one bad page must not lose the others
                failed.append(number)
                text = ""
            text = text.replace("\x00", "").strip()
            if not text and number not in failed:
                empty.append(number)
            blocks.append(f"{page_marker(number)}\n{text}" if text else f"{page_marker(number)} (no text)")
    if len(failed) == count:
        raise PdfProblem(
            SkipKind.PDF_MALFORMED, "check that the file is complete", note="no page could be read"
        )
    if len(empty) + len(failed) == count:
        raise PdfProblem(SkipKind.NO_TEXT, "run OCR on it first (e.g. ocrmypdf in.pdf out.pdf)")
    return PdfText("\n\n".join(blocks) + "\n", count, empty, failed)


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
