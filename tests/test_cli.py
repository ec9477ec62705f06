"""The command line without model weights: usage, bad input, exit codes, --dry-run, failures.

The engine side is replaced by small fakes (a word tokenizer, a scripted event stream), so these
run in well under a second each; tests/test_cli_e2e.py runs the real model.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.errors import ModelLoadError
from engine.events import ContextEncoded, Failure, Loaded, Progress, QueryStarted, Started, Stats, Token
from starcli import launch, prompt
from starcli.cli import app
from tests.pdf_factory import make_pdf

pytestmark = pytest.mark.usefixtures("isolated")  # conftest: no user config or STARCLI_* leaks in

REPO = Path(__file__).resolve().parents[1]


class WordTokenizer:
    """One token per word; enough for prompt assembly and token counts."""

    chat_template = None
    bos_token = ""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1] * len(text.split())}


def stats(answer: str) -> Stats:
    return Stats(
        query=0,
        answer=answer,
        mode="star",
        world_size=1,
        block_size=2048,
        anchor_size=0,
        context_tokens=10,
        query_tokens=5,
        generated_tokens=2,
        stop_reason="eos",
        load_s=0.1,
        context_encoding_s=0.1,
        ttft_s=0.1,
        decode_s=0.1,
        decode_tokens_per_s=20.0,
        blocks_per_rank=[1],
    )


def scripted(*events, error: BaseException | None = None):
    """A fake ``run_request`` yielding ``events`` then raising ``error``; records its calls."""
    calls = []

    def run_request(request, **kwargs):
        calls.append((request, kwargs))
        yield from events
        if error is not None:
            raise error

    run_request.calls = calls
    return run_request


ANSWER = (
    Started(rank=0, pid=1, world_size=1),
    Loaded(rank=0, seconds=0.1),
    Progress(stage="phase1", done=1, total=1),
    ContextEncoded(context_tokens=10, blocks=1, blocks_per_rank=[1], seconds=0.1),
    QueryStarted(query=0, query_tokens=5),
    Token(query=0, token_id=5, text="Forty"),
    Token(query=0, token_id=6, text="-two."),
    stats("Forty-two."),
)


def forbid(*_args, **_kwargs):
    raise AssertionError("this must not be called")


@pytest.fixture
def fake_engine(monkeypatch):
    """Word tokenizer, no window lookup, and a run_request answering 'Forty-two.'."""
    monkeypatch.setattr(launch, "load_tokenizer", lambda model: WordTokenizer())
    monkeypatch.setattr(prompt, "model_facts", lambda model, convert=True: (8192, None))
    run = scripted(*ANSWER)
    monkeypatch.setattr(launch, "run_request", run)
    return run


@pytest.fixture
def doc(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("The answer to everything is forty-two.\n")
    return path


def invoke(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(app, list(args), input=input)


# --- usage ------------------------------------------------------------------------------------
def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip().startswith("starcli ")


def test_missing_question_is_a_usage_error():
    result = invoke("ask")
    assert result.exit_code == 2


@pytest.mark.parametrize("command", [["ask", "what is it?"], ["summarize"]])
def test_no_source_on_a_terminal_prints_usage_and_never_waits(command):
    primary, secondary = pty.openpty()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "starcli", *command],
            stdin=secondary,
            capture_output=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no SOURCE given and nothing piped on stdin")
    assert proc.stdout == b""
    assert time.monotonic() - started < 30


def test_help_shows_metavars_and_the_settings_file():
    for command in ("ask", "summarize"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout and "<str>" not in result.stdout and "<list" not in result.stdout
        assert "--block-size" in result.stdout and "TOKENS" in result.stdout
        assert "config.toml" in result.stdout and "STARCLI_" in result.stdout


def test_a_usage_error_is_one_error_line_without_a_box():
    result = invoke("ask", "--block-size", "1", "x.txt", "q?")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--block-size" in errors[0] and "128" in errors[0]
    assert "╭" not in result.stderr and result.stderr.count("\n") == 1


def test_a_forgotten_question_is_named(doc):
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "starcli", "ask", str(doc)],
            stdin=secondary,
            capture_output=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"Error: missing QUESTION" in proc.stderr and str(doc).encode() in proc.stderr


@pytest.mark.parametrize("args", [["ask", "no/such/file.txt", "q?"], ["ask", "x.txt", "q?", "--nproc", "0"]])
def test_usage_errors_are_answered_without_loading_torch(args):
    script = (
        "import sys\n"
        "from starcli.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.stdout.split() == ["2", "False"], proc.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--block-size", "0"], "--block-size"),
        (["--attention", "sparse"], "sparse"),
        (["--device", "tpu"], "tpu"),
        (["--temperature", "-1"], "--temperature"),
        (["--block-size", "128", "--anchor-size", "256", "--dry-run"], "anchor size 256"),
        (["--attention", "global", "--nproc", "2", "--dry-run"], "runs on one rank"),
    ],
)
def test_bad_settings_exit_2(doc, args, fragment):
    result = invoke("ask", str(doc), "q?", *args)
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_bad_env_and_config_exit_2(doc, monkeypatch, tmp_path):
    monkeypatch.setenv("STARCLI_BLOCK_SIZE", "big")
    assert invoke("ask", str(doc), "q?", "--dry-run").exit_code == 2
    monkeypatch.delenv("STARCLI_BLOCK_SIZE")
    config = tmp_path / "config.toml"
    config.write_text("block_size = 'big'\n")
    monkeypatch.setenv("STARCLI_CONFIG", str(config))
    result = invoke("ask", str(doc), "q?", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "block_size must be an integer" in result.stderr


# --- unusable input: exit 2 with one Error line ---------------------------------------------
def test_missing_file(fake_engine):
    result = invoke("ask", "no/such/file.txt", "q?")
    assert result.exit_code == 2
    assert result.stderr == "Error: no/such/file.txt: no such file or directory\n"
    assert result.stdout == ""


def test_empty_stdin(fake_engine):
    result = invoke("ask", "q?", input="")
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")


def test_nothing_left_after_filters(fake_engine, tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "main.py").write_text("print('hi')\n")
    result = invoke("summarize", str(tmp_path / "repo"), "--include", "*.md")
    assert result.exit_code == 2
    assert "Error: " in result.stderr and "nothing left to read after filters" in result.stderr


def test_encrypted_pdf(fake_engine, tmp_path):
    path = tmp_path / "secret.pdf"
    path.write_bytes(make_pdf([["classified"]], password="hunter2"))
    result = invoke("ask", str(path), "q?")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "encrypted" in result.stderr.lower()


def test_unreadable_pdf(fake_engine, tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    result = invoke("ask", str(path), "q?")
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")


def test_input_beyond_the_window_gets_local_positions_when_asked(fake_engine, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("word " * 9000)
    result = invoke("ask", str(path), "q?", "--json", "--positions", "local")
    assert result.exit_code == 0
    ((request, _),) = fake_engine.calls
    plan = request.plan
    assert plan.positions == "local" and plan.blocks > 2
    assert plan.context_span + plan.query_tokens + plan.max_tokens <= 8192
    assert plan.max_tokens == 256  # the ask default, not cut by the window


def test_input_past_the_window_is_refused_with_fallback_refuse(fake_engine, monkeypatch, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("word " * 20_000)
    monkeypatch.setattr(launch, "run_request", forbid)
    result = invoke("ask", str(path), "q?", "--fallback", "refuse")
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: the input is 2") and "x the model's window of 8,192" in line
    assert "--positions local" in line and "--include/--exclude" in line and "--fallback map-reduce" in line


def test_input_beyond_the_window_with_global_positions_stops_before_the_model_loads(
    fake_engine, monkeypatch, tmp_path
):
    monkeypatch.setattr(launch, "run_request", forbid)
    path = tmp_path / "long.txt"
    path.write_text("word " * 9000)
    result = invoke("ask", str(path), "q?", "--positions", "global")
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: the input is 9,0") and "window of 8,192" in line
    assert "--include/--exclude" in line and "longer context" in line


# --- runtime failures: exit 1, one line, traceback only with -v -----------------------------
def test_bad_anchor_stops_before_the_model_loads(fake_engine, monkeypatch, doc):
    monkeypatch.setattr(launch, "run_request", forbid)
    result = invoke("ask", str(doc), "q?", "--block-size", "128", "--anchor-size", "256")
    assert result.exit_code == 2 and "anchor size 256" in result.stderr


def test_model_load_failure(fake_engine, monkeypatch, doc):
    def broken(model):
        raise ModelLoadError("could not load model 'nope': not found")

    monkeypatch.setattr(launch, "load_tokenizer", broken)
    result = invoke("ask", str(doc), "q?", "-m", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: could not load model 'nope': not found\n"


def test_rank_death(monkeypatch, fake_engine, doc):
    run = scripted(*ANSWER[:3], error=launch.LaunchError("rank 1 died during phase 1 (killed by signal 9)"))
    monkeypatch.setattr(launch, "run_request", run)
    result = invoke("ask", str(doc), "q?", "--nproc", "2")
    assert result.exit_code == 1
    assert result.stderr == "Error: rank 1 died during phase 1 (killed by signal 9)\n"
    assert run.calls[0][0].plan.world_size == 2


def test_failure_event(monkeypatch, fake_engine, doc):
    failure = Failure(rank=0, phase="decode", error_type="RuntimeError", message="boom")
    monkeypatch.setattr(launch, "run_request", scripted(failure))
    result = invoke("ask", str(doc), "q?")
    assert result.exit_code == 1 and result.stderr == "Error: rank 0 failed during decode: boom\n"


def test_unexpected_error_has_no_traceback_unless_verbose(monkeypatch, fake_engine, doc):
    monkeypatch.setattr(launch, "run_request", scripted(error=RuntimeError("kaput")))
    result = invoke("ask", str(doc), "q?")
    assert result.exit_code == 1
    assert result.stderr == "Error: RuntimeError: kaput\n"
    result = invoke("ask", str(doc), "q?", "-v")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and result.stderr.endswith("Error: RuntimeError: kaput\n")


def test_out_of_memory_names_the_ways_out(monkeypatch, fake_engine, doc):
    monkeypatch.setattr(launch, "run_request", scripted(error=MemoryError()))
    result = invoke("ask", str(doc), "q?")
    assert result.exit_code == 1
    assert "--block-size" in result.stderr and "--nproc" in result.stderr


def test_ctrl_c_keeps_the_partial_answer_once(monkeypatch, fake_engine, doc):
    monkeypatch.setattr(launch, "run_request", scripted(*ANSWER[:6], error=KeyboardInterrupt()))
    result = invoke("ask", str(doc), "q?")
    assert result.exit_code == 130
    assert result.stdout == "Forty\n"


# --- success paths with the fake engine -------------------------------------------------------
def test_answer_on_stdout_only(fake_engine, doc):
    result = invoke("ask", str(doc), "What is the answer?", "--max-tokens", "7", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Forty-two.\n"
    request, kwargs = fake_engine.calls[0]
    plan = request.plan
    assert plan.generation.max_tokens == 7 and plan.generation.seed == 3
    assert plan.attention == "star" and request.settings.anchor_size is None
    assert plan.block_size == 4096  # auto: a short document is one block (exactly dense)
    assert plan.world_size == 1 and kwargs["model"] is None
    assert isinstance(request.context, list) and isinstance(request.queries[0], list)  # exact ids


def test_stdin_with_dash_and_with_no_source(fake_engine):
    assert invoke("ask", "-", "q?", input="some piped text").stdout == "Forty-two.\n"
    assert invoke("summarize", input="some piped text").stdout == "Forty-two.\n"
    assert len(fake_engine.calls) == 2


def test_summarize_uses_repository_instructions_for_a_directory(fake_engine, tmp_path):
    (tmp_path / "main.py").write_text("print('hi')\n")
    assert invoke("summarize", str(tmp_path)).exit_code == 0
    request, _ = fake_engine.calls[0]
    assert len(request.queries[0]) == len(
        prompt.build(WordTokenizer(), "", prompt.SUMMARIZE_REPOSITORY).query_ids
    )


def test_skips_reported_on_stderr_and_in_json(fake_engine, tmp_path):
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "logo.bin").write_bytes(b"\x00\x01\x02" * 100)
    result = invoke("summarize", str(tmp_path), "--json")
    assert result.exit_code == 0, result.stderr
    assert "skipped 1 file" in result.stderr
    import json

    data = json.loads(result.stdout)
    assert [s["path"].endswith("logo.bin") for s in data["skipped"]] == [True]
    assert data["answer"] == "Forty-two." and data["sources"][0]["path"].endswith("main.py")


# --- --dry-run --------------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a tokenizer or weights fails the test."""
    import engine.models

    for target, name in [
        (engine.models, "load_model"),
        (engine.models, "convert_default_model"),
        (launch, "load_tokenizer"),
        (launch, "run_request"),
    ]:
        monkeypatch.setattr(target, name, forbid)


