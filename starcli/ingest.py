"""Turn sources (files, directories, stdin) into documents for the prompt, explaining every skip.

The pipeline follows repomix: find files (``starcli.walk``) → filter (``starcli.walk``) →
read (``starcli.textfile``, ``starcli.pdf``) → check secrets (``starcli.secretscan``) →
render (``render_documents``). Nothing in it raises anything but ``InputError``, whatever the
input: a damaged file becomes a ``Skipped`` with a reason, or an ``InputError`` when the user
named it and it cannot be used.

Walk rules (gitignore, default excludes, secret file names, globs, size cap) apply to
directories. A file named on the command line is read as given, with no size cap below
``NAMED_FILE_LIMIT``: the user asked for it, and the context-window check that follows says
more than a cap would; one that cannot be read is an error unless the user asked to skip such
files. Binary detection and the secret checks (docs/secrets.md) apply to everything: a secret
skips a walked file, and refuses a named one or stdin (``--redact-secrets``: each secret is
replaced by a placeholder instead).

Memory stays proportional to the text kept: every file is read into one buffer of its size
(known in advance for regular files, and refused before reading when over a limit), decoded,
and its buffer dropped; all sources together may hold at most ``TOTAL_INPUT_LIMIT`` bytes.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from starcli.citations import mark_lines
from starcli.documents import Document, Ingested, InputError, SkipKind, Skipped
from starcli.pdf import PdfProblem, extract_pdf
from starcli.secretscan import describe, find_secrets, redact, secret_by_name
from starcli.textfile import (
    READ_CHUNK,
    NoWriter,
    TooLarge,
    decode_text,
    format_size,
    looks_binary_start,
    looks_like_pdf,
    read_bytes,
)
from starcli.tokens import estimate_tokens
from starcli.walk import BadPattern, compile_globs, walk_repository

__all__ = [
    "Document",
    "Ingested",
    "InputError",
    "SkipKind",
    "Skipped",
    "estimate_context_tokens",
    "estimate_tokens",
    "ingest",
    "render_documents",
]

NAMED_FILE_LIMIT = 256 << 20  # named files and stdin: a ceiling on memory, not a filter
TOTAL_INPUT_LIMIT = 256 << 20  # all sources of one run together (64M tokens: beyond any run's reach)
STDIN = "<stdin>"


@dataclass
class _Budget:
    """What is left of ``TOTAL_INPUT_LIMIT`` as sources are read."""

    left: int
    total: int

    def limit(self, per_file: int) -> int:
        return min(per_file, self.left)

    def spend(self, size: int) -> None:
        self.left -= size

    def exceeded(self, path: str) -> InputError:
        return InputError(
            f"the sources hold more than {format_size(self.total)}, the most starcli reads in one "
            f"run (reached at {path}); narrow them with --include/--exclude or fewer sources"
        )


def ingest(
    sources: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    use_gitignore: bool = True,
    max_file_bytes: int = 1 << 20,
    skip_unreadable: bool = False,
    redact_secrets: bool = False,
) -> Ingested:
    """Read every source into documents; ``InputError`` when the input is unusable.

    ``skip_unreadable``: a named file that cannot be read is left out with a warning, not an error.
    ``redact_secrets``: a file whose contents hold secrets is kept with each one replaced by a
    placeholder, instead of skipped (a named file or stdin: refused)."""
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
    budget = _Budget(TOTAL_INPUT_LIMIT, TOTAL_INPUT_LIMIT)
    for source, kind in zip(sources, kinds, strict=True):
        if kind == "stdin":
            _ingest_stdin(stdin, out, budget, redact_secrets)
        elif kind == "directory":
            _ingest_directory(
                source, out, seen, include, exclude, use_gitignore, max_file_bytes, budget, redact_secrets
            )
        else:
            _ingest_named_file(source, out, seen, budget, skip_unreadable, redact_secrets)
    if not out.documents:
        raise InputError(f"no text to read: {_summary(out.skipped)}")
    return out


def render_documents(documents: Sequence[Document]) -> str:
    """The context text: each document behind a header line with its path; a PDF's pages behind
    their ``[page N]`` markers, other text with a ``[line N]`` mark every ``LINE_MARK_EVERY``
    lines, so that the model can cite both (``starcli.citations``). Joined in one step."""
    parts: list[str] = []
    for doc in documents:
        if parts:
            parts.append("\n")
        body = _body(doc)
        parts += [_header(doc), body]
        if not body.endswith("\n"):
            parts.append("\n")
    return "".join(parts)


def estimate_context_tokens(documents: Sequence[Document]) -> int:
    """``estimate_tokens(render_documents(documents))``, counted document by document: a header
    starts with "=" after a newline, where the split pattern always starts a new pre-token, so
    the pieces add up to the whole (each separating newline is one token)."""
    total = max(len(documents) - 1, 0)
    for doc in documents:
        body = _body(doc)
        newline = "" if body.endswith("\n") else "\n"
        total += estimate_tokens(_header(doc) + body + newline)
    return total


def _header(doc: Document) -> str:
    return f"===== {doc.path} =====\n"


def _body(doc: Document) -> str:
    """A document's text as the model reads it: PDFs carry page markers, the rest line marks."""
    return doc.text if doc.kind == "pdf" else mark_lines(doc.text)


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


