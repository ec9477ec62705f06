"""The quality benchmark's scoring, dataset and report on hand-made answers: fast, no model."""

from __future__ import annotations

import pytest

from bench.quality import scoring
from bench.quality.dataset import load, select
from bench.quality.report import markdown, merged, totals, worse_than_generate
from bench.quality.systems import parse_variant


@pytest.fixture(scope="module")
def items():
    return {item.id: item for item in load()[1]}


def test_an_answer_is_right_when_any_pattern_is_found_case_insensitively():
    assert scoring.accepted("Use FC_DEBUG.", ["fc_debug"])
    assert scoring.accepted("It is bzip2 -k, or --KEEP", [r"(^|[^\w-])-k\b", r"--keep\b"])
    assert not scoring.accepted("Use the -f flag.", [r"(^|[^\w-])-k\b", r"--keep\b"])


def test_ligatures_and_line_breaks_copied_from_a_pdf_still_match():
    assert scoring.accepted("the header ﬁle is\nlibtasn1.h", [r"header file is libtasn1\.h"])


@pytest.mark.parametrize(
    ("item_id", "right", "wrong"),
    [
        ("bzip2-keep-flag", "The -k flag keeps them.", "Use -kdc or --keepall, or just keep them."),
        ("bzip2-default-memory", "About 3,700 k (3700 kbytes).", "About 7600k."),
        ("fontconfig-config-debug-value", "CONFIG, value 1024.", "The value is 10240."),
        ("mime-spec-version", "Version 0.21.", "Version 0.2.1 or 2.21."),
        ("tasn1-parser-check-option", "asn1Parser -c", "asn1Parser -check-all, --checked"),
        ("tasn1-unsupported-type", "The REAL type.", "It handles every type, really."),
        ("mdurl-hostname-max", "255 characters", "2550 characters"),
        ("logs-tests-passed", "13 tests passed.", "113 passed, 2 failed."),
        ("logs-compile-error-file", "markdown_it/rules_inline/emphasis.py, line 42", "emphasis_py"),
    ],
)
def test_the_datasets_patterns_on_hand_made_answers(items, item_id, right, wrong):
    assert scoring.accepted(right, items[item_id].accept)
    assert not scoring.accepted(wrong, items[item_id].accept)


def test_every_questions_evidence_is_matched_by_its_own_patterns(items):
    asks = [item for item in items.values() if item.command == "ask"]
    assert len(asks) >= 12
    for item in asks:
        assert item.accept and item.evidence and item.where, item.id
        assert scoring.accepted(item.evidence, item.accept), item.id
        assert not scoring.accepted(item.question, item.accept), f"{item.id}: the question gives it away"


def test_a_summary_needs_a_match_in_every_keyword_group(items):
    require = items["summary-pip-log"].require
    assert scoring.covers("Building fastframe failed: the header lz4frame.h is missing.", require)
    assert not scoring.covers("Building fastframe failed with a compiler error.", require)  # no cause
    assert not scoring.covers("The header lz4frame.h is missing.", require)  # no package, no failure


def test_a_loop_is_an_answer_cut_at_its_limit_while_repeating():
    loop = list(range(8)) * 3
    assert scoring.repeats(loop)
    assert not scoring.repeats(list(range(8)) * 2 + list(range(7)))
    assert scoring.repeats([5] * 10)  # one token over and over: overlapping runs count
    assert scoring.looped("max_tokens", loop)
    assert not scoring.looped("eos", loop)  # it stopped by itself: a verbose answer, not a loop
    assert not scoring.looped("max_tokens", list(range(100)))  # long, but never repeating
    assert scoring.looped("repetition", [1, 2, 3])  # the engine stopped it for looping


def test_a_loop_is_reported_as_looped_even_with_the_answer_inside():
    assert scoring.verdict(True, True) == scoring.LOOPED
    assert scoring.verdict(True, False) == scoring.RIGHT
    assert scoring.verdict(False, False) == scoring.WRONG


