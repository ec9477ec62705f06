"""Prompt assembly: instructions, exact token halves, and the window check before any model loads."""

from __future__ import annotations

import pytest

from engine.errors import ContextTooLongError
from engine.runplan import fit_max_tokens
from engine.settings import DEFAULT_MAX_TOKENS
from starcli import prompt
from starcli.prompt import build, summary_instructions


class WordTokenizer:
    """One token per whitespace-separated word; no chat template (the plain fallback prompt)."""

    chat_template = None
    bos_token = "<s>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [len(word) for word in text.split()]}


def test_summary_instructions_pick_repository_for_directories(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert summary_instructions([str(tmp_path)]) == prompt.SUMMARIZE_REPOSITORY
    assert summary_instructions([str(tmp_path / "a.txt")]) == prompt.SUMMARIZE_DOCUMENT
    assert summary_instructions(["-"]) == prompt.SUMMARIZE_DOCUMENT


def test_ask_instructions_keep_the_question():
    text = prompt.ask_instructions("  Who wrote it?\n")
    assert text.endswith("Question: Who wrote it?")


def test_build_puts_documents_in_the_context_and_question_in_the_query():
    built = build(WordTokenizer(), "alpha beta gamma", "which letter?")
    assert "alpha beta gamma" in built.context_text and "which letter?" not in built.context_text
    assert "which letter?" in built.query_text
    assert len(built.context_ids) == 3  # "<s>alpha", "beta", "gamma"
    assert built.query_ids == [len(w) for w in built.query_text.split()]


def test_build_passes_the_system_prompt():
    built = build(WordTokenizer(), "alpha", "which?", system="Be terse.")
    assert "Be terse." in built.context_text


def test_fit_max_tokens_keeps_a_limit_that_fits():
    assert fit_max_tokens(100, 10, 50, window=200) == 50
    assert fit_max_tokens(100, 10, 5000, window=None) == 5000
    assert fit_max_tokens(100, 10, None, window=None) == DEFAULT_MAX_TOKENS


def test_fit_max_tokens_lowers_a_default_limit_to_the_room_left():
    assert fit_max_tokens(150, 10, None, window=200) == 40


def test_fit_max_tokens_refuses_an_explicit_limit_beyond_the_window():
    with pytest.raises(ContextTooLongError) as info:
        fit_max_tokens(150, 10, 512, window=200)
    message = str(info.value)
    assert "672" in message and "200" in message and "--max-tokens" in message


def test_input_beyond_the_window_is_refused_never_truncated():
    with pytest.raises(ContextTooLongError) as info:
        fit_max_tokens(9000, 20, None, window=8192)
    message = str(info.value)
    assert "9,020" in message and "8,192" in message  # both numbers
    assert "--include/--exclude" in message and "longer context" in message  # and the ways out
    assert "--max-tokens" not in message  # a shorter answer would not help


def test_the_window_is_read_from_a_local_config(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(max_position_embeddings=1234).save_pretrained(tmp_path)
    window, cost = prompt.model_facts(str(tmp_path))
    assert window == 1234 and cost is not None
    assert prompt.model_facts(str(tmp_path / "missing")) == (None, None)


def test_an_unsupported_model_is_refused_from_its_config_before_weights_load(monkeypatch):
    from transformers import GPT2Config

    from engine.errors import UnsupportedModelError
    from starcli import prompt

    monkeypatch.setattr(prompt, "model_config", lambda model, convert=True: GPT2Config(n_layer=1))
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        prompt.model_facts("some/gpt2")
    assert UnsupportedModelError("gpt2", "x").exit_code == 2
