"""Generation that ends: the loop detector, the repetition penalty, the n-gram ban and the stop
reasons the decode loop reports (issue 20). The model is replaced by a step function whose logits
say exactly which token it prefers, so what the rules change is visible token by token."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoTokenizer

from engine.comm import Comm
from engine.errors import BadSettingError
from engine.generate import LOOP_TOKENS, RUN_COPIES, RUN_TOKENS, Sampler, decode_loop, repeating_tail
from engine.settings import GenerationSettings
from tests.helpers import save_byte_tokenizer

VOCAB = 64


def test_a_run_of_one_token_is_a_loop_only_once_it_is_long():
    assert repeating_tail([5] * (RUN_TOKENS * RUN_COPIES - 1)) is None
    assert repeating_tail([1, 2, 3] + [5] * RUN_TOKENS * RUN_COPIES) is not None


def test_a_sentence_repeated_with_one_word_changed_is_a_loop():
    """docs/quality.md's template loop: never periodic, yet its 8-token runs come back."""
    sentence = [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]  # "is not supported. The function asn1_"
    names = [[100 + i, 200 + i] for i in range(10)]
    answer = [1, 2] + [t for name in names for t in name + sentence]
    assert repeating_tail(answer[: 2 + 2 * 12]) is None  # the sentence said twice: fine
    assert repeating_tail(answer[: 2 + 3 * 12]) is not None  # the third time: a loop


def test_a_repeated_sentence_is_a_loop_at_its_third_copy():
    sentence = list(range(10, 30))  # 20 tokens
    assert repeating_tail([1, 2] + sentence * 2 + sentence[: RUN_TOKENS - 1]) is None
    assert repeating_tail([1, 2] + sentence * 2 + sentence[:RUN_TOKENS]) == 40  # back to copy 1
    assert repeating_tail([1, 2] + sentence * 3 + [99]) is None  # it broke out of the loop


def test_varied_text_is_no_loop():
    ids = [i * 7919 % 1000 for i in range(400)]
    assert repeating_tail(ids) is None
    listing = [t for i in range(30) for t in (3, 4, 100 + i)]  # "- item i" lines: a pattern, no loop
    assert repeating_tail(listing) is None


def _logits(favourite: int, runner_up: int | None = None) -> torch.Tensor:
    logits = torch.zeros(1, VOCAB)
    logits[0, favourite] = 5.0
    if runner_up is not None:
        logits[0, runner_up] = 4.8
    return logits


def test_penalty_moves_greedy_off_a_recent_token_only():
    sampler = Sampler(GenerationSettings(repetition_penalty=1.1), torch.device("cpu"))
    assert sampler(_logits(7, 8), history=[]) == 7
    assert sampler(_logits(7, 8), history=[7]) == 8  # 5.0 / 1.1 < 4.8
    assert sampler(_logits(7, 8), history=[7] + [1] * 64) == 7  # 7 left the 64-token window
    off = Sampler(GenerationSettings(repetition_penalty=1.0), torch.device("cpu"))
    assert off(_logits(7, 8), history=[7]) == 7


def test_penalty_pushes_a_negative_logit_further_down():
    logits = torch.full((1, VOCAB), -10.0)
    logits[0, 3], logits[0, 4] = -1.0, -1.05
    sampler = Sampler(GenerationSettings(repetition_penalty=1.1), torch.device("cpu"))
    assert sampler(logits, history=[3]) == 4  # -1.1 < -1.05


def test_no_repeat_ngram_bans_the_token_that_would_repeat_a_trigram():
    sampler = Sampler(GenerationSettings(repetition_penalty=1.0, no_repeat_ngram=3), torch.device("cpu"))
    history: list[int] = []
    for token in (1, 2, 3, 9, 1, 2):  # fed one step at a time, as the decode loop does
        history.append(token)
        sampler(_logits(0), history=history)
    assert sampler(_logits(3, 4), history=history) == 4  # "1 2 3" was said; "1 2 4" was not


