"""Shared fixtures: tiny random models for fast exactness tests, the real default model for
end-to-end ones (converted once into the user's starcli cache and shared by every test)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_config


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
def default_model():
    from engine.models import load_model

    return load_model(None, "cpu")
