"""The terminal and the exit-code contract on every output path (issue 18): whatever comes from
the input is shown with its control characters escaped (``--json`` keeps the exact strings), and
every way the command can end keeps its documented exit code and one ``Error:`` line.

Most cases run ``starcli ask … --dry-run`` in-process; a closed stdout and a pipe closed early
need a real process.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli.cli import app
from starcli.render import Renderer
from tests.test_hostile_cli import permissions_enforced  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("isolated")
REPO = Path(__file__).resolve().parents[1]
HOSTILE_NAMES = {
    "title\x1b]0;pwned\x07.txt": "title\\033]0;pwned\\a.txt",  # retitles the terminal
    "red\x1b[31mflag.txt": "red\\033[31mflag.txt",
    "two\nlines.txt": "two\\nlines.txt",  # split a plan line in two
    "bidi\u202etxt.exe": "bidi\\342\\200\\256txt.exe",  # shows as "exe.txt"
}


def invoke(*args: str, input: str | bytes | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


# --- what the terminal is shown -----------------------------------------------------------------
def test_hostile_file_names_are_escaped_in_the_plan_and_exact_in_json(tmp_path):
    for name in HOSTILE_NAMES:
        (tmp_path / name).write_text("some text\n")
    result = invoke("ask", str(tmp_path), "q?", "--dry-run", "--positions", "local")
    assert result.exit_code == 0, result.stderr
    assert not any(c in result.stdout for c in "\x1b\x07\u202e")
    for escaped in HOSTILE_NAMES.values():
        [line] = [line for line in result.stdout.splitlines() if escaped in line]  # one line each
        assert line.endswith(escaped)
    result = invoke("ask", str(tmp_path), "q?", "--dry-run", "--positions", "local", "--json")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    paths = {Path(source["path"]).name for source in json.loads(result.stdout)["sources"]}
    assert paths == set(HOSTILE_NAMES)


def test_c1_controls_in_json_are_escaped_but_parse_back_exactly(tmp_path):
    name = "csi\x9b31m.txt"  # U+009B: CSI on terminals that honour C1 controls
    (tmp_path / name).write_text("text\n")
    result = invoke("ask", str(tmp_path / name), "q?", "--dry-run", "--json")
    assert "\\u009b" in result.stdout and "\x9b" not in result.stdout
    assert json.loads(result.stdout)["sources"][0]["path"].endswith(name)


def test_error_lines_escape_what_they_quote(tmp_path):
    path = tmp_path / "evil\x1b[2J\nname.txt"
    path.write_bytes(b"\x00binary\x00")
    result = invoke("ask", str(path), "q?", "--dry-run")
    assert result.exit_code == 2
    [line] = errors(result)
    assert "evil\\033[2J\\nname.txt (binary file)" in line and "\x1b" not in result.stderr


def test_the_streamed_answer_is_escaped_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Token:
        kind = "token"

        def __init__(self, text: str):
            self.text = text

    hostile = ["Here", " \x1b]0;pwned\x07", " \x1b[2Jdone", "\n\tindented"]
    terminal = Terminal()
    renderer = Renderer(out=terminal, err=io.StringIO())
    for text in hostile:
        renderer.handle(Token(text))
    renderer.close()
    shown = terminal.getvalue()
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown and "\x07" not in shown
    assert "\\033]0;pwned\\a" in shown and "\\033[2Jdone" in shown
    piped = io.StringIO()
    renderer = Renderer(out=piped, err=io.StringIO())
    for text in hostile:
        renderer.handle(Token(text))
    renderer.close()
    assert piped.getvalue() == "".join(hostile) + "\n"  # a file or pipe gets the answer as it is


# --- exit codes ----------------------------------------------------------------------------------
def test_a_missing_question_is_refused_when_stdin_is_piped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("small.txt").write_text("notes\n")
    result = invoke("ask", "small.txt", input="build log\n")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 2
    [line] = errors(result)
    assert "missing QUESTION ('small.txt' is a file, not a question)" in line
    assert 'ask - "small.txt"' in line  # how to ask that question about stdin, if meant


def test_an_unreadable_named_file_is_an_error_unless_skipped(tmp_path, permissions_enforced):  # noqa: F811
    (tmp_path / "ok.txt").write_text("readable\n")
    locked = tmp_path / "locked.txt"
    locked.write_text("secret plans\n")
    os.chmod(locked, 0)
    try:
        result = invoke("ask", str(tmp_path / "ok.txt"), str(locked), "q?", "--dry-run", "-q")
        assert result.exit_code == 2  # as cat fails, and said even with -q
        [line] = errors(result)
        assert "locked.txt: unreadable: Permission denied" in line and "--skip-unreadable" in line
        result = invoke("ask", str(tmp_path / "ok.txt"), str(locked), "q?", "--dry-run", "--skip-unreadable")
        assert result.exit_code == 0 and "ok.txt" in result.stdout
        assert "locked.txt: unreadable (Permission denied); left out (--skip-unreadable)" in result.stderr
    finally:
        os.chmod(locked, 0o644)


def test_ff_fe_then_random_bytes_is_binary_not_utf16(tmp_path):
    rng = random.Random(4)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    (tmp_path / "blob.txt").write_bytes(b"\xff\xfe" + noise)
    result = invoke("ask", str(tmp_path / "blob.txt"), "q?", "--dry-run")
    assert result.exit_code == 2 and "(binary file)" in errors(result)[0]


def test_a_dry_run_beyond_the_window_exits_as_the_real_run(tmp_path):
    """The issue's 513 files of 1000 KiB (147M tokens, exit 0), scaled down: 24 files of 40 KB."""
    folder = tmp_path / "logs"
    folder.mkdir()
    text = (REPO / "samples" / "long.txt").read_text()[:40_000]
    for index in range(24):
        (folder / f"part{index:02}.txt").write_text(text)
    result = invoke("ask", str(folder), "q?", "--dry-run", "--fallback", "refuse")
    assert result.exit_code == 2 and result.stdout == ""
    [line] = errors(result)
    assert "the input exceeds the window (" in line and " > 8,192 tokens" in line
    assert "--positions local" in line and "--fallback map-reduce" in line  # the ways out the real run names
    result = invoke("ask", str(folder), "q?", "--dry-run")  # the default: map-reduce, said plainly
    assert result.exit_code == 0
    assert (
        "Window: the input exceeds the window (" in result.stdout and "map-reduce over about" in result.stdout
    )
    result = invoke("ask", str(folder / "part00.txt"), str(folder / "part01.txt"), "q?", "--dry-run")
    assert result.exit_code == 0 and "map-reduce over about 2 parts" in result.stdout


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARCLI_")}
    env.update(STARCLI_CONFIG=os.devnull, OMP_NUM_THREADS="1")
    if os.environ.get("STARCLI_CACHE"):
        env["STARCLI_CACHE"] = os.environ["STARCLI_CACHE"]
    command = [sys.executable, "-m", "starcli", *args]
    return subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, **kwargs)


def test_a_closed_stdout_is_said_in_words(tmp_path):
    (tmp_path / "a.txt").write_text("text\n")
    proc = cli("ask", str(tmp_path / "a.txt"), "q?", "--dry-run", preexec_fn=lambda: os.close(1))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = stderr.decode().splitlines()
    assert [line for line in lines if line.startswith("Error: ")] == [
        "Error: standard output is closed, so there is nowhere to write the answer; redirect it "
        "instead (> answer.txt, or > /dev/null to discard it)"
    ]
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_a_large_plan_cut_short_by_its_reader_exits_141(tmp_path, as_json):
    """``--dry-run`` of 1.6 MB piped to ``head -c 10`` exited 0: one large write, partly dropped."""
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(1500):
        (folder / f"a-file-with-a-long-name-to-make-the-plan-large-{index:05}.txt").write_text("x\n")
    flags = ["--json"] if as_json else []
    proc = cli("ask", str(folder), "q?", "--dry-run", "--positions", "local", *flags, stdout=subprocess.PIPE)
    head = proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away, as head does
    _, stderr = proc.communicate(timeout=120)
    assert len(head) == 10
    assert proc.returncode == 141, stderr
    assert b"Error" not in stderr and b"Traceback" not in stderr
