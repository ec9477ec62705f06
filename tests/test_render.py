"""Rendering: the answer alone on stdout, progress and notes on stderr, escapes only on terminals."""

from __future__ import annotations

import io
import re

from engine.events import ContextEncoded, Loaded, Progress, QueryStarted, Started, Stats, Token
from starcli.documents import Document, Ingested, SkipKind, Skipped
from starcli.render import Renderer, answer_json, format_plan

ANSI = re.compile(r"\x1b[\[\]()]")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _stats(answer: str = "Paris.") -> Stats:
    return Stats(
        query=0,
        answer=answer,
        mode="star",
        world_size=2,
        block_size=64,
        anchor_size=64,
        context_tokens=300,
        query_tokens=12,
        generated_tokens=3,
        stop_reason="eos",
        load_s=0.5,
        context_encoding_s=0.25,
        ttft_s=0.1,
        decode_s=0.2,
        decode_tokens_per_s=10.0,
        blocks_per_rank=[3, 2],
    )


def _events(answer_parts: list[str]):
    """Two ranks' stream, as the launcher passes it on."""
    for rank in (0, 1):
        yield Started(rank=rank, pid=100 + rank, world_size=2)
    for rank in (0, 1):
        yield Loaded(rank=rank, seconds=0.5)
    yield Progress(stage="anchor", done=1, total=1, rank=1)
    for done in (1, 2, 3):
        yield Progress(stage="phase1", done=done, total=3, rank=0)
    for done in (1, 2):
        yield Progress(stage="phase1", done=done, total=2, rank=1)
    yield ContextEncoded(context_tokens=300, blocks=5, blocks_per_rank=[3, 2], seconds=0.25)
    yield QueryStarted(query=0, query_tokens=12)
    for part in answer_parts:
        yield Token(query=0, token_id=1, text=part)
    yield _stats("".join(answer_parts))


def _run(renderer: Renderer, parts: list[str]) -> None:
    stats = None
    for event in _events(parts):
        renderer.handle(event)
        stats = event if event.kind == "stats" else stats
    renderer.finish_answer(stats)


def test_pipes_get_the_plain_answer_and_no_escapes():
    out, err = io.StringIO(), io.StringIO()
    renderer = Renderer(out=out, err=err)
    renderer.note("a note for stderr")
    _run(renderer, ["The ", "**capital** ", "is Paris."])
    assert out.getvalue() == "The **capital** is Paris.\n"  # raw markdown, newline added once
    assert err.getvalue() == "a note for stderr\n"  # no progress display on a pipe
    assert not ANSI.search(out.getvalue() + err.getvalue())


def test_quiet_silences_notes_but_not_errors():
    err = io.StringIO()
    renderer = Renderer(quiet=True, out=io.StringIO(), err=err)
    renderer.note("hidden")
    renderer.warn("hidden too")
    renderer.error("it broke [rank 1]")
    assert err.getvalue() == "Error: it broke [rank 1]\n"  # brackets are text, not markup


def test_terminal_stdout_renders_markdown():
    out, err = Terminal(), io.StringIO()
    _run(Renderer(out=out, err=err), ["# Title\n\n", "Some **bold** text."])
    text = ANSI.sub("", out.getvalue())
    assert "Title" in text and "bold" in text
    assert "**bold**" not in out.getvalue()  # rendered, not raw