@pytest.mark.parametrize(
    "bad",
    [
        {"repetition_penalty": 0.9},
        {"no_repeat_ngram": 1},
        {"no_repeat_ngram": -1},
        {"default_max_tokens": 0},
    ],
)
def test_bad_generation_settings_are_refused(bad):
    with pytest.raises(BadSettingError):
        GenerationSettings(**bad).validate()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A real byte-level tokenizer built offline (gpt2-style BPE over bytes)."""
    path = tmp_path_factory.mktemp("tok")
    save_byte_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def _decode(
    script: list[int], tokenizer, overlap: bool | None = None, fed: list[int] | None = None, **settings
):
    """Decode with a 'model' that proposes ``script`` in order (then repeats its last token); the
    ``DecodeResult``. ``fed``: collects the tokens each step was run on."""
    steps = iter(script[1:] + [script[-1]] * 10_000)
    vocab = len(tokenizer)

    def logits_for(token: int) -> torch.Tensor:
        out = torch.zeros(1, vocab)
        out[0, token] = 10.0
        return out

    def step(token: int) -> torch.Tensor:
        if fed is not None:
            fed.append(token)
        return logits_for(next(steps))

    sink = []
    generation = GenerationSettings(repetition_penalty=1.0, **settings)
    events = decode_loop(
        logits_for(script[0]),
        step,
        Comm(),
        generation,
        tokenizer,
        eos_ids=set(),
        query_index=0,
        started=time.perf_counter(),
        sink=sink,
        overlap=overlap,
    )
    streamed = "".join(event.text for event in events)
    assert streamed == sink[0].text  # what was shown is the answer, nothing held back or added
    return sink[0]


def _run(script: list[int], tokenizer, **settings) -> tuple[str, str, int]:
    result = _decode(script, tokenizer, **settings)
    return result.text, result.stop_reason, result.tokens


def test_a_looping_answer_stops_with_reason_repetition(tokenizer):
    ids = tokenizer.encode('Use it like this: """', add_special_tokens=False)
    text, reason, tokens = _run(ids, tokenizer, max_tokens=500)
    assert reason == "repetition"
    assert tokens <= len(ids) + LOOP_TOKENS  # stopped as soon as the run was long enough
    assert text.startswith("Use it like this:")


def test_loop_stop_can_be_turned_off(tokenizer):
    ids = tokenizer.encode("ab", add_special_tokens=False)
    text, reason, tokens = _run(ids, tokenizer, max_tokens=80, stop_on_repetition=False)
    assert (reason, tokens) == ("max_tokens", 80)


def test_a_varied_answer_runs_to_its_limit(tokenizer):
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 2, add_special_tokens=False)
    text, reason, tokens = _run(ids[:60], tokenizer, max_tokens=50)
    assert (reason, tokens) == ("max_tokens", 50)
    assert text == tokenizer.decode(ids[:50])


@pytest.mark.parametrize(
    ("script", "settings", "reason"),
    [
        ("Hello there. STOP and more", {"stop": ["STOP"], "max_tokens": 100}, "stop"),
        ("The quick brown fox jumps over the lazy dog.", {"max_tokens": 12}, "max_tokens"),
        ("ab", {"max_tokens": 500}, "repetition"),
    ],
)
def test_the_step_order_changes_only_which_tokens_are_fed(tokenizer, script, settings, reason):
    """Launching each step before the host's text and stop checks (the GPU order) gives the same
    answer as checking first; the tokens fed are the answer's, each once and in order, and the
    token left unfed (``pending``) is exactly the rest: one step more only where a stop string
    or a loop was found after its step was launched."""
    ids = tokenizer.encode(script, add_special_tokens=False)
    results = {}
    for order in (True, False):
        fed_tokens: list[int] = []
        result = _decode(ids, tokenizer, overlap=order, fed=fed_tokens, **settings)
        results[order] = result
        assert result.stop_reason == reason
        assert result.fed == len(fed_tokens)
        answer = ids[: result.tokens] if reason != "repetition" else None
        if answer is not None:
            assert fed_tokens + result.pending == answer
    first, second = results[True], results[False]
    assert (first.text, first.tokens, first.stop_reason) == (second.text, second.tokens, second.stop_reason)
    launched_early = results[True]
    checked_first = results[False]
    assert checked_first.pending and checked_first.fed == checked_first.tokens - 1
    if reason == "max_tokens":  # the limit is known before the step: nothing is launched for it
        assert launched_early.fed == launched_early.tokens - 1 and launched_early.pending
    else:
        assert launched_early.fed == launched_early.tokens and launched_early.pending == []
