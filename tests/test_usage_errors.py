"""Usage errors (issue 19): every bad option value, unknown option or command, missing argument,
empty question or empty SOURCE ends as exactly one ``Error: ...`` line on stderr and exit 2,
with nothing on stdout and no box (typer draws one, and narrow terminals and logs cut it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from starcli.cli import app

DOC = "samples/long.txt"
CASES = {
    "bad choice": (["ask", DOC, "q?", "--attention", "bogus"], "'bogus' is not one of star, global, ring"),
    "bad position": (["summarize", DOC, "--positions", "far"], "'far' is not one of auto, global, local"),
    "bad device": (["summarize", DOC, "--device", "tpu"], "'tpu' is not one of auto, cpu, cuda"),
    "bad int": (["ask", DOC, "q?", "--block-size", "abc"], "Invalid value for '--block-size'"),
    "bad float": (["ask", DOC, "q?", "--temperature", "warm"], "Invalid value for '--temperature'"),
    "int below its minimum": (["ask", DOC, "q?", "--block-size", "1"], "'--block-size'"),
    "zero ranks": (["summarize", DOC, "--nproc", "0"], "Invalid value for '--nproc'"),
    "unknown option": (["ask", DOC, "q?", "--bogus"], "No such option: --bogus"),
    "unknown command": (["explain", DOC], "No such command 'explain'"),
    "missing argument": (["ask", "--json"], "Missing argument 'QUESTION'"),
    "missing option value": (["ask", DOC, "q?", "--max-tokens"], "'--max-tokens' requires an argument"),
    "empty question": (["ask", DOC, ""], "Invalid value for QUESTION: the question is empty"),
    "blank question": (["ask", DOC, "   "], "Invalid value for QUESTION: the question is empty"),
    "empty source": (["ask", "", "q?"], "Invalid value for SOURCE: '' names nothing"),
    "empty source among others": (["summarize", DOC, ""], "Invalid value for SOURCE: '' names nothing"),
    "forgotten question": (
        ["ask", DOC],
        f"missing QUESTION ('{DOC}' is a file, not a question); try: starcli ask {DOC} \"your question\"",
    ),
}


@pytest.mark.parametrize("args, says", CASES.values(), ids=CASES.keys())
def test_one_error_line_and_exit_2(args, says, monkeypatch):
    monkeypatch.delenv("STARCLI_NPROC", raising=False)
    result = CliRunner().invoke(app, args, prog_name="starcli")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert says in lines[0]
    assert "(env var:" not in lines[0] and "╭" not in lines[0]


def test_a_bad_value_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("STARCLI_NPROC", "0")
    result = CliRunner().invoke(app, ["summarize", DOC], prog_name="starcli")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: Invalid value for '--nproc' (from $STARCLI_NPROC): Input should be greater than or "
        "equal to 1; see 'starcli summarize --help'"
    ]


def test_bare_command_still_prints_its_help():
    result = CliRunner().invoke(app, ["ask"], prog_name="starcli")
    assert result.exit_code == 2 and "QUESTION" in result.output and "Error:" not in result.output
