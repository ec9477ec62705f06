"""PDF text through pypdf: one block per page behind a ``[page N]`` marker.

pypdf is lenient with damaged files and says so through ``logging`` and ``warnings``; we keep
that chatter off the user's stderr and turn every failure into a ``PdfProblem`` with a short
reason (for the skipped list) and a hint (for the error a directly named PDF gets).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field


class PdfProblem(Exception):
    """The PDF gives no text: ``reason`` is short, ``hint`` says what to do."""

    def __init__(self, reason: str, hint: str):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


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
        raise PdfProblem("malformed PDF (no %PDF- header)", "check that the file really is a PDF")
    with _quiet_pypdf():
        try:
            from pypdf import PdfReader
            from pypdf.errors import DependencyError
        except ImportError as exc:
            raise PdfProblem("PDF support missing", "install pypdf: pip install pypdf") from exc
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                _decrypt_with_empty_password(reader, DependencyError)
            count = len(reader.pages)
        except PdfProblem:
            raise
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
            raise PdfProblem(
                f"malformed PDF ({_describe(exc)})",
                "check that the file is complete, or repair it (e.g. qpdf in.pdf out.pdf)",
            ) from exc
        if count == 0:
            raise PdfProblem("PDF has no pages", "check that the file is complete")
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
        raise PdfProblem("malformed PDF (no page could be read)", "check that the file is complete")
    if len(empty) + len(failed) == count:
        raise PdfProblem(
            "no text layer (scanned page?)", "run OCR on it first (e.g. ocrmypdf in.pdf out.pdf)"
        )
    return PdfText("\n\n".join(blocks) + "\n", count, empty, failed)


def _decrypt_with_empty_password(reader, dependency_error: type[Exception]) -> None:
    """Many PDFs are encrypted only to set permissions and open with the empty password."""
    try:
        opened = reader.decrypt("")
    except dependency_error as exc:
        raise PdfProblem(
            "encrypted PDF (AES needs the cryptography package)",
            "install it (pip install cryptography) or decrypt the file first",
        ) from exc
    if not opened:
        raise PdfProblem(
            "encrypted PDF (password needed)",
            "decrypt it first, e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf",
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
