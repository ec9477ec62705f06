"""The accuracy benchmark's task generation and scoring (bench/ruler): fast, no model weights."""

from __future__ import annotations

import collections
import re

import pytest

from bench.ruler.haystack import Needle, compose, fit, stratified_depths
from bench.ruler.scoring import postprocess, string_match_all, string_match_part
from bench.ruler.tasks import SUITES, TASKS, make_sample, zipf_counts


class WordTokenizer:
    """One token per whitespace-separated word: enough to count lengths without model files."""

    chat_template = None
    bos_token = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [hash(w) % 1000 for w in text.split()]}


@pytest.fixture(scope="module")
def tokenizer():
    return WordTokenizer()


def test_string_match_all_is_the_fraction_of_references_found_case_insensitively():
    assert string_match_all(" 1234567.", ["1234567"]) == 1.0
    assert string_match_all("Apple, PEAR", ["apple", "pear", "plum", "fig"]) == 0.5
    assert string_match_all("", ["x"]) == 0.0


def test_string_match_part_needs_one_reference():
    assert string_match_part("the answer is Paris", ["London", "paris"]) == 1.0
    assert string_match_part("the answer is Rome", ["London", "paris"]) == 0.0


def test_postprocess_turns_control_characters_into_newlines_and_strips():
    assert postprocess("\x00 abc\x07def \n") == "abc\ndef"


def test_compose_puts_needles_at_their_depth():
    units = [f"u{i}." for i in range(100)]
    text = compose(units, [Needle("NEEDLE", 0.3), Needle("LAST", 1.0), Needle("FIRST", 0.0)])
    words = text.split()
    assert words[0] == "FIRST" and words[-1] == "LAST"
    assert words[words.index("NEEDLE") + 1] == "u30."  # before unit round(0.3 * 100)


def test_stratified_depths_cover_every_slice():
    import random

    depths = sorted(stratified_depths(8, random.Random(1)))
    for i, d in enumerate(depths):
        assert 0.02 + 0.12 * i < d < 0.02 + 0.12 * (i + 1)


def test_fit_finds_the_largest_k_within_budget():
    assert fit(lambda k: k * 3 - 100, 1, 1000) == 33


def test_zipf_counts_follow_rank_to_the_minus_alpha():
    counts = zipf_counts(1000, 5)
    assert counts == sorted(counts, reverse=True) and counts[0] == 607 and counts[1] == 151


@pytest.mark.parametrize("suite", SUITES)
def test_samples_are_deterministic_for_a_seed(tokenizer, suite):
    a = make_sample(suite, tokenizer, 2048, seed=3, index=1)
    b = make_sample(suite, tokenizer, 2048, seed=3, index=1)
    c = make_sample(suite, tokenizer, 2048, seed=4, index=1)
    assert a.documents == b.documents and a.context_ids == b.context_ids
    assert [q.references for q in a.questions] == [q.references for q in b.questions]
    assert a.documents != c.documents


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("target", [2048, 4096])
def test_prompt_fills_the_target_without_passing_it(tokenizer, suite, target):
    sample = make_sample(suite, tokenizer, target, seed=0, index=0)
    assert 0.95 * target <= sample.prompt_tokens <= target


@pytest.mark.parametrize("suite", ["noise", "essay", "vt", "multi", "needles"])
def test_needles_are_present_at_the_requested_depth(tokenizer, suite):
    sample = make_sample(suite, tokenizer, 4096, seed=0, index=2)
    for q in sample.questions:
        assert q.needles and len(q.depths) == len(q.wanted_depths) == len(q.needles)
        for text, depth, wanted in zip(q.needles, q.depths, q.wanted_depths):
            assert sample.documents.count(text) == 1
            assert abs(depth - wanted) < 0.03, (text, depth, wanted)
        for ref in q.references:
            assert ref in sample.documents


def test_variable_chain_is_in_order_and_answers_are_its_names(tokenizer):
    sample = make_sample("vt", tokenizer, 2048, seed=0, index=0)
    (q,) = sample.questions
    positions = [sample.documents.index(t) for t in q.needles]
    assert positions == sorted(positions)
    assert q.needles[0].startswith(f"VAR {q.references[0]} = ")
    for prev, name, text in zip(q.references, q.references[1:], q.needles[1:]):
        assert text == f"VAR {name} = VAR {prev}."


def test_cwe_answers_are_the_words_repeated_thirty_times(tokenizer):
    sample = make_sample("cwe", tokenizer, 4096, seed=0, index=0)
    words = re.findall(r"\d+\. (\w+)", sample.documents)
    counts = collections.Counter(words)
    assert sorted(w for w, c in counts.items() if c == 30) == sorted(sample.questions[0].references)
    assert set(counts.values()) == {30, 3}


def test_fwe_answers_are_the_most_frequent_coded_words(tokenizer):
    sample = make_sample("fwe", tokenizer, 4096, seed=0, index=0)
    body = sample.documents.split("coded words. ", 1)[1]
    top = [w for w, _ in collections.Counter(body.split()).most_common(4)]
    assert top[0] == "...." and top[1:] == sample.questions[0].references


def test_every_task_is_asked_by_some_suite(tokenizer):
    asked = {q.task for s in SUITES for q in make_sample(s, tokenizer, 2048, 0, 0).questions}
    assert asked == set(TASKS)


def test_real_tokenizer_lengths(default_model):
    """With the model's own tokenizer (what the benchmark uses) the prompt still fits."""
    for suite in SUITES:
        sample = make_sample(suite, default_model.tokenizer, 2048, seed=0, index=0)
        assert 0.95 * 2048 <= sample.prompt_tokens <= 2048, suite
