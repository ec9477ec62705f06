"""Where saved contexts live and how they are kept: the directory layout, the key, the weights
fingerprint, least-recently-used eviction, listing and clearing. No torch, so that ``starcli cache
list|clear`` and the CLI's key work cost nothing; the tensors themselves are ``engine.saved_context``.

Layout: ``<cache>/contexts/<key>/rank-<r>-of-<W>.safetensors`` (each rank writes its own, by
rename) and ``entry.json`` (the query host's summary, touched on every use: its mtime is the
entry's last use). An entry is whatever the directory holds; every file is checked on read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from engine.paths import cache_dir

FORMAT = 1  # raise when the files' layout or meaning changes
ENTRY_INFO = "entry.json"
DEFAULT_MAX_BYTES = 4 << 30
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_MODEL_FILES = ("config.json", "starcli-source.json")  # the default model's conversion stamp
_EDGE_BYTES = 1 << 20  # hashed at each end of a weights file
_STALE_TEMP_S = 3600.0  # a temporary file this old belongs to a writer that died
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class StoreSpec:
    """What a request says about saving its context: where, how much in all, and the model's
    identity (name and weights fingerprint, computed once by the caller, ``model_fingerprint``)."""

    directory: str
    max_bytes: int
    model_key: str

    def to_dict(self) -> dict[str, object]:
        return {"directory": self.directory, "max_bytes": self.max_bytes, "model_key": self.model_key}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> StoreSpec:
        return cls(str(data["directory"]), int(data["max_bytes"]), str(data["model_key"]))


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    bytes: int
    last_used: float
    info: dict[str, object]


def contexts_dir() -> Path:
    return cache_dir() / "contexts"


def parse_size(text: str | int) -> int:
    """``4GiB``, ``500M``, ``1.5g`` or a plain number of bytes; 0 turns saving off."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 4GiB, 500MB, 0)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * (1 << (10 * " kmgt".index(unit or " "))))


def format_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def entry_key(parts: dict[str, object]) -> str:
    """The entry's name: a hash of everything that determines its contents."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def rank_file(directory: Path, key: str, rank: int, world: int) -> Path:
    return directory / key / f"rank-{rank}-of-{world}.safetensors"


@functools.lru_cache(maxsize=1)
def engine_stamp() -> str:
    """The code that computes phase 1: a hash of the engine's and kernels' sources and the torch
    and transformers versions. Any change to them gives new keys; old entries age out."""
    digest = hashlib.blake2b(digest_size=12)
    root = Path(__file__).resolve().parent.parent
    for package in ("engine", "kernels"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for dist in ("torch", "transformers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    return digest.hexdigest()


def model_fingerprint(name: str | None, path: str) -> str | None:
    """The model's identity for keys: its name and, for each weights and config file of the local
    directory it loads from, its name, size, mtime and a hash of its first and last MiB (a copy
    rewritten in place gets a new mtime). ``None`` when the model has no local directory yet (a
    hub id not downloaded): that run saves nothing."""
    folder = Path(path)
    if not folder.is_dir():
        folder = _hub_snapshot(path)
        if folder is None:
            return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{name}\0{FORMAT}".encode())
    files = sorted(p for p in folder.iterdir() if p.name in _MODEL_FILES or p.suffix in _WEIGHT_SUFFIXES)
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        return None
    for file in files:
        real = file.resolve()
        stat = real.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        with real.open("rb") as handle:
            digest.update(handle.read(_EDGE_BYTES))
            if stat.st_size > 2 * _EDGE_BYTES:
                handle.seek(-_EDGE_BYTES, os.SEEK_END)
                digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


def _hub_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or not a hub id): no fingerprint
        return None


def list_entries(directory: Path | None = None) -> list[Entry]:
    """Every entry, least recently used first."""
    directory = directory or contexts_dir()
    entries = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if not path.is_dir() or path.name.startswith("."):
                continue
            info_path = path / ENTRY_INFO
            try:
                info = json.loads(info_path.read_text())
                last_used = info_path.stat().st_mtime
            except (OSError, ValueError):
                info, last_used = {}, _mtime(path)
            size = sum(_size(f) for f in path.iterdir())
            entries.append(Entry(path.name, path, size, last_used, info))
    return sorted(entries, key=lambda e: e.last_used)


def write_info(directory: Path, key: str, info: dict[str, object]) -> None:
    """The host's summary of an entry, written by rename once every rank has saved its file."""
    path = directory / key / ENTRY_INFO
    tmp = path.with_name(f".{ENTRY_INFO}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def touch(directory: Path, key: str) -> None:
    """Mark an entry used now (its place in the eviction order)."""
    with contextlib.suppress(OSError):
        os.utime(directory / key / ENTRY_INFO)


def evict(directory: Path, max_bytes: int, keep: str | None = None) -> list[str]:
    """Remove least recently used entries until the whole store fits ``max_bytes`` (``keep`` last
    of all), and temporary files left by writers that died; returns the removed keys."""
    entries = list_entries(directory)
    total = sum(e.bytes for e in entries)
    removed = []
    for entry in sorted(entries, key=lambda e: (e.key == keep, e.last_used)):
        if total <= max_bytes:
            break
        shutil.rmtree(entry.path, ignore_errors=True)
        total -= entry.bytes
        removed.append(entry.key)
    now = time.time()
    for entry in entries:
        with contextlib.suppress(OSError):
            for file in entry.path.iterdir():
                if file.name.startswith(".") and now - _mtime(file) > _STALE_TEMP_S:
                    file.unlink()
    return removed


def clear(directory: Path | None = None) -> tuple[int, int]:
    """Remove every entry; returns (entries, bytes) removed."""
    entries = list_entries(directory)
    for entry in entries:
        shutil.rmtree(entry.path, ignore_errors=True)
    return len(entries), sum(e.bytes for e in entries)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
