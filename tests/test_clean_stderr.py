"""A normal run leaves stderr empty: no library warning, progress bar or advice reaches the user.

Each command runs as a real subprocess with the default model, under the warning filters a user
has (none forced), stdout and stderr both pipes (so no progress display of ours either). The
sources are chosen so that starcli itself has nothing to report: any line on stderr is noise from
a library, and a new one from a new release (a renamed argument's FutureWarning, a progress bar)
fails here rather than in every user's terminal. A run on two ranks, and an answer over a PDF
(the report of samples/README.md, with ``--json``), are checked the same way by
``test_cli_e2e.py::test_two_ranks_give_the_answer_of_one_and_a_clean_stderr`` and
``test_cli_e2e.py::test_ask_pdf_json_holds_the_fact_the_contract_keys_and_a_clean_stderr``; a
PDF's plain (not ``--json``) output by the dry run and the chat below.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_cli_e2e import NOTE, REPO, SAMPLES, subprocess_env

pytestmark = pytest.mark.slow

QUESTION = "What is the new ferry named?"

COMMANDS = {
    "summarize stdin": (["summarize", "-"], NOTE),
    "ask --json": (["ask", "-", QUESTION, "--json"], NOTE),
    "ask --dry-run": (["ask", str(SAMPLES / "report.pdf"), QUESTION, "--dry-run"], None),
    "ask --dry-run --json": (["ask", "-", QUESTION, "--dry-run", "--json"], NOTE),
    "ask, global attention": (["ask", "-", QUESTION, "--attention", "global"], NOTE),
    "chat, piped questions": (["chat", str(SAMPLES / "report.pdf")], "Who chaired it?\nWhen?\n"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_normal_run_writes_nothing_to_stderr(name):
    args, stdin = COMMANDS[name]
    proc = subprocess.run(
        [sys.executable, "-m", "starcli", *args, "--max-tokens", "8"],
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout.strip()
    if "--json" in args:
        json.loads(proc.stdout)
    assert proc.stderr.decode(errors="replace") == ""
