"""The command line end to end with the real default model (SmolLM2-135M-Instruct on CPU).

One model-backed run per behaviour, answers capped at a few tokens: on two shared cores a run
over a ~3K-token sample takes seconds. In-process runs go through Typer's CliRunner; terminal
and pipe behaviour (escape codes, a reader that goes away) needs a real subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starcli.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("isolated")]  # isolated: conftest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
ANSI = re.compile(rb"\x1b")
NOTE = (
    "Minutes of the harbour committee. The new ferry is named Storm Petrel. "
    "It carries 180 passengers and enters service on 3 May. "
) * 3


@pytest.fixture(scope="module", autouse=True)
def model_ready():
    """Convert the bundled model once (shared cache, as conftest's default_model does); one torch
    thread, since OpenMP threads spinning on shared cores slow a small model down many times."""
    import torch

    from engine.models import convert_default_model

    convert_default_model()
    threads = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.stderr
    return result


def subprocess_env() -> dict[str, str]:
    """A plain environment: nothing that forces colour, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TERM"] = "xterm-256color"  # a colour-capable TERM must still give no escapes on pipes
    env["STARCLI_CONFIG"] = os.devnull
    return env


def run_clean(*args: str, input: str | None = None) -> dict:
    """``python -m starcli ARGS`` as a user runs it: it must exit 0 with an empty stderr; returns
    its ``--json`` output."""
    proc = subprocess.run(
        [sys.executable, "-m", "starcli", *args],
        input=None if input is None else input.encode(),
        capture_output=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr.decode(errors="replace") == ""
    return json.loads(proc.stdout)


def test_ask_pdf_json_holds_the_fact_the_contract_keys_and_a_clean_stderr():
    """A real command, as a user runs it, so its stderr must stay empty: this is also
    ``test_clean_stderr``'s check of an answer over a PDF (its own PDF case, a second full answer
    over the ~2.5K-token report, went)."""
    data = run_clean(
        "ask",
        str(SAMPLES / "report.pdf"),
        "Who chaired the Q3 risk committee?",
        "--max-tokens",
        "20",
        "--block-size",
        "2048",
        "--json",
    )
    assert "Okonkwo" in data["answer"]  # samples/README.md's question and answer
    types = {
        "answer": str,
        "model": str,
        "attention": str,
        "block_size": int,
        "anchor_size": int,
        "world_size": int,
        "context_tokens": int,
        "query_tokens": int,
        "generated_tokens": int,
        "stopped": str,
        "positions": str,
        "sources": list,
        "skipped": list,
        "timings": dict,
        "context_cache": str,
        "question": str,
        "citations": list,  # issue 19: [{path, page?, line?, verified}]
        "fallback": type(None),  # issue 13: "map-reduce" past the window, else null
    }
    assert set(data) == set(types)
    assert all(isinstance(data[key], kind) for key, kind in types.items())
    assert data["attention"] == "star" and data["world_size"] == 1 and data["block_size"] == 2048
    assert data["context_tokens"] > 2048  # two blocks: the anchor path is exercised
    assert data["sources"] == [{"path": str(SAMPLES / "report.pdf"), "tokens": data["sources"][0]["tokens"]}]
    assert set(data["timings"]) == {
        "load_s",
        "context_encoding_s",
        "ttft_s",
        "decode_tokens_per_s",
        "total_s",
    }
    assert all(isinstance(v, float) and v >= 0 for v in data["timings"].values())


def test_ask_repository_holds_the_fact():
    question = "What port does the pebble server listen on by default?"  # samples/README.md
    result = invoke("ask", str(SAMPLES / "tinyrepo"), question, "--max-tokens", "16")
    assert "7421" in result.stdout and "9999" not in result.stdout  # .env's port never reaches the model
    assert "skipped" in result.stderr  # .env, binaries and ignored files are reported


def test_stdin_with_dash_and_with_no_source_give_the_same_answer():
    question = "What is the new ferry named?"
    with_dash = invoke("ask", "-", question, "--max-tokens", "8", input=NOTE).stdout
    piped = invoke("ask", question, "--max-tokens", "8", input=NOTE).stdout
    assert with_dash == piped and "Storm Petrel" in piped


def test_two_ranks_give_the_answer_of_one_and_a_clean_stderr():
    """The two-rank run is a real command, as a user runs it: its stderr must stay empty (no rank
    log, warning or progress bar; ``test_clean_stderr`` checks the other commands)."""
    args = [
        "ask",
        "-",
        "How many passengers does the ferry carry?",
        "--block-size",
        "128",
        "--max-tokens",
        "8",
        "--json",
    ]
    one = json.loads(invoke(*args, "--nproc", "1", input=NOTE * 4).stdout)
    two = run_clean(*args, "--nproc", "2", input=NOTE * 4)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["answer"] == one["answer"] and two["context_tokens"] == one["context_tokens"]


def test_pipes_get_no_escape_codes(tmp_path):
    (tmp_path / "minutes.txt").write_text(NOTE)
    (tmp_path / "photo.bin").write_bytes(bytes(range(256)) * 8)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "starcli",
            "ask",
            str(tmp_path),
            "What is the new ferry named?",
            "--max-tokens",
            "8",
            "-v",
        ],
        capture_output=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"photo.bin: binary file" in proc.stderr  # -v lists every skip
    assert not ANSI.search(proc.stdout) and not ANSI.search(proc.stderr)
    assert proc.stdout.strip() and b"Traceback" not in proc.stderr


def test_a_closed_stdout_pipe_ends_quietly():
    """``starcli ask … | head -c 10``: stop at the first write after the reader has gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "starcli", "ask", "-", "Describe the ferry in detail.", "--max-tokens", "48"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        cwd=REPO,
    )
    proc.stdin.write(NOTE.encode())
    proc.stdin.close()
    head = proc.stdout.read(10)
    proc.stdout.close()
    stderr = proc.stderr.read()
    code = proc.wait(timeout=300)
    assert len(head) == 10
    assert stderr == b""
    assert code == 141  # as if killed by SIGPIPE, like other Unix tools
