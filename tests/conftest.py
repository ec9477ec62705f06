"""Shared fixtures: tiny random models for fast exactness tests, the real default model for
end-to-end ones (converted once into the user's starcli cache and shared by every test), and
``isolated`` for tests that run the CLI."""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import tiny_config


@pytest.fixture(scope="session", autouse=True)
def private_contexts(tmp_path_factory):
    """Saved contexts written by the tests go to a cache of this session, never the user's: the
    session's ``STARCLI_CACHE`` links the real cache's converted models, token-estimate files and
    torch's compile cache (made once, shared) and keeps the rest, the contexts, to itself."""
    from engine.paths import cache_dir

    real, private = cache_dir(), tmp_path_factory.mktemp("starcli-cache")
    for name in ("models", "tokenizers", "torchinductor"):
        (real / name).mkdir(parents=True, exist_ok=True)
        (private / name).symlink_to(real / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STARCLI_CACHE", str(private))
        yield private


@pytest.fixture(scope="session")
def tiny_llama():
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(tiny_config("llama")).eval()


@pytest.fixture(scope="session")
def tiny_qwen2():
    torch.manual_seed(0)
    from transformers import Qwen2ForCausalLM

    return Qwen2ForCausalLM(tiny_config("qwen2")).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama with a byte-level tokenizer, saved as a model directory the CLI loads
    with ``--model`` in a fraction of a second."""
    from transformers import LlamaForCausalLM

    from tests.helpers import save_byte_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama-cli")
    config = tiny_config("llama", vocab=256, max_position_embeddings=2048)
    LlamaForCausalLM(config).eval().save_pretrained(path)
    save_byte_tokenizer(path)
    return str(path)


@pytest.fixture(scope="session")
def default_model():
    from engine.models import load_model

    return load_model(None, "cpu")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No user config or STARCLI_* variables leak into a test (STARCLI_CACHE stays: the session's
    private cache, ``private_contexts``, with the converted default model shared)."""
    for name in list(os.environ):
        if name.startswith("STARCLI_") and name != "STARCLI_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("STARCLI_CONFIG", str(tmp_path / "no-config.toml"))
