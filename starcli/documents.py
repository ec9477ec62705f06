"""What ingestion hands to the rest of starcli: documents, skips with reasons, warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from engine.errors import EngineError


@dataclass
class Document:
    path: str  # display path: "<dir as given>/<relative path>", a file as given, or "<stdin>"
    text: str  # what goes into the prompt (PDF: page texts behind "[page N]" markers)
    kind: str  # "text" | "pdf" | "stdin"
    estimate: int | None = None  # tokens, once estimated (``tokens``)

    @property
    def tokens(self) -> int:
        """A fast token estimate (``starcli.tokens.estimate_tokens``), made when first asked for:
        a run that loads the model's tokenizer counts exactly and needs none before its answer
        (building the estimate's vocabulary costs ~0.2 s); ``--dry-run`` and ``--json`` ask."""
        if self.estimate is None:
            from starcli.tokens import estimate_tokens

            self.estimate = estimate_tokens(self.text)
        return self.estimate


class SkipKind(Enum):
    """Why ingestion left a path out: a closed set, so code checks the kind and never the text.

    A kind's reason is ``text`` with the skip's detail in ``{}``, then a note in parentheses (the
    skip's own, else the kind's ``note``); ``label`` (``{}``: the detail) names its group in the
    one-line summary of skips.
    """

    text: str
    note: str
    label: str

    def __new__(cls, text: str, note: str = "", label: str = "") -> SkipKind:
        member = object.__new__(cls)
        member._value_ = len(cls.__members__) + 1
        member.text, member.note, member.label = text, note, label or text
        return member

    # the walk of a directory
    SYMLINK = "symlink", "not followed"
    DIRECTORY_LOOP = "directory loop", "not followed"
    NOT_REGULAR = "not a regular file"
    TOO_DEEP = "deeper than {} directory levels", "not walked"  # detail: the depth limit
    DEFAULT_EXCLUDE = "default exclude: {}", "", "default exclude"  # detail: "cache", "lock file", ...
    SECRET = "secret: {}", "", "secret"  # detail: "environment file", "private key", ...
    GITIGNORE = "matched {}", "", "gitignored"  # detail: the ignore file; note: the pattern
    EXCLUDED = "matched --exclude", "", "--exclude"  # note: the pattern
    NOT_INCLUDED = "not matched by --include"
    SIZE_CAP = "larger than {} cap", "", "too large"  # detail: the cap
    # reading what was found or named
    TOO_LARGE = "larger than {}", "", "too large"  # detail: the ceiling for named files and stdin
    DUPLICATE = "duplicate of {}", "", "duplicate"  # detail: the path read before
    STDIN_TWICE = "standard input named twice", "read once"
    UNREADABLE = "unreadable: {}", "", "unreadable"  # detail: the OS error or exception type
    BINARY = "binary file"
    EMPTY = "empty file"
    # PDFs (note: what went wrong, where it varies)
    NO_TEXT = "no text layer", "scanned page?"
    PDF_MALFORMED = "malformed PDF"
    PDF_ENCRYPTED = "encrypted PDF"
    PDF_NO_PAGES = "PDF has no pages"
    PDF_UNSUPPORTED = "PDF support missing"
    PDF_LIMITS = "PDF text beyond the extraction limits"  # note: the first bound met

    def reason(self, detail: str = "", note: str = "") -> str:
        """The reason as shown to the user: "matched .gitignore (*.log)", "binary file", ..."""
        head, note = self.text.format(detail), note or self.note
        return f"{head} ({note})" if note else head


@dataclass
class Skipped:
    path: str  # directories end in "/"
    kind: SkipKind
    detail: str = ""  # fills the kind's text: the ignore file, the size, the path read before, ...
    note: str = ""  # the parenthesis, where it varies: the pattern matched, what pypdf said

    @property
    def reason(self) -> str:
        """Short and human: "binary file", "matched .gitignore (*.log)", ..."""
        return self.kind.reason(self.detail, self.note)

    @property
    def brief(self) -> str:
        """The reason without its parenthesis: "matched .gitignore"."""
        return self.kind.text.format(self.detail)

    @property
    def label(self) -> str:
        """The group in a one-line summary: "gitignored", "secret", "too large", ..."""
        return self.kind.label.format(self.detail)


@dataclass
class Ingested:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(doc.tokens for doc in self.documents)


class InputError(EngineError):
    """Unusable input; the CLI prints 'Error: <message>' and exits 2. Messages say what is wrong
    and what to do."""
