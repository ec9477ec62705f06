"""A document beyond the default model's window, end to end (issue 13): about 1.2× its 8,192
tokens, read through the CLI with no flag; map-reduce over window-sized parts runs on its own
(the measured choice past the window, docs/long-inputs.md) and the fact 90% of the way in is
found, in the second part. The log comes from samples/make_logbook.py (the 150K-token
samples/logbook.txt, cut to its first 115 days, 9.8K tokens: the first part fills the window,
the fact at 90% falls ~800 tokens into the second; 140 days, 11.9K tokens, until 2026-12-02,
encoded a second part twice as long for the same check)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated")]

DAYS = 115  # 9.8K tokens: past the window, the fact at 90% in the second part
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def logbook(tmp_path_factory) -> Path:
    sys.path.insert(0, str(SAMPLES))
    try:
        from make_logbook import FACTS, logbook
    finally:
        sys.path.remove(str(SAMPLES))
    path = tmp_path_factory.mktemp("logbook") / f"logbook-{DAYS}-days.txt"
    path.write_text(logbook(DAYS))
    assert FACTS[-1][3] in path.read_text()
    return path


def test_a_document_past_the_window_is_answered_by_map_reduce(default_model, logbook):
    result = CliRunner().invoke(
        app,
        ["ask", str(logbook), "What is the serial number of the new lens?", "--json", "--max-tokens", "24"],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fallback"] == "map-reduce" and data["parts"] == 2
    assert 8_192 < data["context_tokens"] < 2 * 8_192
    assert [f["part"] for f in data["findings"]] == [2]  # the only part whose answer the text backs
    assert data["findings"][0]["tokens"][1] == data["context_tokens"]
    assert "36117" in data["answer"]
