"""Two "machines" on this one (issue 17): two ``starcli ask`` processes, each its own torchrun
node of one gloo rank, joined by the c10d rendezvous on 127.0.0.1, with the tiny random model.

Checked: the answer is the dense model's greedy answer and is printed by the node holding the
query host only (the other prints nothing); nodes that read different sources both stop with one
``Error:`` naming the node; a node killed mid-run, or one that never starts, ends the other
within the collective timeout with one ``Error:`` line naming the node and rank.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.clijob import CliJob
from tests.procs import processes_mentioning

pytestmark = pytest.mark.slow  # two CLIs, two torchruns and their ranks: ~20-40 s a test on 2 cores

TEXT = "The lighthouse keeper logged a storm on the ninth of May. The lamp was replaced in June.\n"
QUESTION = "When was the storm?"
STEPS = 6
TIMEOUT_S = 8  # the collective timeout of these runs: a lost node must end the job within it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def doc(tmp_path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text(TEXT * 2)
    return path


def node(
    tmp_path: Path,
    name: str,
    model: str,
    source: Path,
    port: int,
    *flags: str,
    timeout_s: int = TIMEOUT_S,
    **env: str,
) -> CliJob:
    """One node's command: the same on both but for the private TMPDIR that tells them apart."""
    args = [
        "ask",
        str(source),
        QUESTION,
        "--model",
        model,
        "--nproc",
        "1",
        "--nnodes",
        "2",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--no-cache",
        *flags,
    ]
    return CliJob(tmp_path / name, *args, STARCLI_TIMEOUT=str(timeout_s), **env)


def has_event(job: CliJob, kind: str) -> bool:
    return any(event["event"] == kind for event in job.events())


def dense_answer(model_dir: str, source: Path) -> tuple[str, int]:
    """The dense model's greedy answer to the prompt the CLI builds, and the context's length."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from starcli.ingest import ingest, render_documents
    from starcli.prompt import ask_instructions, build
    from tests.helpers import dense_greedy

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    question = ask_instructions(QUESTION, model_dir)  # the named model is asked to cite, as the CLI does
    prompt = build(tokenizer, render_documents(ingest([str(source)]).documents), question)
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    tokens = dense_greedy(model, prompt.context_ids + prompt.query_ids, STEPS)
    # Cut where the engine stops: the model's EOS too (a tiny config's 2, here the byte '#'), not
    # only the tokenizer's (none). The prompt holds the source's path, so whether the greedy
    # tokens meet an EOS within STEPS changed with the temp dir's name: a flake.
    eos = {model.config.eos_token_id, model.generation_config.eos_token_id, tokenizer.eos_token_id}
    stop = next((i for i, token in enumerate(tokens) if token in eos), len(tokens))
    return tokenizer.decode(tokens[:stop], skip_special_tokens=True), len(prompt.context_ids)


def test_two_nodes_give_the_dense_models_greedy_answer_on_the_query_hosts_node(tiny_model_dir, doc, tmp_path):
    """Two blocks, one a node, the anchor a whole block: star attention is exact, so the answer is
    the dense model's; the node that does not hold the last rank prints nothing at all."""
    expected, context_tokens = dense_answer(tiny_model_dir, doc)
    block = max(128, math.ceil(context_tokens / 2))
    flags = ["--block-size", str(block), "--max-tokens", str(STEPS), "--repetition-penalty", "1"]
    flags += ["--no-loop-stop", "--json"]
    port = free_port()
    jobs = [node(tmp_path, f"node{i}", tiny_model_dir, doc, port, *flags) for i in range(2)]
    codes = [job.finish(timeout=60) for job in jobs]
    assert codes == [0, 0], [job.stderr.decode() for job in jobs]
    printed = [bytes(job.stdout) for job in jobs]
    assert sorted(map(bool, printed)) == [False, True], printed  # one node answers
    answer = json.loads(next(out for out in printed if out))
    assert answer["world_size"] == 2
    assert answer["answer"] == expected
    assert [bytes(job.stderr) for job in jobs] == [b"", b""]  # no progress off a terminal, no noise


def test_nodes_that_read_different_sources_both_stop_with_one_error(tiny_model_dir, doc, tmp_path):
    other = tmp_path / "other" / doc.name
    other.parent.mkdir()
    other.write_text(TEXT * 2 + "One more line on this node only.\n")  # the same path on each machine
    port = free_port()
    jobs = [node(tmp_path, f"node{i}", tiny_model_dir, source, port) for i, source in enumerate((doc, other))]
    assert [job.finish(timeout=60) for job in jobs] == [2, 2]
    for job in jobs:
        assert job.stderr.decode().count("Error:") == 1, job.stderr.decode()
        host = socket.gethostname()  # each node is named by its number and machine
        assert f"node 1 ({host}, rank 1) read different sources (token ids) from node 0 ({host})" in (
            job.stderr.decode()
        )


def test_a_node_killed_mid_run_ends_the_other_within_the_timeout(tiny_model_dir, doc, tmp_path):
    """The doomed node stalls in phase 1 (its ranks are up, the other waits for it) and is killed
    there, every process of it at once, as when a machine goes down."""
    doc.write_text(TEXT * 8)  # six blocks: three a node, the doomed one stalls in its second
    port = free_port()
    survivor = node(tmp_path, "survivor", tiny_model_dir, doc, port, "--block-size", "128")
    doomed = node(
        tmp_path, "doomed", tiny_model_dir, doc, port, "--block-size", "128", STARCLI_TEST_STALL="60"
    )
    try:
        doomed.wait_for(lambda: has_event(doomed, "progress"), "the doomed node's phase 1", timeout=90)
        survivor.wait_for(lambda: has_event(survivor, "loaded"), "the survivor's model load", timeout=30)
    except AssertionError:
        for job in (survivor, doomed):
            job.proc.kill()
        raise
    lost_rank = next(e["rank"] for e in doomed.events() if e["event"] == "started")
    killed_at = time.monotonic()
    for pid in [doomed.pid, *processes_mentioning(str(doomed.tmpdir))]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code = survivor.finish(timeout=TIMEOUT_S + 20)
    elapsed = time.monotonic() - killed_at
    doomed.finish(timeout=10)
    print(f"the survivor exited {elapsed:.1f} s after the kill (timeout {TIMEOUT_S} s)")
    assert code == 1
    assert elapsed < TIMEOUT_S + 10, elapsed  # the timeout, and the teardown's few seconds
    errors = survivor.error_lines()
    assert len(errors) == 1, survivor.stderr.decode()
    lost = f"lost contact with node {lost_rank} ({socket.gethostname()}, rank {lost_rank})"  # a rank a node
    assert lost in errors[0], errors[0]
    assert "Traceback" not in survivor.stderr.decode()


def test_a_node_that_never_starts_ends_the_other_within_the_timeout(tiny_model_dir, doc, tmp_path):
    port, timeout_s = free_port(), 3  # one node: no other to wait for at start-up, so a short one
    alone = node(tmp_path, "alone", tiny_model_dir, doc, port, timeout_s=timeout_s)
    started = time.monotonic()
    assert alone.finish(timeout=timeout_s + 40) == 1
    errors = alone.error_lines()
    assert len(errors) == 1, alone.stderr.decode()
    assert f"not every one of the 2 nodes joined the rendezvous at 127.0.0.1:{port}" in errors[0]
    assert f"within {timeout_s} s" in errors[0]
    print(f"gave up {time.monotonic() - started:.1f} s after starting (timeout {timeout_s} s)")
