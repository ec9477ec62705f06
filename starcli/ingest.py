"""Turn sources (files, directories, stdin) into documents for the prompt, explaining every skip.

The pipeline follows repomix: find files (``starcli.walk``) → filter (``starcli.walk``) →
read (``starcli.textfile``, ``starcli.pdf``) → check secrets (``starcli.secretscan``) →
render (``render_documents``). Nothing in it raises anything but ``InputError``, whatever the
input: a damaged file becomes a ``Skipped`` with a reason, or an ``InputError`` when the user
named it and it cannot be used.

Walk rules (gitignore, default excludes, secret file names, globs, size cap) apply to
directories. A file named on the command line is read as given, with no size cap below
``NAMED_FILE_LIMIT``: the user asked for it, and the context-window check that follows says
more than a cap would. Binary detection and the private-key check apply to everything.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO

from starcli.documents import Document, Ingested, InputError, SkipKind, Skipped
from starcli.pdf import PdfProblem, extract_pdf
from starcli.secretscan import secret_in_content
from starcli.textfile import TooLarge, decode_text, format_size, looks_like_pdf, read_bytes
from starcli.tokens import estimate_tokens
from starcli.walk import BadPattern, compile_globs, walk_repository

__all__ = [
    "Document",
    "Ingested",
    "InputError",
    "SkipKind",
    "Skipped",
    "estimate_tokens",
    "ingest",
    "render_documents",
]

NAMED_FILE_LIMIT = 256 << 20  # named files and stdin: a ceiling on memory, not a filter
STDIN = "<stdin>"


def ingest(
    sources: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    use_gitignore: bool = True,
    max_file_bytes: int = 1 << 20,
) -> Ingested:
    """Read every source into documents; ``InputError`` when the input is unusable."""
    if not sources:
        raise InputError("nothing to read: give a file, a directory, or '-' for standard input")
    try:
        compile_globs(include, "--include")
        compile_globs(exclude, "--exclude")
    except BadPattern as exc:
        raise InputError(f"{exc}; patterns use .gitignore syntax, e.g. '*.py' or 'docs/'") from None
    kinds = [_source_kind(source) for source in sources]
    out = Ingested()
    seen: dict[tuple[int, int], str] = {}
    for source, kind in zip(sources, kinds, strict=True):
        if kind == "stdin":
            _ingest_stdin(stdin, out)
        elif kind == "directory":
            _ingest_directory(source, out, seen, include, exclude, use_gitignore, max_file_bytes)
        else:
            _ingest_named_file(source, out, seen)
    if not out.documents:
        raise InputError(f"no text to read: {_summary(out.skipped)}")
    return out


def render_documents(documents: Sequence[Document]) -> str:
    """The context text: each document behind a header line with its path."""
    parts = []
    for doc in documents:
        text = doc.text if doc.text.endswith("\n") else doc.text + "\n"
        parts.append(f"===== {doc.path} =====\n{text}")
    return "\n".join(parts)


def _source_kind(source: str) -> str:
    """Classify a source as stdin, a directory or a file; an unusable path is an ``InputError``."""
    if source == "-":
        return "stdin"
    try:
        os.stat(source)
    except FileNotFoundError:
        if os.path.lexists(source):
            raise InputError(f"{source}: broken symlink (its target does not exist)") from None
        raise InputError(f"{source}: no such file or directory") from None
    except PermissionError:
        return "file"  # reported as unreadable when read
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{source}: symlink loop (the link points back to itself)") from None
        raise InputError(f"{source}: cannot be used ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise InputError(f"{source}: cannot be used ({exc})") from None
    return "directory" if os.path.isdir(source) else "file"


def _ingest_stdin(stdin: BinaryIO | None, out: Ingested) -> None:
    if any(doc.path == STDIN for doc in out.documents) or any(s.path == STDIN for s in out.skipped):
        out.skipped.append(Skipped(STDIN, SkipKind.STDIN_TWICE))
        return
    stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", sys.stdin)
    if stream is None:
        raise InputError("'-' names standard input, but there is none")
    try:
        data = _read_stream(stream, NAMED_FILE_LIMIT)
    except TooLarge:
        out.skipped.append(Skipped(STDIN, SkipKind.TOO_LARGE, format_size(NAMED_FILE_LIMIT)))
        return
    except (OSError, ValueError) as exc:
        raise InputError(f"could not read standard input: {exc}") from None
    _convert(data, STDIN, "stdin", out, named=True)


def _read_stream(stream, limit: int) -> bytes:
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise TooLarge
    return b"".join(chunks)


def _ingest_named_file(source: str, out: Ingested, seen: dict[tuple[int, int], str]) -> None:
    try:
        info = os.stat(source)
        key = (info.st_dev, info.st_ino)
        if key in seen and os.path.isfile(source):
            out.skipped.append(Skipped(source, SkipKind.DUPLICATE, seen[key]))
            return
        seen[key] = source
        data = read_bytes(source, NAMED_FILE_LIMIT, walked=False)
    except TooLarge:
        out.skipped.append(Skipped(source, SkipKind.TOO_LARGE, format_size(NAMED_FILE_LIMIT)))
        return
    except OSError as exc:
        out.skipped.append(Skipped(source, SkipKind.UNREADABLE, str(exc.strerror or exc)))
        return
    _convert(data, source, "text", out, named=True)


def _ingest_directory(root, out, seen, include, exclude, use_gitignore, max_file_bytes) -> None:
    try:
        walk = walk_repository(
            root, include=include, exclude=exclude, use_gitignore=use_gitignore, max_file_bytes=max_file_bytes
        )
    except Exception as exc:  # noqa: BLE001 - the walk handles OS errors; anything else is a bug to name
        raise InputError(f"{root}: could not walk the directory ({type(exc).__name__}: {exc})") from None
    out.warnings.extend(walk.warnings)
    before_docs, skipped = len(out.documents), list(walk.skipped)
    for found in walk.files:
        try:
            info = os.stat(found.path, follow_symlinks=False)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                skipped.append(Skipped(found.display, SkipKind.DUPLICATE, seen[key]))
                continue
            seen[key] = found.display
            data = read_bytes(found.path, max_file_bytes, walked=True)
        except TooLarge:
            skipped.append(Skipped(found.display, SkipKind.SIZE_CAP, format_size(max_file_bytes)))
            continue
        except OSError as exc:
            skipped.append(Skipped(found.display, SkipKind.UNREADABLE, str(exc.strerror or exc)))
            continue
        local = Ingested()
        _convert(data, found.display, "text", local, named=False)
        out.documents.extend(local.documents)
        out.warnings.extend(local.warnings)
        skipped.extend(local.skipped)
    out.skipped.extend(skipped)
    if len(out.documents) == before_docs and not any(s.kind is SkipKind.DUPLICATE for s in skipped):
        if not skipped:
            raise InputError(f"{root}: the directory is empty")
        raise InputError(f"{root}: nothing left to read after filters: {_summary(skipped)}")


def _convert(data: bytes, display: str, kind: str, out: Ingested, *, named: bool) -> None:
    """Bytes to a Document, or a Skipped with its reason; a named PDF that fails is an error."""
    try:
        if looks_like_pdf(data, display):
            _convert_pdf(data, display, out, named=named)
            return
        secret = secret_in_content(data)
        if secret:
            out.skipped.append(Skipped(display, SkipKind.SECRET, secret))
            return
        decoded = decode_text(data)
        if decoded is None:
            out.skipped.append(Skipped(display, SkipKind.BINARY))
            return
        text, note = decoded
        text = text.replace("\r\n", "\n")
        if not text.strip():
            out.skipped.append(Skipped(display, SkipKind.EMPTY))
            return
        if note:
            out.warnings.append(f"{display}: {note}")
        out.documents.append(Document(display, text, kind))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must end in a reason, not a traceback
        out.skipped.append(Skipped(display, SkipKind.UNREADABLE, type(exc).__name__))


def _convert_pdf(data: bytes, display: str, out: Ingested, *, named: bool) -> None:
    try:
        pdf = extract_pdf(data)
    except PdfProblem as problem:
        if named and problem.kind is not SkipKind.NO_TEXT:
            raise InputError(f"{display}: {problem.reason}; {problem.hint}") from None
        out.skipped.append(Skipped(display, problem.kind, note=problem.note))
        return
    secret = secret_in_content(pdf.text.encode("utf-8", "replace"))
    if secret:
        out.skipped.append(Skipped(display, SkipKind.SECRET, secret))
        return
    if pdf.empty_pages:
        out.warnings.append(f"{display}: {_pages(pdf.empty_pages)} no text layer (scanned?)")
    if pdf.failed_pages:
        out.warnings.append(f"{display}: {_pages(pdf.failed_pages)} could not be read")
    out.documents.append(Document(display, pdf.text, "pdf"))


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:20])) + (
        f" and {len(numbers) - 20} more" if len(numbers) > 20 else ""
    )
    return f"page {shown} has" if len(numbers) == 1 else f"pages {shown} have"


def _summary(skipped: list[Skipped]) -> str:
    """'3 skipped (2 binary file, 1 matched .gitignore); try --no-gitignore' and the like."""
    if not skipped:
        return "no files found"
    if len(skipped) <= 3:
        listed = ", ".join(f"{s.path} ({s.reason})" for s in skipped)
        text = f"{len(skipped)} skipped: {listed}"
    else:
        counts = Counter(s.brief for s in skipped)
        text = f"{len(skipped)} skipped (" + ", ".join(f"{n} {r}" for r, n in counts.most_common(5)) + ")"
    hints = []
    kinds = {s.kind for s in skipped}
    if SkipKind.GITIGNORE in kinds:
        hints.append("--no-gitignore reads ignored files")
    if kinds & {SkipKind.EXCLUDED, SkipKind.NOT_INCLUDED}:
        hints.append("check --include/--exclude")
    if SkipKind.SIZE_CAP in kinds:
        hints.append("name a large file directly to read it whole")
    if SkipKind.NO_TEXT in kinds:
        hints.append("run OCR on scanned PDFs first (e.g. ocrmypdf)")
    return text + (f"; {'; '.join(hints)}" if hints else "")