def test_dry_run_loads_no_weights(no_model, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n" * 400)
    (tmp_path / "b.md").write_text("# notes\n" * 100)
    (tmp_path / ".env").write_text("API_KEY=sk-123\n")
    result = invoke("summarize", str(tmp_path), "--dry-run", "--block-size", "256", "--nproc", "2")
    assert result.exit_code == 0, result.stderr
    for fragment in ("a.py", "b.md", ".env", "rank 1: blocks", ", 2 ranks", "no model was loaded"):
        assert fragment in result.stdout


def test_dry_run_json_and_precedence(no_model, monkeypatch, tmp_path, doc):
    import json

    config = tmp_path / "config.toml"
    config.write_text("block_size = 512\nanchor_size = 64\n")
    monkeypatch.setenv("STARCLI_CONFIG", str(config))

    def plan(*flags):
        result = invoke("ask", str(doc), "q?", "--dry-run", "--json", *flags)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    data = plan()
    assert data["block_size"] == 512 and data["world_size"] == 1  # file beats defaults
    assert {"sources", "skipped", "context_tokens", "blocks", "blocks_per_rank"} <= set(data)
    monkeypatch.setenv("STARCLI_BLOCK_SIZE", "256")
    assert plan()["block_size"] == 256  # env beats file
    assert plan("--block-size", "128")["block_size"] == 128  # flag beats env
