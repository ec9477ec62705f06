"""The "read" stage: bounded reads that never block or follow links, and bytes-to-text decoding.

Binary detection follows git and file(1): a NUL byte anywhere, or too many control bytes in
the first 8 KiB, means binary. Text is UTF-8 (BOMs for UTF-8/16/32 honoured); text that is not
valid UTF-8 is decoded as UTF-8 with replacement when only a few bytes are bad, else as
Windows-1252 / Latin-1, and the caller reports which with a warning.
"""

from __future__ import annotations

import codecs
import os
import re
import stat

SAMPLE_BYTES = 8192
CONTROL_RATIO = 0.05  # text has almost none; random bytes have ~10 %
# Control bytes that text does not contain (tab, newlines, form feed, backspace and ESC are
# left out: they occur in real text, man pages and ANSI-coloured logs).
_CONTROL = bytes([*range(0x00, 0x07), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_HIGH = bytes(range(0x80, 0x100))
_ESCAPED = re.compile("[\udc80-\udcff]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class NotRegularFile(OSError):
    """A walk met a FIFO, socket or device: reading it could block forever."""


class TooLarge(Exception):
    """The file holds more than the byte limit."""


def read_bytes(path: str, limit: int, *, walked: bool) -> bytes:
    """Read at most ``limit`` bytes; ``TooLarge`` if there are more.

    For files found by a walk, the open neither follows a symlink nor blocks on a FIFO (both
    could have replaced the file since it was listed). A path the user named is read as given,
    so ``<(cmd)`` and ``/dev/stdin`` work.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    if walked:
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if walked and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile("not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise TooLarge
    return b"".join(chunks)


def looks_like_pdf(data: bytes, name: str) -> bool:
    """PDF by signature (allowed anywhere in the first KiB) or by extension."""
    return b"%PDF-" in data[:1024] or name.lower().endswith(".pdf")


def decode_text(data: bytes) -> tuple[str, str | None] | None:
    """``(text, warning or None)``, or None when the bytes look binary."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, "replace"), None
    if b"\x00" in data:
        return None
    sample = data[:SAMPLE_BYTES]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if sample and controls / len(sample) > CONTROL_RATIO:
        return None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    escaped = data.decode("utf-8", "surrogateescape")
    bad = len(_ESCAPED.findall(escaped))
    high = len(data) - len(data.translate(None, _HIGH))
    if high - bad > bad:  # mostly well-formed UTF-8 with a few bad bytes
        return data.decode("utf-8", "replace"), f"not valid UTF-8 ({bad} bad bytes replaced)"
    try:
        return data.decode("cp1252"), "not valid UTF-8, decoded as Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "not valid UTF-8, decoded as latin-1"


def format_size(size: int) -> str:
    """1048576 -> '1 MiB', 1536 -> '1.5 KiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
