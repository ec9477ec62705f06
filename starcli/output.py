"""Writing to stdout so that every byte arrives or the failure is seen.

One large ``write`` to a pipe can be cut short: when the reader leaves (``| head -c 10``) after
part of it went through, the kernel reports the part as written, and Python's buffered writer
dropped the rest without an error, so a plan of 1.6 MB piped to ``head`` ended with exit 0.
Writing in chunks straight to the file descriptor, and looping over short writes, turns the
reader's leaving into ``BrokenPipeError`` (exit 141), whatever the size.
"""

from __future__ import annotations

import io
import os
from typing import TextIO

from engine.errors import EngineError

CHUNK_BYTES = 64 << 10  # one pipe buffer on Linux


class StdoutClosed(EngineError):
    """stdout is not open (``starcli ... >&-``): there is nowhere to write the answer (exit 2)."""

    def __init__(self) -> None:
        super().__init__(
            "standard output is closed, so there is nowhere to write the answer; "
            "redirect it instead (> answer.txt, or > /dev/null to discard it)"
        )


def write_all(stream: TextIO, text: str) -> None:
    """Write ``text`` to ``stream`` completely, or raise (``BrokenPipeError`` when the reader left).

    Streams without a file descriptor (tests' buffers) get a plain write and flush."""
    if not text:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        stream.write(text)
        stream.flush()
        return
    stream.flush()  # whatever the stream still buffers goes first
    encoding = getattr(stream, "encoding", None) or "utf-8"
    errors = getattr(stream, "errors", None) or "strict"
    data = memoryview(text.encode(encoding, errors))
    while data:
        written = os.write(fd, data[:CHUNK_BYTES])
        data = data[written:]


def check_stdout_open(stream: TextIO | None) -> None:
    """``StdoutClosed`` when stdout was closed before starcli started (Python then sets
    ``sys.stdout`` to None) or its descriptor is no longer valid."""
    if stream is None:
        raise StdoutClosed()
    try:
        os.fstat(stream.fileno())
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # not a real file (a test's buffer): nothing to check
    except OSError as exc:
        raise StdoutClosed() from exc
