"""Build small PDFs with real text layers for tests, with pypdf alone (no new dependencies)."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def make_pdf(pages: list[list[str] | None], *, password: str | None = None) -> bytes:
    """One PDF page per item: lines of Helvetica text, or None for a page with no text layer.

    ``password`` encrypts (RC4, which pypdf reads without extra packages); "" gives a file that
    the empty password opens, as many permission-only PDFs are.
    """
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        if lines is None:
            continue
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("cp1252"))
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        page.replace_contents(stream)
    if password is not None:
        writer.encrypt(password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_shared_content_pdf(pages: int, content_bytes: int, *, shared: bool = True) -> bytes:
    """``pages`` pages drawing one long content stream of about ``content_bytes`` (Flate
    compressed, so the file stays small): all pages share one stream object (``shared``), or each
    has its own copy (the case sharing does not catch)."""
    from pypdf.generic import NameObject as Name

    writer = PdfWriter()
    font = DictionaryObject(
        {
            Name("/Type"): Name("/Font"),
            Name("/Subtype"): Name("/Type1"),
            Name("/BaseFont"): Name("/Helvetica"),
        }
    )
    line = b"(All work and no play makes a dull PDF.) Tj T*\n"
    body = b"BT /F1 11 Tf 14 TL 72 720 Td\n" + line * (content_bytes // len(line)) + b"ET"
    reference = None
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[Name("/Resources")] = DictionaryObject({Name("/Font"): DictionaryObject({Name("/F1"): font})})
        if reference is None or not shared:
            stream = DecodedStreamObject()
            stream.set_data(body)
            reference = writer._add_object(stream.flate_encode())
        page[Name("/Contents")] = reference
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