def _ingest_stdin(
    stdin: BinaryIO | None, out: Ingested, budget: _Budget, redact_secrets: bool = False
) -> None:
    if any(doc.path == STDIN for doc in out.documents) or any(s.path == STDIN for s in out.skipped):
        out.skipped.append(Skipped(STDIN, SkipKind.STDIN_TWICE))
        return
    stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", sys.stdin)
    if stream is None:
        raise InputError("'-' names standard input, but there is none")
    limit = budget.limit(NAMED_FILE_LIMIT)
    try:
        data = _read_stream(stream, limit)
    except TooLarge:
        if limit < NAMED_FILE_LIMIT:
            raise budget.exceeded(STDIN) from None
        out.skipped.append(Skipped(STDIN, SkipKind.TOO_LARGE, format_size(NAMED_FILE_LIMIT)))
        return
    except (OSError, ValueError) as exc:
        raise InputError(f"could not read standard input: {exc}") from None
    budget.spend(len(data))
    _convert(data, STDIN, "stdin", out, named=True, redact_secrets=redact_secrets)


def _read_stream(stream, limit: int) -> bytes:
    """stdin to its end, within ``limit``; binary data stops the read after its first chunk."""
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        chunks.append(chunk)
        size += len(chunk)
        if len(chunks) == 1 and looks_binary_start(chunk):
            break
    if size > limit:
        raise TooLarge
    return b"".join(chunks)


def _ingest_named_file(
    source: str,
    out: Ingested,
    seen: dict[tuple[int, int], str],
    budget: _Budget,
    skip_unreadable: bool,
    redact_secrets: bool = False,
) -> None:
    secret = secret_by_name(source.replace(os.sep, "/"))
    if secret:
        raise InputError(
            f"{source}: not read: its name marks a secret file ({secret}), which starcli never "
            "sends to a model; copy what you need into another file"
        )
    limit = budget.limit(NAMED_FILE_LIMIT)
    try:
        info = os.stat(source)
        key = (info.st_dev, info.st_ino)
        if key in seen and os.path.isfile(source):
            out.skipped.append(Skipped(source, SkipKind.DUPLICATE, seen[key]))
            return
        seen[key] = source
        data = read_bytes(source, limit, walked=False)
    except TooLarge:
        if limit < NAMED_FILE_LIMIT:
            raise budget.exceeded(source) from None
        out.skipped.append(Skipped(source, SkipKind.TOO_LARGE, format_size(NAMED_FILE_LIMIT)))
        return
    except OSError as exc:
        _unreadable(source, exc, out, skip_unreadable)
        return
    budget.spend(len(data))
    _convert(data, source, "text", out, named=True, redact_secrets=redact_secrets)


def _unreadable(source: str, exc: OSError, out: Ingested, skip_unreadable: bool) -> None:
    """A named file that cannot be read: an error (as ``cat`` fails), or with ``--skip-unreadable``
    a skip and a warning."""
    reason = str(exc) if isinstance(exc, NoWriter) else str(exc.strerror or exc)
    if not skip_unreadable:
        raise InputError(
            f"{source}: unreadable: {reason}; check the path and its permissions, or pass "
            "--skip-unreadable to leave it out"
        )
    out.skipped.append(Skipped(source, SkipKind.UNREADABLE, reason))
    out.warnings.append(f"{source}: unreadable ({reason}); left out (--skip-unreadable)")