def test_select_by_id_prefix_then_limit(items):
    chosen = select(list(items.values()), ["bzip2", "logs-tests"], 3)
    assert [item.id for item in chosen] == ["bzip2-keep-flag", "bzip2-default-memory", "bzip2-author"]
    assert [item.id for item in select(list(items.values()), ["logs-tests"], None)] == ["logs-tests-passed"]


def test_a_variant_changes_settings_and_generation_fields_with_their_types():
    variant = parse_variant("star-rp:repetition_penalty=1.3,no_repeat_ngram=0,block_size=1024,top_p=0.9")
    assert variant.name == "star-rp"
    assert variant.settings == {"repetition_penalty": 1.3, "no_repeat_ngram": 0, "block_size": 1024}
    assert variant.generation == {"top_p": 0.9}
    assert parse_variant("plain:loop_stop=false,attention=global").settings == {
        "loop_stop": False,
        "attention": "global",
    }
    with pytest.raises(ValueError, match="unknown field"):
        parse_variant("x:no_such_field=1")
    with pytest.raises(ValueError):
        parse_variant("missing-assignments")


def _result(item, system, verdict, looped=False, matched=None):
    matched = verdict == scoring.RIGHT if matched is None else matched
    return {
        "item": item,
        "system": system,
        "verdict": verdict,
        "looped": looped,
        "matched": matched,
        "generated_tokens": 9,
        "seconds": 2.0,
        "blocks": 2,
    }


def test_the_report_counts_verdicts_and_names_every_item_where_generate_ranks_higher():
    report = {
        "systems": {"star": {"kind": "starcli", "attention": "star"}, "generate": {"kind": "generate"}},
        "items": [{"id": "a", "context_tokens": 5000}, {"id": "b", "context_tokens": 900}],
        "results": [
            _result("a", "star", scoring.RIGHT),
            _result("a", "generate", scoring.WRONG),
            _result("b", "star", scoring.LOOPED, looped=True, matched=True),
            _result("b", "generate", scoring.RIGHT),
        ],
    }
    counts = totals(report)
    assert counts["star"] | {} == {
        "right": 1,
        "wrong": 0,
        "looped": 1,
        "looped_with_answer": 1,
        "seconds": 4.0,
        "items": 2,
    }
    assert worse_than_generate(report) == [("b", "star", scoring.LOOPED, "generate", scoring.RIGHT)]
    text = markdown(report)
    assert "| star | 1 | 0 | 1 | 1 | 4 | 2.0 |" in text
    assert "| a | 5,000 | 2 | right (9) | wrong (9) |" in text
    assert "- b: star looped, generate right" in text


def test_a_loop_ranks_below_a_short_wrong_answer():
    report = {
        "systems": {"star": {"kind": "starcli"}, "greedy": {"kind": "generate"}},
        "results": [_result("a", "star", scoring.LOOPED, looped=True), _result("a", "greedy", scoring.WRONG)],
    }
    assert worse_than_generate(report) == [("a", "star", scoring.LOOPED, "greedy", scoring.WRONG)]
    report["results"] = [
        _result("a", "star", scoring.WRONG),
        _result("a", "greedy", scoring.LOOPED, looped=True),
    ]
    assert worse_than_generate(report) == []


def test_runs_over_the_same_items_merge_into_one_report():
    items = [{"id": "a", "context_tokens": 10}]
    defaults = {
        "systems": {"greedy": {"kind": "generate"}},
        "items": items,
        "results": [_result("a", "greedy", scoring.RIGHT)],
    }
    variants = {
        "systems": {"star-rp1": {"kind": "starcli", "attention": "star"}},
        "items": items,
        "results": [_result("a", "star-rp1", scoring.WRONG)],
    }
    both = merged([defaults, variants])
    assert list(both["systems"]) == ["greedy", "star-rp1"]
    assert worse_than_generate(both) == [("a", "star-rp1", scoring.WRONG, "greedy", scoring.RIGHT)]
    assert "(No plain `generate` system" in markdown(variants)
    with pytest.raises(ValueError, match="more than one run"):
        merged([defaults, defaults])
