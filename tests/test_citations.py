"""Citations (issue 19): line marks in the context, the answer's citations parsed and checked
against real sources (samples/, generated PDFs), --json's ``citations``, links on a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli import launch, prompt
from starcli.citations import LINE_MARK_EVERY, find_citations, mark_lines
from starcli.cli import app
from starcli.ingest import ingest, render_documents
from starcli.render import Renderer
from tests.pdf_factory import make_pdf
from tests.test_cli import ANSWER, WordTokenizer, scripted, stats

SERVER = "samples/tinyrepo/pebble/server.py"


@pytest.fixture(scope="module")
def docs():
    return ingest([SERVER, "samples/report.pdf", "samples/long.txt"]).documents


def test_line_marks_every_tenth_line_and_nothing_else():
    text = "".join(f"line {n}\n" for n in range(1, 26))
    marked = mark_lines(text)
    lines = marked.split("\n")
    assert lines[9] == "[line 10] line 10" and lines[19] == "[line 20] line 20"
    assert [i + 1 for i, line in enumerate(lines) if line.startswith("[line ")] == [10, 20]
    assert marked.replace("[line 10] ", "").replace("[line 20] ", "") == text
    context = render_documents(ingest([SERVER]).documents)
    with open(SERVER, encoding="utf-8") as handle:
        source = handle.read().split("\n")
    for number in range(LINE_MARK_EVERY, len(source), LINE_MARK_EVERY):
        assert f"\n[line {number}] {source[number - 1]}\n" in context  # the mark is that line's number


def test_line_citations_are_checked_against_the_file(docs):
    answer = (
        f"The default port is 7421 ({SERVER}:14).\n"
        'The comment says "listens on port 7421 by default" (server.py:13).\n'
        'It says "listens on port 9999" (server.py:13).\n'
        "The handler is at server.py:999.\n"
        "See nope.py:3 too.\n"
    )
    found = find_citations(answer, docs)
    assert [(c.path, c.line, c.verified) for c in found] == [
        (SERVER, 14, True),
        (SERVER, 13, True),
        (SERVER, 13, False),
        (SERVER, 999, False),
        ("nope.py", 3, False),
    ]
    assert found[1].quote == "listens on port 7421 by default"
    assert found[2].reason == f"the quoted words are not in {SERVER} at lines 3-23"
    assert found[3].reason.startswith(f"{SERVER} has no line 999 (it has ")
    assert found[4].reason == "no source named nope.py"


def test_page_citations_on_the_sample_report(docs):
    answer = (
        'Revenue was "412.6 million Norwegian kroner" [page 1].\n'
        "The report has a page 40 [page 40].\n"
        'It said "412.6 million Norwegian kroner" (samples/report.pdf, page 2).\n'
        "See report.pdf p. 1.\n"
    )
    found = find_citations(answer, docs)
    assert [(c.path, c.page, c.verified) for c in found] == [
        ("samples/report.pdf", 1, True),
        ("samples/report.pdf", 40, False),
        ("samples/report.pdf", 2, False),
        ("samples/report.pdf", 1, True),
    ]
    assert found[1].reason == "samples/report.pdf has no page 40"
    assert found[2].reason == "the quoted words are not in samples/report.pdf at page 2"


def test_a_generated_pdf_page_by_page(tmp_path):
    path = tmp_path / "minutes.pdf"
    path.write_bytes(make_pdf([["The board met in Bergen."], None, ["Budget approved: 3.2 million."]]))
    documents = ingest([str(path)]).documents
    found = find_citations('"Budget approved" [page 3]; "met in Bergen" [page 3]; blank [page 2].', documents)
    assert [(c.page, c.verified) for c in found] == [(3, True), (3, False), (2, True)]


def test_json_has_citations_and_a_terminal_gets_links(monkeypatch, docs):
    answer = f"Port 7421 ({SERVER}:14); not {SERVER}:500."
    events = [*ANSWER[:-1], stats(answer)]
    monkeypatch.setattr(launch, "load_tokenizer", lambda model: WordTokenizer())
    monkeypatch.setattr(prompt, "model_facts", lambda model, convert=True: (8192, None))
    monkeypatch.setattr(launch, "run_request", scripted(*events))
    result = CliRunner().invoke(app, ["ask", SERVER, "Which port?", "--json"])
    assert result.exit_code == 0, result.stderr
    with open(SERVER, encoding="utf-8") as handle:
        lines = len(handle.read().splitlines())
    assert json.loads(result.stdout)["citations"] == [
        {"text": f"{SERVER}:14", "path": SERVER, "line": 14, "verified": True},
        {
            "text": f"{SERVER}:500",
            "path": SERVER,
            "line": 500,
            "verified": False,
            "reason": f"{SERVER} has no line 500 (it has {lines})",
        },
    ]
    plain = CliRunner().invoke(app, ["ask", SERVER, "Which port?"])
    assert f"warning: unverified citation {SERVER}:500: {SERVER} has no line 500" in plain.stderr

    out, err = io.StringIO(), Terminal()
    renderer = Renderer(out=out, err=err)
    renderer.citations = find_citations(answer, docs)
    renderer.finish_answer(None)
    shown = err.getvalue()
    url = Path(SERVER).resolve().as_uri()
    assert "\x1b]8;id=" in shown and f";{url}\x1b\\" in shown  # an OSC 8 hyperlink to the file
    assert f"{SERVER}:14" in shown
    assert f": not verified, {SERVER} has no line 500" in shown


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as rich checks."""

    def isatty(self) -> bool:
        return True