def test_terminal_stderr_shows_progress_and_stats(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out, err = io.StringIO(), Terminal()
    renderer = Renderer(out=out, err=err)
    renderer.total_blocks = 5
    renderer.stage("Reading sources")
    _run(renderer, ["Paris."])
    shown = err.getvalue()
    assert "Encoding context" in shown and "5/5" in shown
    assert "tok/s" in shown
    assert "\x1b[3" not in shown  # NO_COLOR: no colour codes
    assert out.getvalue() == "Paris.\n"


def test_json_mode_streams_nothing():
    out = io.StringIO()
    renderer = Renderer(json_output=True, out=out, err=io.StringIO())
    for event in _events(["a", "b"]):
        renderer.handle(event)
    renderer.print_json({"answer": "ab"})
    assert out.getvalue() == '{"answer": "ab"}\n'


def test_interrupted_answer_stays_once():
    out = io.StringIO()
    renderer = Renderer(out=out, err=io.StringIO())
    renderer.handle(QueryStarted(query=0, query_tokens=1))
    renderer.handle(Token(query=0, token_id=1, text="partial"))
    renderer.close()
    renderer.close()
    assert out.getvalue() == "partial\n"


def test_skips_are_summarised_and_listed_with_verbose():
    skipped = [
        Skipped("a.bin", SkipKind.BINARY),
        Skipped("b.bin", SkipKind.BINARY),
        Skipped(".env", SkipKind.SECRET, "environment file"),
    ]
    docs = [Document("x.py", "print()", "text", 3)]
    err = io.StringIO()
    Renderer(out=io.StringIO(), err=err).report_ingest(docs, skipped, ["x.py: decoded as latin-1"], 3)
    assert "warning: x.py: decoded as latin-1" in err.getvalue()
    assert "skipped 3 files (binary file: 2, secret: 1); -v lists them" in err.getvalue()
    err = io.StringIO()
    Renderer(verbose=True, out=io.StringIO(), err=err).report_ingest(docs, skipped, [], 3)
    assert "  .env: secret: environment file" in err.getvalue() and "  a.bin: binary file" in err.getvalue()


def test_answer_json_has_exactly_the_contract_keys():
    ingested = Ingested([Document("x.py", "print()", "text", 3)], [Skipped("a.bin", SkipKind.BINARY)])
    data = answer_json(_stats(), "smollm2", ingested, 1.5)
    assert set(data) == {
        "answer",
        "context_cache",
        "model",
        "attention",
        "block_size",
        "anchor_size",
        "world_size",
        "context_tokens",
        "query_tokens",
        "generated_tokens",
        "stopped",
        "positions",
        "sources",
        "skipped",
        "timings",
    }
    assert set(data["timings"]) == {
        "load_s",
        "context_encoding_s",
        "ttft_s",
        "decode_tokens_per_s",
        "total_s",
    }
    assert data["sources"] == [{"path": "x.py", "tokens": 3}]
    assert data["skipped"] == [{"path": "a.bin", "reason": "binary file"}]


def test_format_plan_lists_everything():
    plan = {
        "model": "smollm2",
        "attention": "star",
        "device": "cpu",
        "world_size": 2,
        "block_size": 64,
        "anchor_size": 64,
        "positions": "local",
        "sources": [{"path": "x.py", "tokens": 300}],
        "skipped": [{"path": "a.bin", "reason": "binary file"}],
        "context_tokens": 310,
        "query_tokens": 9,
        "blocks": 5,
        "blocks_per_rank": [3, 2],
        "counted_with": {"tokenizer": "estimate with the smollm2 vocabulary", "exact": False},
        "ranks": [
            {"rank": 0, "blocks": [0, 2], "tokens": [0, 192], "positions": [0, 128]},
            {"rank": 1, "blocks": [3, 4], "tokens": [192, 310], "positions": [64, 128]},
        ],
        "query_position": 128,
        "max_tokens": 256,
        "window": 8192,
    }
    text = format_plan(plan)
    for fragment in (
        "Tokens by folder (estimate with the smollm2 vocabulary):",
        "300  x.py",
        "a.bin: binary file",
        "~310 tokens",
        "5 blocks of 64 tokens",
        "2 ranks",
        "rank 0: blocks 0-2, tokens 0-191, positions 0-127",
        "rank 1: blocks 3-4, tokens 192-309, positions 64-127",
        "query and answer from position 128",
        "local positions",
        "no model",
    ):
        assert fragment in text
