"""What ingestion hands to the rest of starcli: documents, skips with reasons, warnings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    path: str  # display path: "<dir as given>/<relative path>", a file as given, or "<stdin>"
    text: str  # what goes into the prompt (PDF: page texts behind "[page N]" markers)
    kind: str  # "text" | "pdf" | "stdin"
    tokens: int  # fast estimate (starcli.tokens.estimate_tokens)


@dataclass
class Skipped:
    path: str  # directories end in "/"
    reason: str  # short and human: "binary file", "matched .gitignore (*.log)", ...


@dataclass
class Ingested:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(doc.tokens for doc in self.documents)


class InputError(Exception):
    """Unusable input; the CLI prints 'Error: <message>' and exits 2. Messages say what is wrong
    and what to do."""
