"""The progress display tells the truth (issue 20): one stage per real phase, switched by the
engine's events; phase 1's blocks over every rank and the time left once a block has finished;
a stage cut short gets a red ✗ and says why, never a ✓. Drawn on a fake terminal, read back as
text; the CLI cases run the command in-process over a scripted engine (tests/test_cli.py's fakes).
"""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from engine.events import ContextEncoded, Loaded, Progress, QueryStarted, Started, Token
from starcli import cli, launch, prompt
from starcli.render import Renderer
from tests.test_cli import WordTokenizer, scripted, stats

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """The display's time, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # no stage line cropped
    monkeypatch.setenv("NO_COLOR", "1")


def frame(renderer: Renderer) -> list[str]:
    """The display as it is drawn now, one line per stage."""
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderer.progress.get_renderable())
    return [" ".join(text.split()) for text in console.file.getvalue().splitlines()]


def line(lines: list[str], stage: str) -> str:
    found = [text for text in lines if stage in text]
    assert len(found) == 1, lines
    return found[0]


def drawn(stream: io.StringIO, stage: str) -> list[str]:
    """Every line ever drawn for ``stage`` (each refresh redraws it), the last one final."""
    text = ESCAPE.sub("", stream.getvalue()).replace("\r", "\n")
    return [" ".join(text.split()) for text in text.splitlines() if stage in text]


def two_ranks(clock: Clock, err: io.StringIO | None = None) -> Renderer:
    renderer = Renderer(out=io.StringIO(), err=err or Terminal(), clock=clock)
    renderer.stage("Tokenizing")
    renderer.total_blocks = 8
    renderer.start_ranks(2)
    return renderer


# --- one stage per phase, switched by events -------------------------------------------------
def test_each_phase_starts_when_its_event_arrives():
    clock = Clock()
    renderer = two_ranks(clock)
    assert line(frame(renderer), "Starting ranks").endswith("0/2 ranks 0:00:00")
    renderer.handle(Started(rank=0, pid=1, world_size=2))
    renderer.handle(Started(rank=1, pid=2, world_size=2))
    lines = frame(renderer)
    assert line(lines, "Starting ranks").startswith("✓") and "2/2 ranks" in line(lines, "Starting ranks")
    assert "✓" not in line(lines, "Loading weights")  # running: a spinner
    clock.now += 3
    renderer.handle(Loaded(rank=1, seconds=3.0))
    assert "1/2 ranks" in line(frame(renderer), "Loading weights")
    renderer.handle(Progress(stage="phase1", done=1, total=4, rank=1))  # rank 1 is ahead
    assert not any("Encoding context" in text for text in frame(renderer))  # rank 0 still loading
    clock.now += 1
    renderer.handle(Loaded(rank=0, seconds=4.0))
    lines = frame(renderer)
    loading = line(lines, "Loading weights")
    assert loading.startswith("✓") and "2/2 ranks" in loading and "0:00:04" in loading
    encoding = line(lines, "Encoding context")
    assert not encoding.startswith("✓") and "1/8 blocks" in encoding  # rank 1's block counted
    renderer.handle(Progress(stage="anchor", done=1, total=1, rank=0))
    renderer.handle(Loaded(rank=0, seconds=4.0))  # a repeat changes nothing
    assert len(frame(renderer)) == 4  # Tokenizing, Starting ranks, Loading weights, Encoding context
    renderer.close()


def test_the_answering_stage_starts_at_the_query_and_ends_with_the_answer():
    err = Terminal()
    renderer = Renderer(out=io.StringIO(), err=err)
    renderer.start_ranks(1)
    renderer.handle(Started(rank=0, pid=1, world_size=1))
    renderer.handle(Loaded(rank=0, seconds=0.8))
    renderer.handle(Progress(stage="phase1", done=1, total=1))
    renderer.handle(ContextEncoded(context_tokens=10, blocks=1, blocks_per_rank=[1], seconds=0.1))
    assert "1/1 blocks" in line(frame(renderer), "Encoding context")
    renderer.handle(QueryStarted(query=0, query_tokens=5))
    assert line(frame(renderer), "Encoding context").startswith("✓")
    assert not line(frame(renderer), "Answering").startswith("✓")
    renderer.handle(Token(query=0, token_id=1, text="Yes."))
    renderer.handle(stats("Yes."))
    renderer.finish_answer(stats("Yes."))
    final = drawn(err, "Answering")[-1]
    assert final.startswith("✓ Answering · 1 token") and "tok/s" in final
    assert "✗" not in ESCAPE.sub("", err.getvalue())


def test_with_stdout_a_terminal_the_display_makes_way_at_the_first_token():
    out, err = Terminal(), Terminal()
    renderer = Renderer(out=out, err=err)
    renderer.start_ranks(1)
    renderer.handle(QueryStarted(query=0, query_tokens=5))
    assert not out.getvalue()
    renderer.handle(Token(query=0, token_id=1, text="Yes."))
    assert renderer.progress is None  # gone before the answer is drawn
    answering = drawn(err, "Answering")[-1]
    assert answering.startswith("✓ Answering") and "first token" in answering
    renderer.close()
    assert "Yes." in ESCAPE.sub("", out.getvalue())


# --- time left ---------------------------------------------------------------------------
def test_time_left_appears_once_a_block_has_finished_and_counts_down():
    clock = Clock()
    renderer = Renderer(out=io.StringIO(), err=Terminal(), clock=clock)
    renderer.total_blocks = 5
    renderer.start_ranks(1)
    clock.now += 0.8
    renderer.handle(Loaded(rank=0, seconds=0.8))
    clock.now += 30
    assert "left" not in line(frame(renderer), "Encoding context")  # no block yet: no guess
    renderer.handle(Progress(stage="phase1", done=1, total=5))  # 30 s a block, 4 to go
    assert line(frame(renderer), "Encoding context").endswith("1/5 blocks 0:00:30 ~0:02:00 left")
    clock.now += 50
    assert line(frame(renderer), "Encoding context").endswith("~0:01:10 left")
    renderer.handle(Progress(stage="phase1", done=2, total=5))  # slower: 40 s a block so far
    assert line(frame(renderer), "Encoding context").endswith("2/5 blocks 0:01:20 ~0:02:00 left")
    clock.now += 200
    assert line(frame(renderer), "Encoding context").endswith("finishing")  # past the estimate
    for done in (3, 4, 5):
        renderer.handle(Progress(stage="phase1", done=done, total=5))
    assert "left" not in line(frame(renderer), "Encoding context")
    renderer.close()


def test_time_left_on_several_ranks_waits_for_the_slowest():
    clock = Clock()
    renderer = two_ranks(clock)
    for rank in (0, 1):
        renderer.handle(Started(rank=rank, pid=rank + 1, world_size=2))
    for rank in (0, 1):
        renderer.handle(Loaded(rank=rank, seconds=1.0))
    clock.now += 10
    renderer.handle(Progress(stage="phase1", done=1, total=4, rank=0))  # 10 s a block: 30 s to go
    clock.now += 10
    renderer.handle(Progress(stage="phase1", done=1, total=4, rank=1))  # 20 s a block: 60 s to go
    assert line(frame(renderer), "Encoding context").endswith("2/8 blocks 0:00:20 ~0:01:00 left")
    renderer.close()


def test_no_time_left_outside_phase_1():
    clock = Clock()
    renderer = Renderer(out=io.StringIO(), err=Terminal(), clock=clock)
    renderer.stage("Reading sources", total=4)
    renderer.update_stage(done=1, total=4)
    clock.now += 10
    assert "left" not in line(frame(renderer), "Reading sources")
    renderer.close()


# --- cut short ---------------------------------------------------------------------------
def test_an_interrupted_stage_gets_a_cross_and_never_a_tick():
    clock = Clock()
    err = Terminal()
    renderer = two_ranks(clock, err)
    for rank in (0, 1):
        renderer.handle(Started(rank=rank, pid=rank + 1, world_size=2))
        renderer.handle(Loaded(rank=rank, seconds=1.0))
    clock.now += 5
    renderer.handle(Progress(stage="phase1", done=1, total=4, rank=0))
    assert renderer.fail_stage("interrupted")
    renderer.close()
    lines = drawn(err, "Encoding context")
    assert lines[-1].startswith("✗ Encoding context · interrupted") and "1/8 blocks" in lines[-1]
    assert "left" not in lines[-1]
    assert not any(text.startswith("✓") for text in lines)
    assert drawn(err, "Loading weights")[-1].startswith("✓")
    assert not renderer.fail_stage("interrupted")  # nothing left running: the caller says it


def test_an_error_marks_the_running_stage_failed():
    err = Terminal()
    renderer = Renderer(out=io.StringIO(), err=err)
    renderer.start_ranks(1)
    renderer.error("rank 0 failed during model load: no such file")
    text = ESCAPE.sub("", err.getvalue())
    assert drawn(err, "Loading weights")[-1].startswith("✗ Loading weights · failed")
    assert "✓" not in text
    assert text.rstrip().endswith("Error: rank 0 failed during model load: no such file")


def test_a_stage_still_running_at_close_is_stopped_not_done():
    """SIGTERM or a closed pipe ends the run with no error line: the stage says it stopped."""
    err = Terminal()
    renderer = Renderer(out=io.StringIO(), err=err)
    renderer.stage("Tokenizing")
    renderer.close()
    assert drawn(err, "Tokenizing")[-1].startswith("✗ Tokenizing · stopped")
    err = Terminal()
    renderer = Renderer(out=io.StringIO(), err=err)
    renderer.stage("Reading sources")
    renderer.print_text("the plan\n")  # a result printed: its stage is done
    assert drawn(err, "Reading sources")[-1].startswith("✓")


def test_nothing_is_drawn_with_quiet_or_on_a_pipe():
    for renderer, err in (
        (Renderer(quiet=True, out=io.StringIO(), err=(quiet_err := Terminal())), quiet_err),
        (Renderer(out=io.StringIO(), err=(pipe_err := io.StringIO())), pipe_err),
    ):
        renderer.start_ranks(2)
        renderer.handle(Started(rank=0, pid=1, world_size=2))
        renderer.handle(Loaded(rank=0, seconds=1.0))
        renderer.handle(Progress(stage="phase1", done=1, total=2))
        assert not renderer.fail_stage("interrupted")
        renderer.close()
        assert err.getvalue() == ""


# --- through the command ------------------------------------------------------------------
ENCODING_STARTED = (
    Started(rank=0, pid=1, world_size=1),
    Loaded(rank=0, seconds=0.8),
    Progress(stage="phase1", done=1, total=3),
)


@pytest.fixture
def terminal(monkeypatch, isolated, tmp_path):
    """The command with its stderr a terminal, over a word tokenizer; returns (stderr, document)."""
    err = Terminal()
    monkeypatch.setattr(cli, "Renderer", lambda **kwargs: Renderer(err=err, **kwargs))
    monkeypatch.setattr(launch, "load_tokenizer", lambda model: WordTokenizer())
    monkeypatch.setattr(prompt, "model_facts", lambda model: (8192, None))
    doc = tmp_path / "notes.txt"
    doc.write_text("The answer to everything is forty-two.\n")
    return err, str(doc)


def test_ctrl_c_during_encoding_through_the_command(monkeypatch, terminal):
    err, doc = terminal
    monkeypatch.setattr(launch, "run_request", scripted(*ENCODING_STARTED, error=KeyboardInterrupt()))
    result = CliRunner().invoke(cli.app, ["ask", doc, "q?"])
    assert result.exit_code == 130 and result.stdout == ""
    for stage in ("Read 1 file", "Tokenized", "Loading weights"):
        assert drawn(err, stage)[-1].startswith("✓"), stage
    encoding = drawn(err, "Encoding context")
    assert encoding[-1].startswith("✗ Encoding context · interrupted")
    assert not any(text.startswith("✓") for text in encoding)
    assert ESCAPE.sub("", err.getvalue()).count("interrupted") == 1  # the stage line says it once


def test_a_failure_through_the_command(monkeypatch, terminal):
    err, doc = terminal
    monkeypatch.setattr(launch, "run_request", scripted(*ENCODING_STARTED, error=RuntimeError("kaput")))
    result = CliRunner().invoke(cli.app, ["ask", doc, "q?"])
    assert result.exit_code == 1
    assert drawn(err, "Encoding context")[-1].startswith("✗ Encoding context · failed")
    assert ESCAPE.sub("", err.getvalue()).rstrip().endswith("Error: RuntimeError: kaput")


def test_a_json_answer_with_every_stage_done(monkeypatch, terminal):
    err, doc = terminal
    events = (
        *ENCODING_STARTED[:2],
        Progress(stage="phase1", done=1, total=1),
        ContextEncoded(context_tokens=10, blocks=1, blocks_per_rank=[1], seconds=0.1),
        QueryStarted(query=0, query_tokens=5),
        Token(query=0, token_id=5, text="Forty-two."),
        stats("Forty-two."),
    )
    monkeypatch.setattr(launch, "run_request", scripted(*events))
    result = CliRunner().invoke(cli.app, ["ask", doc, "q?", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["answer"] == "Forty-two."  # stdout: the JSON object alone
    for stage in ("Read 1 file", "Tokenized", "Loading weights", "Encoding context", "Answering"):
        assert drawn(err, stage)[-1].startswith("✓"), stage
    assert "✗" not in ESCAPE.sub("", err.getvalue())