def _ingest_directory(
    root, out, seen, include, exclude, use_gitignore, max_file_bytes, budget, redact_secrets=False
) -> None:
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
            if min(info.st_size, max_file_bytes) > budget.left:  # size known: refused before reading
                raise budget.exceeded(found.display)
            data = read_bytes(found.path, max_file_bytes, walked=True)
            budget.spend(len(data))
        except TooLarge:
            skipped.append(Skipped(found.display, SkipKind.SIZE_CAP, format_size(max_file_bytes)))
            continue
        except OSError as exc:
            skipped.append(Skipped(found.display, SkipKind.UNREADABLE, str(exc.strerror or exc)))
            continue
        local = Ingested()
        _convert(data, found.display, "text", local, named=False, redact_secrets=redact_secrets)
        out.documents.extend(local.documents)
        out.warnings.extend(local.warnings)
        skipped.extend(local.skipped)
    out.skipped.extend(skipped)
    if len(out.documents) == before_docs and not any(s.kind is SkipKind.DUPLICATE for s in skipped):
        if not skipped:
            raise InputError(f"{root}: the directory is empty")
        raise InputError(f"{root}: nothing left to read after filters: {_summary(skipped)}")


def _convert(
    data: bytes, display: str, kind: str, out: Ingested, *, named: bool, redact_secrets: bool = False
) -> None:
    """Bytes to a Document, or a Skipped with its reason; a named PDF that fails is an error."""
    try:
        if looks_like_pdf(data, display):
            _convert_pdf(data, display, out, named=named, redact_secrets=redact_secrets)
            return
        decoded = decode_text(data)
        if decoded is None:
            out.skipped.append(Skipped(display, SkipKind.BINARY))
            return
        text, note = decoded
        text = text.replace("\r\n", "\n")  # the same string when there is none to replace
        if not text or text.isspace():  # not strip(): that copies the whole text
            out.skipped.append(Skipped(display, SkipKind.EMPTY))
            return
        text = _without_secrets(text, display, out, named=named, redact_secrets=redact_secrets)
        if text is None:
            return
        if note:
            out.warnings.append(f"{display}: {note}")
        out.documents.append(Document(display, text, kind))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must end in a reason, not a traceback
        out.skipped.append(Skipped(display, SkipKind.UNREADABLE, type(exc).__name__))


def _convert_pdf(data: bytes, display: str, out: Ingested, *, named: bool, redact_secrets: bool) -> None:
    try:
        pdf = extract_pdf(data)
    except PdfProblem as problem:
        if named and problem.kind is not SkipKind.NO_TEXT:
            raise InputError(f"{display}: {problem.reason}; {problem.hint}") from None
        out.skipped.append(Skipped(display, problem.kind, note=problem.note))
        return
    text = _without_secrets(pdf.text, display, out, named=named, redact_secrets=redact_secrets)
    if text is None:
        return
    if pdf.empty_pages:
        out.warnings.append(f"{display}: {_pages(pdf.empty_pages)} no text layer (scanned?)")
    if pdf.failed_pages:
        out.warnings.append(f"{display}: {_pages(pdf.failed_pages)} could not be read")
    for reason in dict.fromkeys(pdf.skipped_pages.values()):  # each reason once, in page order
        numbers = [n for n, why in pdf.skipped_pages.items() if why == reason]
        out.warnings.append(f"{display}: {_pages(numbers, 'skipped')} ({reason})")
    out.documents.append(Document(display, text, "pdf"))


def _without_secrets(
    text: str, display: str, out: Ingested, *, named: bool, redact_secrets: bool
) -> str | None:
    """The text to use: as it is, or with its secrets redacted (``redact_secrets``); None when
    the file is skipped for a secret. A file the user named, or stdin, is refused instead."""
    findings = find_secrets(text, display)
    if not findings:
        return text
    detail, more = describe(findings)
    if redact_secrets and (redacted := redact(text, findings)) is not None:
        lines = sorted({f.line for f in findings})
        shown = ", ".join(map(str, lines[:10])) + (", …" if len(lines) > 10 else "")
        out.warnings.append(f"{display}: secrets replaced by placeholders (line {shown})")
        return redacted
    if named:
        also = f", and {more}" if more else ""
        hint = (
            "it holds a private key that cannot be cut out; remove the key first"
            if redact_secrets
            else "--redact-secrets reads it with each secret replaced by a placeholder"
        )
        raise InputError(f"{display}: not sent to the model: it holds a secret ({detail}{also}); {hint}")
    out.skipped.append(Skipped(display, SkipKind.SECRET, detail, more))
    return None


def _pages(numbers: list[int], verb: str = "") -> str:
    """ "page 3 has", "pages 2, 4, 5 have", "pages 7–2000 have" (runs of three or more as ranges);
    with ``verb``, "pages 7–2000 skipped"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = [f"{r[0]}–{r[-1]}" if len(r) >= 3 else ", ".join(map(str, r)) for r in runs]
    shown = ", ".join(parts[:20]) + (f" and {len(parts) - 20} more" if len(parts) > 20 else "")
    noun = "page" if len(numbers) == 1 else "pages"
    return f"{noun} {shown} {verb or ('has' if len(numbers) == 1 else 'have')}"


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
