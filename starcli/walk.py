"""The "find files" and "filter" stages: walk a directory as a repository, explaining every skip.

Rules, checked in this order for each entry: symlinks are reported and never followed; FIFOs,
sockets and devices are skipped; default excludes (VCS metadata, dependencies, virtualenvs,
build outputs, caches, lock files); secret file names; gitignore (``.gitignore`` files at every
level, those of enclosing directories up to the repository root, ``.git/info/exclude``);
``--exclude``; ``--include``; the size cap. An ignored directory is not entered, as in git.

The walk is iterative with a depth limit and remembers the directories it has seen, so deep
trees and bind-mount loops end; results are sorted by path, so the order is deterministic.
Ignore patterns are matched in bounded time (``starcli.wildmatch``); an ignore file that is too
large or cannot be read, and a pattern left out, are reported as warnings, never dropped silently.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field

import pathspec

from starcli.documents import SkipKind, Skipped
from starcli.secretscan import secret_by_name
from starcli.textfile import TooLarge, format_size, read_bytes
from starcli.wildmatch import MAX_PATTERN_CHARS, MAX_WILDCARDS, BadPattern, gitignore_spec

MAX_DEPTH = 64
IGNORE_FILE_LIMIT = 1 << 20  # git reads any size; past this a warning says it was not applied
DEFAULT_EXCLUDED_DIRS = {
    **dict.fromkeys([".git", ".hg", ".svn", ".bzr"], "version control"),
    **dict.fromkeys(["node_modules", "bower_components", ".yarn"], "dependencies"),
    **dict.fromkeys([".venv", "venv", ".conda"], "virtualenv"),
    **dict.fromkeys(["build", "dist", "target", ".next", ".nuxt", ".eggs"], "build output"),
    **dict.fromkeys(
        [
            "__pycache__",
            ".pytest_cache",
            ".mypy_cache",
            ".ruff_cache",
            ".hypothesis",
            ".tox",
            ".nox",
            ".cache",
            ".gradle",
            ".parcel-cache",
            ".terraform",
        ],
        "cache",
    ),
}
DEFAULT_EXCLUDED_FILES = {
    **dict.fromkeys(
        [
            "package-lock.json",
            "npm-shrinkwrap.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "bun.lockb",
            "poetry.lock",
            "Pipfile.lock",
            "uv.lock",
            "pdm.lock",
            "Cargo.lock",
            "composer.lock",
            "Gemfile.lock",
            "go.sum",
            "flake.lock",
        ],
        "lock file",
    ),
    **dict.fromkeys([".DS_Store", "Thumbs.db", "desktop.ini"], "OS metadata"),
    **dict.fromkeys(["*.pyc", "*.pyo", "*.class", "*.o", "*.so", "*.dylib", "*.dll"], "build output"),
}


Why = tuple[SkipKind, str, str]  # a skip without its path: (kind, detail, note)


__all__ = ["BadPattern", "Found", "WalkResult", "compile_globs", "display_root", "walk_repository"]


@dataclass
class Found:
    path: str  # to open
    display: str  # to show: the walked directory as given, then the relative path


@dataclass
class WalkResult:
    files: list[Found] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _IgnoreFile:
    base: str  # directory it governs, relative to the anchor, "" or ending in "/"
    spec: pathspec.GitIgnoreSpec
    name: str  # as shown in reasons: ".gitignore", "src/.gitignore", ".git/info/exclude"


def display_root(root: str) -> str:
    """The walked directory as the user gave it, normalised: "." shows no prefix."""
    norm = os.path.normpath(root).replace(os.sep, "/")
    return "" if norm == "." else norm.rstrip("/") + "/"


def compile_globs(patterns, flag: str) -> pathspec.GitIgnoreSpec | None:
    if not patterns:
        return None
    try:
        return gitignore_spec(list(patterns), strict=True)[0]
    except BadPattern as exc:
        raise BadPattern(f"invalid {flag} pattern: {exc}") from exc


def walk_repository(
    root: str, *, include=(), exclude=(), use_gitignore: bool = True, max_file_bytes: int = 1 << 20
) -> WalkResult:
    """Every file under ``root`` that passes the rules, and every skip with its reason."""
    result = WalkResult()
    shown = display_root(root)
    includes, excludes = compile_globs(include, "--include"), compile_globs(exclude, "--exclude")
    prefix, layers = _enclosing_ignores(root, shown, result) if use_gitignore else ("", ())

    def skip(rel: str, kind: SkipKind, detail: str = "", note: str = "") -> None:
        result.skipped.append(Skipped(shown + rel or "./", kind, detail, note))

    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, str, int, tuple[_IgnoreFile, ...]]] = [(root, "", 0, layers)]
    while stack:
        directory, rel, depth, layers = stack.pop()
        try:
            info = os.stat(directory)
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skip(rel, SkipKind.UNREADABLE, str(exc.strerror or exc))
            continue
        if (info.st_dev, info.st_ino) in seen:
            skip(rel, SkipKind.DIRECTORY_LOOP)
            continue
        seen.add((info.st_dev, info.st_ino))
        if use_gitignore and any(e.name == ".gitignore" for e in entries):
            ignore_file = os.path.join(directory, ".gitignore")
            layer = _load_ignore_file(ignore_file, prefix + rel, shown + rel + ".gitignore", result)
            if layer is not None:
                layers = (*layers, layer)
        for entry in entries:
            child = rel + entry.name
            try:
                entry_info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                skip(child, SkipKind.UNREADABLE, str(exc.strerror or exc))
                continue
            mode = entry_info.st_mode
            if stat.S_ISLNK(mode):
                skip(child, SkipKind.SYMLINK)
            elif stat.S_ISDIR(mode):
                why = _dir_reason(entry, child, prefix, layers, excludes, depth)
                if why:
                    skip(child + "/", *why)
                else:
                    stack.append((entry.path, child + "/", depth + 1, layers))
            elif not stat.S_ISREG(mode):
                skip(child, SkipKind.NOT_REGULAR)
            else:
                why = _file_reason(entry.name, child, prefix, layers, excludes, includes)
                if why is None and entry_info.st_size > max_file_bytes:
                    why = SkipKind.SIZE_CAP, format_size(max_file_bytes), ""
                if why:
                    skip(child, *why)
                else:
                    result.files.append(Found(entry.path, shown + child))
    result.files.sort(key=lambda f: _sort_key(f.display))
    result.skipped.sort(key=lambda s: _sort_key(s.path))
    return result


def _sort_key(display: str) -> tuple[str, ...]:
    return tuple(display.rstrip("/").split("/"))


def _dir_reason(entry, child, prefix, layers, excludes, depth) -> Why | None:
    name = entry.name
    if name in DEFAULT_EXCLUDED_DIRS:
        return SkipKind.DEFAULT_EXCLUDE, DEFAULT_EXCLUDED_DIRS[name], ""
    if name.endswith(".egg-info"):
        return SkipKind.DEFAULT_EXCLUDE, "build output", ""
    if any(os.path.exists(os.path.join(entry.path, marker)) for marker in ("pyvenv.cfg", "conda-meta")):
        return SkipKind.DEFAULT_EXCLUDE, "virtualenv", ""
    matched = _ignored(layers, prefix + child + "/")
    if matched:
        return SkipKind.GITIGNORE, *matched
    if excludes is not None and excludes.match_file(child + "/"):
        return SkipKind.EXCLUDED, "", _pattern(excludes, child + "/")
    if depth + 1 > MAX_DEPTH:
        return SkipKind.TOO_DEEP, str(MAX_DEPTH), ""
    return None


def _file_reason(name, child, prefix, layers, excludes, includes) -> Why | None:
    for pattern, what in DEFAULT_EXCLUDED_FILES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return SkipKind.DEFAULT_EXCLUDE, what, ""
    secret = secret_by_name(child)
    if secret:
        return SkipKind.SECRET, secret, ""
    matched = _ignored(layers, prefix + child)
    if matched:
        return SkipKind.GITIGNORE, *matched
    if excludes is not None and excludes.match_file(child):
        return SkipKind.EXCLUDED, "", _pattern(excludes, child)
    if includes is not None and not includes.match_file(child):
        return SkipKind.NOT_INCLUDED, "", ""
    return None


def _ignored(layers: tuple[_IgnoreFile, ...], path: str) -> tuple[str, str] | None:
    """``(ignore file, pattern)`` if ``path`` (anchor-relative; directories end in "/") is ignored.

    The deepest ignore file with a decisive match wins, so a nested ``!pattern`` re-includes
    what a parent ignored; ``.git/info/exclude`` is the first layer, consulted last.
    """
    for layer in reversed(layers):
        if not path.startswith(layer.base):
            continue
        check = layer.spec.check_file(path[len(layer.base) :])
        if check.include is True:
            return layer.name, str(layer.spec.patterns[check.index].pattern)
        if check.include is False:
            return None
    return None


def _pattern(spec: pathspec.GitIgnoreSpec, path: str) -> str:
    check = spec.check_file(path)
    return getattr(spec.patterns[check.index], "pattern", "?") if check.index is not None else "?"


def _load_ignore_file(path: str, base: str, name: str, result: WalkResult) -> _IgnoreFile | None:
    """Parse one ignore file; lines git would reject are dropped, as git drops them. One that
    cannot be read or is too large ignores nothing, with a warning: the files it names are read."""
    try:
        text = read_bytes(path, IGNORE_FILE_LIMIT, walked=True).decode("utf-8", "replace")
    except TooLarge:
        result.warnings.append(
            f"{name}: larger than {format_size(IGNORE_FILE_LIMIT)}, its rules were not applied "
            "(the files it ignores are read); use --exclude for them"
        )
        return None
    except OSError as exc:
        result.warnings.append(f"{name}: unreadable ({exc.strerror or exc}), its rules were not applied")
        return None
    spec, left_out = gitignore_spec(text.splitlines())
    if left_out:
        result.warnings.append(
            f"{name}: {len(left_out)} pattern{'s' if len(left_out) > 1 else ''} not applied (longer "
            f"than {MAX_PATTERN_CHARS:,} characters or more than {MAX_WILDCARDS} wildcards), e.g. "
            f"{left_out[0][:40]}{'…' if len(left_out[0]) > 40 else ''}"
        )
    return _IgnoreFile(base, spec, name)


def _enclosing_ignores(root: str, shown: str, result: WalkResult):
    """``(prefix, layers)``: the ignore files of the repository around ``root``.

    Paths are matched relative to the repository's top directory (``root`` itself outside a
    repository); ``prefix`` is the path from there to ``root``. A directory the user names is
    walked even if an enclosing ``.gitignore`` ignores it; then the enclosing files are not used.
    """
    real = os.path.realpath(root)
    top = real
    while not os.path.lexists(os.path.join(top, ".git")):
        parent = os.path.dirname(top)
        if parent == top:
            return "", ()
        top = parent
    layers: list[_IgnoreFile] = []
    exclude = os.path.join(top, ".git", "info", "exclude")
    if os.path.isfile(exclude):
        layer = _load_ignore_file(exclude, "", _relative_name(exclude, root, real), result)
        if layer:
            layers.append(layer)
    prefix = "" if real == top else os.path.relpath(real, top).replace(os.sep, "/") + "/"
    directory, base = top, ""
    for part in [p for p in prefix.split("/") if p]:
        ignore = os.path.join(directory, ".gitignore")
        if os.path.isfile(ignore):
            layer = _load_ignore_file(ignore, base, _relative_name(ignore, root, real), result)
            if layer:
                layers.append(layer)
        base += part + "/"
        directory = os.path.join(directory, part)
        matched = _ignored(tuple(layers), base)
        if matched:
            name, pattern = matched
            result.warnings.append(
                f"{shown or '.'}: {name} ({pattern}) ignores this directory; "
                "walked anyway because it was named"
            )
            return prefix, ()
    return prefix, tuple(layers)


def _relative_name(path: str, root: str, real_root: str) -> str:
    """An enclosing ignore file's path as seen from where ``root`` was given."""
    return os.path.normpath(os.path.join(root, os.path.relpath(path, real_root))).replace(os.sep, "/")
