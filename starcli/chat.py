"""``starcli chat SOURCES``: encode the sources once, then answer question after question.

Each follow-up continues the conversation: the earlier questions and answers stay in the query
host's tail (``Engine.answer(follow_up=True)``), so only the new question and its answer cost
anything. The ranks (``--nproc N``) stay up between questions (``starcli.launch.start_session``)
and are told to exit at the end: end of input, Ctrl-D, or Ctrl-C (exit 130).

On a terminal questions are read with ``input()`` and ``readline`` (line editing, history for the
session); otherwise one question per line, each answer followed by an empty line on stdout.
The first question is read before anything heavy happens, so that the run plan (and the saved
context it keys) is the one ``ask`` would make for it.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from typing import Any

from starcli.config import ConfigError
from starcli.render import Renderer

PROMPT = "> "


def questions(interactive: bool) -> Iterator[str]:
    """The user's questions: typed at a prompt (line editing, history), or one per line of stdin;
    blank lines are skipped."""
    if interactive:
        import readline  # noqa: F401 - gives input() line editing and the session's history

        while True:
            try:
                line = input(PROMPT)
            except EOFError:  # Ctrl-D
                sys.stdout.write("\n")
                return
            if line.strip():
                yield line.strip()
    else:
        for line in sys.stdin:
            if line.strip():
                yield line.strip()


def run_chat(renderer: Renderer, sources: list[str], _questions: None, options: dict[str, Any]) -> int:
    """The whole ``chat`` command, raising on any failure (``starcli.cli._run`` reports it)."""
    from starcli import cli

    settings = cli._settings(renderer, options)
    if settings.nnodes > 1:  # its questions are typed on one machine: the ranks follow a local file
        raise ConfigError("starcli chat runs on one machine; set nnodes to 1 (or use ask --also)")
    from starcli.ingest import render_documents

    documents_text = render_documents(cli._read_sources(renderer, sources, options).documents)
    options["command"] = "ask"
    interactive = cli._stdin_is_terminal()
    asked = questions(interactive)
    if interactive:
        renderer.stop_progress()  # the question is typed where the stages were drawn
    first = next(asked, None)
    if first is None:
        return cli.EXIT_OK
    renderer.resume_progress()
    renderer.stage("Loading libraries")
    device, nproc = cli._device_and_ranks(settings)
    from engine.events import Failure, Stats
    from starcli.launch import LaunchError, load_tokenizer, start_session
    from starcli.prompt import ask_instructions, follow_up_ids, query_ids

    wrapped = ask_instructions(first, settings.model)
    request = cli._make_request(renderer, settings, nproc, device, documents_text, [wrapped], options)
    tokenizer = load_tokenizer(settings.model)
    plan = request.plan
    renderer.total_blocks = plan.blocks
    renderer.start_ranks(plan.world_size)
    session = start_session(request, model=settings.model, verbose=options["verbose"])

    def show(events) -> Stats:
        """One answer's events, to the end of the generator (the in-process one keeps the encoded
        context only once it has run to its end)."""
        answered = None
        for event in events:
            if isinstance(event, Failure):
                raise LaunchError(f"rank {event.rank} failed during {event.phase}: {event.message}")
            renderer.handle(event)
            if isinstance(event, Stats):
                renderer.end_answer()
                answered = event
        if answered is None:
            raise LaunchError("the engine finished without an answer; rerun with --verbose")
        return answered

    ended = False  # the input ended: the ranks may finish on their own
    try:
        stats = show(session.start())
        for index in itertools.count(1):
            if interactive:
                renderer.stop_progress()
            question = next(asked, None)
            if question is None:
                break
            wrapped = ask_instructions(question, settings.model)
            query = follow_up_ids(tokenizer, wrapped, stats.stop_reason == "eos", settings.system)
            room = plan.context_span + stats.tail_tokens + len(query) + plan.max_tokens
            follow_up = plan.window is None or room <= plan.window
            if not follow_up:  # the window is full: the context stays, the conversation restarts
                renderer.note("the conversation has filled the model's window; earlier turns are forgotten")
                query = query_ids(tokenizer, wrapped, settings.system)
            stats = show(session.ask(query, index, follow_up))
        ended = True
    finally:
        session.close(graceful=ended)
    return cli.EXIT_OK
