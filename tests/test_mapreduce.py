"""Map-reduce over window-sized parts (issue 13's fallback past the window): how the documents are
cut, which part answers count, which one stands, and the CLI path end to end on a tiny model
whose window is 512 tokens.

The answering model is replaced by a scripted one where the logic is under test (what a part
says is the input, what the reduce does with it is the behaviour); the end-to-end test runs the
real engine."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from transformers import AutoTokenizer

from engine.events import Stats, Token
from starcli import mapreduce as mr
from tests.helpers import save_byte_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("byte-tokenizer")
    save_byte_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def _stats(answer: str, query: int = 0) -> Stats:
    return Stats(query, answer, "star", 1, 0, 0, 0, 0, len(answer), "eos", 0.0, 0.0, 0.0, 0.0, 0.0)


class Scripted:
    """Answers each prompt by the first rule whose key its context holds; records every prompt."""

    def __init__(self, rules: dict[str, str], default: str = "NOT FOUND", final: str = "final answer"):
        self.rules, self.default, self.final = rules, default, final
        self.prompts: list[tuple[str, str, int]] = []

    def __call__(self, prompt, max_tokens: int) -> Iterator:
        self.prompts.append((prompt.context_text, prompt.query_text, max_tokens))
        if "Above are" in prompt.query_text:  # the reduce pass
            yield Token(0, 1, self.final)
            yield _stats(self.final)
            return
        answer = next((a for key, a in self.rules.items() if key in prompt.context_text), self.default)
        yield _stats(answer)


def _document(lines: int, facts: dict[int, str]) -> str:
    body = [facts.get(i, f"Line {i} of the harbour log: the tide was ordinary.") for i in range(lines)]
    return "===== log.txt =====\n" + "\n".join(body) + "\n"


def test_parts_cover_the_text_in_order_within_the_budget_and_cut_at_line_ends(tokenizer):
    text = _document(200, {})
    parts = mr.split_parts(tokenizer, text, 700)
    assert len(parts) > 5
    assert parts[0].first_token == 0 and parts[-1].last_token == len(tokenizer(text)["input_ids"])
    assert all(a.last_token == b.first_token for a, b in zip(parts, parts[1:]))
    rebuilt = parts[0].text + "".join(p.text.split("\n", 1)[1] for p in parts[1:])
    assert rebuilt == text  # every later part repeats the header line, nothing else is added or lost
    for part in parts:
        assert len(tokenizer(part.text)["input_ids"]) <= 700
        assert part.text.endswith("\n")  # a line end fell in every part's last fifth
    assert all(p.text.startswith("===== log.txt (continued) =====\n") for p in parts[1:])


def test_the_part_that_holds_the_answer_answers_and_invented_numbers_do_not_count(tokenizer):
    text = _document(120, {77: "The vault code of the harbour office is 7421."})
    model = Scripted({"7421": "The vault code is 7421."}, default="The vault code is 1234.")
    result = mr.map_reduce(tokenizer, model, text, "What is the vault code?", window=1024, final_tokens=64)
    assert result.answer == "The vault code is 7421." and not result.final_pass
    assert [f.part for f in result.findings] == [next(p.index for p in result.parts if "7421" in p.text)]
    assert len(result.answers) == len(result.parts) > 2  # every part was asked; only one backs its answer
    assert all(max_tokens == mr.MAP_ANSWER_TOKENS["ask"] for _, _, max_tokens in model.prompts)
    assert all(len(tokenizer(c + q)["input_ids"]) + 96 <= 1024 for c, q, _ in model.prompts)


def test_of_two_backed_findings_the_one_beside_the_question_stands(tokenizer):
    text = _document(
        160,
        {
            20: "Crates unloaded on pier 9 numbered 5316 in all.",
            130: "The vault code of the harbour office is 8802.",
        },
    )
    model = Scripted({"5316": "The vault code is 5316.", "8802": "The vault code is 8802."})
    result = mr.map_reduce(
        tokenizer, model, text, "What is the vault code of the harbour office?", window=1024, final_tokens=64
    )
    assert len(result.findings) == 1 and result.answer == "The vault code is 8802."
    assert not result.final_pass


def test_findings_that_tie_go_to_a_final_pass_over_them(tokenizer):
    text = _document(160, {20: "The vault code is 5316.", 130: "The vault code is 8802."})
    model = Scripted({"5316": "The vault code is 5316.", "8802": "The vault code is 8802."}, final="8802")
    result = mr.map_reduce(tokenizer, model, text, "What is the vault code?", window=1024, final_tokens=64)
    assert result.final_pass and result.answer == "8802" and len(result.findings) == 2
    context, query, max_tokens = model.prompts[-1]
    assert "Found in part" in context and "5316" in context and "8802" in context
    assert "What is the vault code?" in query and max_tokens == 64


def test_when_no_part_answers_the_output_says_so(tokenizer):
    model = Scripted({}, default="NOT FOUND")
    result = mr.map_reduce(
        tokenizer, model, _document(100, {}), "What is the code?", window=1024, final_tokens=64
    )
    assert result.stats is None and not result.findings and not result.final_pass
    assert result.answer.startswith("NOT FOUND: none of the") and str(len(result.parts)) in result.answer


def test_a_summary_combines_every_part(tokenizer):
    model = Scripted({}, default="A quiet stretch of the log.", final="The whole log, summed up.")
    result = mr.map_reduce(
        tokenizer, model, _document(100, {}), "", window=1024, final_tokens=64, summarize=True
    )
    assert result.final_pass and result.answer == "The whole log, summed up."
    assert len(result.findings) == len(result.parts) > 1
    assert all("Summarize this part" in q for _, q, _ in model.prompts[:-1])


def test_grounding_and_evidence_rules():
    part = "Crates on pier 9: 5,316. The vault code of the harbour office is 8802."
    assert mr.grounded("It is 8802.", part, "What is the vault code?")
    assert mr.grounded("There were 5316 crates.", part, "How many crates?")  # separators ignored
    assert not mr.grounded("It is 9999.", part, "What is the vault code?")
    assert (
        mr.is_not_found("NOT FOUND") and mr.is_not_found("**Not found** in this part") and mr.is_not_found("")
    )
    question = "What is the vault code of the harbour office?"
    assert mr.evidence_score("8802", part, question) > mr.evidence_score(
        "5316", part[:25] + " " * 600 + part[25:], question
    )


def test_past_the_window_the_cli_maps_and_reduces(tmp_path, isolated):
    """A tiny random model with a 512-token window and a 1,900-byte document (one token a byte):
    the run goes to map-reduce on its own, every part's prompt fits the window, and --json says
    what ran; --fallback refuse stops with the way out instead."""
    import torch
    from transformers import LlamaForCausalLM
    from typer.testing import CliRunner

    from starcli.cli import app
    from tests.helpers import tiny_config

    torch.manual_seed(0)
    model_dir = tmp_path / "tiny"
    LlamaForCausalLM(tiny_config("llama", vocab=256, max_position_embeddings=512)).save_pretrained(model_dir)
    save_byte_tokenizer(model_dir)
    doc = tmp_path / "log.txt"
    doc.write_text("".join(f"Line {i}: the tide was ordinary.\n" for i in range(60)))
    args = ["ask", str(doc), "What was the tide?", "--model", str(model_dir), "--max-tokens", "8"]
    result = CliRunner().invoke(app, [*args, "--json", "--no-cache"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fallback"] == "map-reduce" and data["parts"] >= 4, {
        k: data[k] for k in ("parts", "context_tokens", "findings")
    }
    assert data["context_tokens"] >= 1_900  # the whole document's tokens, not one part's
    assert all(0 <= f["tokens"][0] < f["tokens"][1] <= data["context_tokens"] for f in data["findings"])
    refused = CliRunner().invoke(app, [*args, "--fallback", "refuse"])
    assert refused.exit_code == 2 and "--fallback map-reduce" in refused.stderr


def test_an_input_past_map_reduce_reach_is_refused_up_front(tmp_path, isolated, monkeypatch):
    """More parts than ``MAX_PARTS`` would take hours: refused before any tokenizer or model
    loads, in the dry run as in the run, naming the passes it would take and the ways out."""
    from typer.testing import CliRunner

    from starcli import launch
    from starcli.cli import app

    monkeypatch.setattr(mr, "MAX_PARTS", 1)
    monkeypatch.setattr(
        launch, "load_tokenizer", lambda *a: pytest.fail("stopped too late: after tokenizing")
    )
    doc = tmp_path / "log.txt"
    doc.write_text("".join(f"Line {i}: the tide was ordinary.\n" for i in range(2000)))
    for extra in ([], ["--dry-run"]):
        result = CliRunner().invoke(app, ["ask", str(doc), "What was the tide?", *extra])
        assert result.exit_code == 2, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert (
            line.startswith("Error: the input is about")
            and "passes (at most 1)" in line
            and "--include" in line
        )
