"""The dataset (bench/quality_data/questions.toml) and the work directory its documents are put in.

Documents are never fetched: PDF pages come from /usr/share/doc (pinned by checksum), package
sources from the installed package (pinned by version), logs from bench/quality_data. Everything
is written under one work directory and read from there by relative path, so the headers starcli
puts in front of each document, and so the token ids, are the same on every run.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "quality_data"
QUESTIONS = DATA_DIR / "questions.toml"


class DatasetError(Exception):
    """A document cannot be put in place as the questions expect (missing, other version)."""


@dataclass(frozen=True)
class Document:
    name: str
    kind: str  # pdf, package or saved
    file: str  # its path inside the work directory: what starcli is given
    about: str = ""
    source: str = ""
    source_sha256: str = ""
    pages: tuple[int, ...] = ()
    package: str = ""
    version: str = ""


@dataclass(frozen=True)
class Item:
    id: str
    command: str  # ask or summarize
    documents: tuple[str, ...]
    question: str = ""
    accept: tuple[str, ...] = ()
    require: tuple[tuple[str, ...], ...] = ()
    evidence: str = ""
    where: str = ""
    sources: tuple[str, ...] = field(default=())  # the documents' files, in order


def load(path: Path = QUESTIONS) -> tuple[dict[str, Document], list[Item]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    documents = {
        name: Document(name=name, **{**spec, "pages": tuple(spec.get("pages", ()))})
        for name, spec in data["documents"].items()
    }
    items = []
    for spec in data["items"]:
        names = tuple(spec["documents"])
        unknown = [n for n in names if n not in documents]
        if unknown:
            raise DatasetError(f"item {spec['id']}: unknown documents {unknown}")
        items.append(
            Item(
                **{
                    **spec,
                    "documents": names,
                    "accept": tuple(spec.get("accept", ())),
                    "require": tuple(tuple(group) for group in spec.get("require", ())),
                    "sources": tuple(documents[n].file for n in names),
                }
            )
        )
    ids = [item.id for item in items]
    if len(ids) != len(set(ids)):
        raise DatasetError("item ids must be unique")
    return documents, items


def select(items: list[Item], only: list[str] | None, limit: int | None) -> list[Item]:
    """The items named by ``only`` (ids or id prefixes), then the first ``limit`` of them."""
    if only:
        chosen = [item for item in items if any(item.id.startswith(prefix) for prefix in only)]
        if not chosen:
            raise DatasetError(f"no item id starts with any of {only}")
        items = chosen
    return items[:limit] if limit else items


def materialize(documents: dict[str, Document], work: Path) -> None:
    """Write every document into ``work`` (emptied first)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for doc in documents.values():
        target = work / doc.file
        target.parent.mkdir(parents=True, exist_ok=True)
        if doc.kind == "pdf":
            _pdf_pages(doc, target)
        elif doc.kind == "package":
            _package_sources(doc, target)
        elif doc.kind == "saved":
            _saved(doc, target)
        else:
            raise DatasetError(f"document {doc.name}: unknown kind {doc.kind!r}")


def _pdf_pages(doc: Document, target: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    source = Path(doc.source)
    if not source.is_file():
        raise DatasetError(f"{doc.name}: {source} is not installed (its Debian package is missing)")
    raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != doc.source_sha256:
        raise DatasetError(f"{doc.name}: {source} is another version (sha256 {digest}); check the questions")
    data = gzip.decompress(raw) if source.suffix == ".gz" else raw
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".full.pdf")
    scratch.write_bytes(data)
    try:
        reader, writer = PdfReader(scratch), PdfWriter()
        for page in doc.pages:
            writer.add_page(reader.pages[page - 1])
        with target.open("wb") as out:
            writer.write(out)
    finally:
        scratch.unlink()


def _package_sources(doc: Document, target: Path) -> None:
    try:
        installed = importlib.metadata.version(doc.package)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetError(f"{doc.name}: package {doc.package} is not installed") from None
    if installed != doc.version:
        raise DatasetError(
            f"{doc.name}: {doc.package} {installed} installed, the questions are on {doc.version}"
        )
    spec = importlib.util.find_spec(doc.package)
    folder = Path(list(spec.submodule_search_locations)[0])
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _saved(doc: Document, target: Path) -> None:
    source = DATA_DIR / doc.file
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)


@contextmanager
def inside(work: Path) -> Iterator[None]:
    """Run in ``work``, so that the sources are short relative paths (stable document headers)."""
    before = Path.cwd()
    os.chdir(work)
    try:
        yield
    finally:
        os.chdir(before)
