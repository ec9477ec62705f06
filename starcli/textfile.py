"""The "read" stage: bounded reads that never block or follow links, and bytes-to-text decoding.

Reads are bounded in bytes and in waiting: a regular file's size is known before it is read, so
one over the limit (a 1 GB sparse file) is refused without reading a byte; a FIFO, pipe or device
is read in chunks up to the limit, and one that holds binary data (``/dev/zero``) stops after its
first chunk; a named FIFO with no writer is given ``FIFO_WAIT_S`` to get one, then refused.

Binary detection follows git and file(1): a NUL byte anywhere, or too many control bytes in
the first 8 KiB, means binary. Text is UTF-8 (BOMs for UTF-8/16/32 honoured, and the text the BOM
decodes to is checked the same way: ``FF FE`` and random bytes is not UTF-16 text); text that is
not valid UTF-8 is decoded as UTF-8 with replacement when only a few bytes are bad, else as
Windows-1252 / Latin-1, and the caller reports which with a warning.
"""

from __future__ import annotations

import codecs
import io
import os
import select
import stat
import time
import unicodedata

SAMPLE_BYTES = 8192
CONTROL_RATIO = 0.05  # text has almost none; random bytes have ~10 %
# Control bytes that text does not contain (tab, newlines, form feed, backspace and ESC are
# left out: they occur in real text, man pages and ANSI-coloured logs).
_CONTROL = bytes([*range(0x00, 0x07), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_HIGH = bytes(range(0x80, 0x100))
# What a BOM's text has almost none of and random bytes decoded as UTF-16/32 are full of:
# controls, replacement characters (bad sequences), private-use and unassigned code points.
_NOT_TEXT_CATEGORIES = {"Cc", "Co", "Cn", "Cs"}
_TEXT_CONTROLS = set("\t\n\r\f\b\x1b")
READ_CHUNK = 1 << 20
FIFO_WAIT_S = 10.0  # a named FIFO with no writer: how long to wait for one
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class NotRegularFile(OSError):
    """A walk met a FIFO, socket or device: reading it could block forever."""


class NoWriter(OSError):
    """A named FIFO that nobody opened for writing within the wait."""


class TooLarge(Exception):
    """The file holds more than the byte limit (``size``: its size when known in advance)."""

    def __init__(self, size: int | None = None):
        super().__init__(size)
        self.size = size


def read_bytes(path: str, limit: int, *, walked: bool, wait_s: float | None = None) -> bytes:
    """Read at most ``limit`` bytes; ``TooLarge`` if there are more.

    The open never blocks (a FIFO with no writer would block in ``open`` itself). For files found
    by a walk it does not follow a symlink either, and anything but a regular file is refused
    (both could have replaced the file since it was listed). A path the user named is read as
    given, so ``<(cmd)`` and ``/dev/stdin`` work; a FIFO gets ``wait_s`` (``FIFO_WAIT_S``) to find
    a writer, else ``NoWriter``.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    if walked:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if info.st_size > limit:  # known in advance: refused before reading
                raise TooLarge(info.st_size)
            return _read_regular(fd, info.st_size, limit)
        if walked:
            raise NotRegularFile("not a regular file")
        return read_stream(fd, limit, FIFO_WAIT_S if wait_s is None else wait_s, name=path)
    finally:
        os.close(fd)


def _read_regular(fd: int, size: int, limit: int) -> bytes:
    """The file's bytes in one allocation of its size (no list of chunks joined at the end)."""
    raw = io.FileIO(fd, closefd=False)
    data = raw.read(size + 1)
    if len(data) <= size:
        return data
    rest = data  # the file grew since fstat (a log being written): read on, within the limit
    chunks = [rest]
    total = len(rest)
    while total <= limit and (chunk := raw.read(min(READ_CHUNK, limit + 1 - total))):
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise TooLarge
    return b"".join(chunks)


def read_stream(fd: int, limit: int, wait_s: float, *, name: str = "") -> bytes:
    """Read a FIFO, pipe or device (opened non-blocking) to its end, within ``limit`` bytes.

    Until some data or a writer shows up, wait at most ``wait_s`` (``NoWriter`` then); after that,
    wait as ``cat`` would. Binary data (``/dev/zero``, ``/dev/urandom``) stops the read after its
    first chunk: it will be skipped as binary whatever follows."""
    deadline = time.monotonic() + wait_s
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    total, writer_seen = 0, False
    while total <= limit:
        try:
            chunk = os.read(fd, min(READ_CHUNK, limit + 1 - total))
        except BlockingIOError:  # a writer is there, with nothing to say yet
            writer_seen = True
            poller.poll()
            continue
        if chunk:
            writer_seen = True
            chunks.append(chunk)
            total += len(chunk)
            if len(chunks) == 1 and looks_binary_start(chunk, name):
                break
            continue
        if writer_seen:
            break  # end of data
        left = deadline - time.monotonic()
        events = poller.poll(max(0.0, left) * 1000) if left > 0 else []
        if not events:
            raise NoWriter(f"no writer after {wait_s:g} s (a FIFO waits for a program to write to it)")
        writer_seen = any(event & select.POLLHUP for _, event in events)  # came and went
    if total > limit:
        raise TooLarge
    return b"".join(chunks)


def looks_binary_start(head: bytes, name: str = "") -> bool:
    """Whether the first bytes of a stream already say "binary" (a PDF is read whole: it holds
    binary streams, and is recognised by its header or name)."""
    if looks_like_pdf(head, name):
        return False
    return decode_text(head[:SAMPLE_BYTES]) is None


def looks_like_pdf(data: bytes, name: str) -> bool:
    """PDF by signature (allowed anywhere in the first KiB) or by extension."""
    return b"%PDF-" in data[:1024] or name.lower().endswith(".pdf")


def decode_text(data: bytes) -> tuple[str, str | None] | None:
    """``(text, warning or None)``, or None when the bytes look binary."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, "replace")
            return None if _looks_binary_text(text[:SAMPLE_BYTES]) else (text, None)
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
    # Bytes that are not UTF-8 become lone surrogates, which re-encoding with "ignore" drops:
    # counted without a list of them (a 200 MB Latin-1 file has millions).
    bad = len(data) - len(data.decode("utf-8", "surrogateescape").encode("utf-8", "ignore"))
    high = len(data) - len(data.translate(None, _HIGH))
    if high - bad > bad:  # mostly well-formed UTF-8 with a few bad bytes
        return data.decode("utf-8", "replace"), f"not valid UTF-8 ({bad} bad bytes replaced)"
    try:
        return data.decode("cp1252"), "not valid UTF-8, decoded as Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "not valid UTF-8, decoded as latin-1"


def _looks_binary_text(sample: str) -> bool:
    """A BOM's decoded text that is mostly not text: random bytes after ``FF FE`` decode to
    CJK mixed with unassigned, private-use and replacement characters."""
    if not sample:
        return False
    if "\x00" in sample:
        return True
    odd = sum(
        1
        for char in sample
        if char == "\ufffd"
        or (char not in _TEXT_CONTROLS and unicodedata.category(char) in _NOT_TEXT_CATEGORIES)
    )
    return odd / len(sample) > CONTROL_RATIO


def format_size(size: int) -> str:
    """1048576 -> '1 MiB', 1536 -> '1.5 KiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
