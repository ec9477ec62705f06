"""The ``starcli`` command line: thin commands over ingestion, prompting, the launcher and rendering.

Heavy modules (torch, transformers, the engine) are imported inside the commands, so ``--help``,
``--version`` and usage errors answer at once. Every failure ends as one ``Error:`` line and a
documented exit code (``exit_code_for``); a traceback only with ``--verbose``.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from contextlib import closing
from typing import Annotated, Any

import typer

from engine.errors import StarcliError, is_out_of_memory
from engine.paths import cache_dir, keep_compiler_caches_in
from engine.settings import Attention, Positions
from starcli import __version__, helpformat
from starcli import config as opt
from starcli.config import OPTION_NAMES, ConfigError, Settings, read_config, resolve
from starcli.escaping import printable
from starcli.interrupts import held_signals
from starcli.optionsets import CHAT, CONTEXT, RUN, takes
from starcli.output import check_stdout_open
from starcli.render import Renderer, answer_json, format_plan

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
OUT_OF_MEMORY_HINT = "out of memory; try a smaller --block-size, more --nproc, or a shorter input"

helpformat.install()

SETTINGS_EPILOG = (
    "Every option can also be set in $XDG_CONFIG_HOME/starcli/config.toml (or the file "
    "$STARCLI_CONFIG names; keys are the long option names, e.g. block-size = 8192) or in its "
    "STARCLI_* variable; flags beat variables, variables beat the file."
)

app = typer.Typer(
    name="starcli",
    help="Ask questions about, and summarize, very long documents with Star Attention.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"starcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Ask questions about, and summarize, very long documents with Star Attention.

    A SOURCE is a file (text, code, PDF), a directory (read as a repository) or - for stdin;
    with no SOURCE, piped stdin is read. Defaults come from $XDG_CONFIG_HOME/starcli/config.toml,
    then STARCLI_* variables, then flags.

    Engine options (how, never what, the engine computes) are read from the config file or these
    variables: STARCLI_SHARE_ANCHOR (1: rank 0 sends the anchor), STARCLI_CUDA_GRAPHS (1),
    STARCLI_COMPILE (0), STARCLI_FUSED (1), STARCLI_KERNELS (auto or reference),
    STARCLI_TIMEOUT (300: seconds a rank waits for the others), STARCLI_MEMORY_CHECK (1: refuse
    a run whose estimated peak memory exceeds the device's free memory, before loading weights).
    """


@app.command(no_args_is_help=True, epilog=SETTINGS_EPILOG)
@takes(RUN)
def ask(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(metavar="SOURCE", show_default=False, help="Files, directories or - (stdin)."),
    ] = None,
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="What to ask about the sources.")] = ...,
    also: Annotated[
        list[str] | None,
        typer.Option(
            "--also",
            metavar="QUESTION",
            show_default=False,
            rich_help_panel="Answer",
            help="Another question over the same encoding (repeatable); the answers follow in order, "
            "separated by an empty line (--json: one object per question, one per line).",
        ),
    ] = None,
    **options: Any,
) -> None:
    """Answer QUESTION about the sources; the answer streams to stdout."""
    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    if any(not q.strip() for q in also or ()):
        raise typer.BadParameter("the question is empty", param_hint="--also")
    if not sources and os.path.exists(question):
        # One argument naming a file: the user named a source and forgot the question. With stdin
        # piped too, reading stdin and asking it "small.txt" would be a silent guess.
        shown = printable(question)
        piped = f' (or {ctx.command_path} - "{shown}" to ask that about stdin)'
        piped = "" if _stdin_is_terminal() else piped
        typer.echo(
            f"Error: missing QUESTION ('{shown}' is a file, not a question); "
            f'try: {ctx.command_path} {shown} "your question"{piped}',
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(_run(_sources_or_stdin(ctx, sources), [question, *(also or ())], options))


@app.command(epilog=SETTINGS_EPILOG)
@takes(RUN)
def summarize(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(metavar="SOURCE", show_default=False, help="Files, directories or - (stdin)."),
    ] = None,
    **options: Any,
) -> None:
    """Summarize the sources (a document, or a repository's purpose and layout)."""
    raise typer.Exit(_run(_sources_or_stdin(ctx, sources), None, options))


@app.command(no_args_is_help=True, epilog=SETTINGS_EPILOG)
@takes(CHAT)
def chat(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SOURCE",
            show_default=False,
            help="Files or directories (not -: stdin holds the questions).",
        ),
    ] = None,
    **options: Any,
) -> None:
    """Encode the sources once, then answer question after question; follow-ups see the earlier
    turns. On a terminal: a prompt with line editing, Ctrl-D to end. Piped: one question per
    line, each answer followed by an empty line."""
    if "-" in (sources or ()):
        typer.echo(
            "Error: chat reads its questions from stdin, so a SOURCE cannot be -; "
            "save the piped input to a file and name that file",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    options = dict(options, json=False)
    from starcli.chat import run_chat

    raise typer.Exit(_run(list(sources or ()), None, options, body=run_chat))


def _register_subcommands() -> None:
    from starcli.cache_commands import cache_app

    app.add_typer(cache_app, name="cache")


_register_subcommands()


def _sources_or_stdin(ctx: typer.Context, sources: list[str] | None) -> list[str]:
    """The sources as given; none means piped stdin. With nothing piped either, exit 2 at once:
    reading a terminal would sit waiting for input nobody meant to type. An empty SOURCE ('')
    is a usage error, not a file that does not exist."""
    if sources and "" in sources:
        hint = "'' names nothing; give a file, a directory or - for stdin"
        raise typer.BadParameter(hint, param_hint="SOURCE")
    if sources:
        return list(sources)
    if _stdin_is_terminal():
        typer.echo(
            f"Error: no SOURCE given and nothing piped on stdin; try '{ctx.command_path} --help'", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    return ["-"]


@app.command("context")
@takes(CONTEXT)
def context_command(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(metavar="SOURCE", show_default=False, help="Files, directories or - (stdin)."),
    ] = None,
    layout: opt.ContextFormat = "text",
    **options: Any,
) -> None:
    """Print the documents exactly as the model reads them, after every filter (secrets,
    .gitignore, binaries, --include/--exclude); skips are listed on stderr as for ask."""
    options = dict(options, layout=layout, json=False)
    raise typer.Exit(_run(_sources_or_stdin(ctx, sources), None, options, _print_context))


def _print_context(
    renderer: Renderer, sources: list[str], _question: str | None, options: dict[str, Any]
) -> int:
    """Read the sources as ``ask`` would and write the context to stdout, document by document."""
    from starcli.contextformat import format_context

    ingested = _read_sources(renderer, sources, options)
    renderer.print_text("")  # the reading stage is done and the display gone before stdout is written
    for piece in format_context(ingested.documents, options["layout"]):
        renderer.out.write(piece)
    renderer.out.flush()
    return EXIT_OK


def _run(sources: list[str], questions: list[str] | None, options: dict[str, Any], body=None) -> int:
    """Run one command (``body``: ``_execute`` unless given) and turn every outcome into an exit
    code (``exit_code_for``)."""
    _keep_undecodable_bytes()
    renderer = Renderer(quiet=options["quiet"], verbose=options["verbose"], json_output=options["json"])
    try:
        return (body or _execute)(renderer, sources, questions, options)
    except BrokenPipeError:
        silence_stdout()  # the reader went away (| head): stop quietly, as Unix tools do
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        shown = renderer.fail_stage("interrupted")  # the running stage's line says so, with a ✗
        _close(renderer)  # the partial answer stays, printed once
        if not shown:
            renderer.note("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure becomes one Error: line and its code
        code = exit_code_for(exc)
        renderer.fail_stage("failed")
        _close(renderer)
        if options["verbose"]:
            import traceback

            traceback.print_exc(file=sys.stderr)
        renderer.error(_message(exc, code))
        return code
    finally:
        _close(renderer)


def _execute(
    renderer: Renderer, sources: list[str], questions: list[str] | None, options: dict[str, Any]
) -> int:
    """Read, plan, run, print: the whole command, raising on any failure."""
    started = time.perf_counter()
    check_stdout_open(sys.stdout)  # before any work: a closed stdout is said in words, not a crash
    settings = _settings(renderer, options)
    if settings.nnodes > 1 and not options["verbose"]:
        renderer.mute()  # until this node turns out to hold the answer (_answer_all)
    from starcli import ingest as ingestion
    from starcli.prompt import ask_instructions, summary_instructions

    ingested = _read_sources(renderer, sources, options)
    options["command"] = "ask" if questions else "summarize"
    renderer.stage("Loading libraries")  # torch and transformers: seconds, only once the input is good
    device, nproc = _device_and_ranks(settings)
    queries = (
        [ask_instructions(q, settings.model) for q in questions]
        if questions
        else [summary_instructions(sources)]
    )
    if options["dry_run"]:
        from starcli.prompt import estimate_plan

        command, longest = options["command"], max(queries, key=len)
        plan = estimate_plan(settings, nproc, device, ingested, None, longest, command)
        text = format_plan(plan, options.get("fold_below") or 0)
        renderer.print_json(plan) if options["json"] else renderer.print_text(text)
        return EXIT_OK
    from engine.errors import BeyondLocalPositionsError
    from engine.models import DEFAULT_MODEL
    from starcli.citations import find_citations
    from starcli.fallback import fallback_json

    if _may_refuse_for_length(settings):  # an estimate then stops a far too long input before the exact count
        options["context_estimate"] = ingestion.estimate_context_tokens(ingested.documents)
    elif settings.positions != "local":  # past the window map-reduce answers, up to its part limit
        _check_map_reduce_reach(settings, ingested, options["command"])
    documents_text = ingestion.render_documents(ingested.documents)
    several = len(queries) > 1

    def on_answer(stats, index: int | None = None, fallback=None) -> None:
        index = stats.query if index is None else index
        renderer.citations = find_citations(stats.answer, ingested.documents)
        if options["json"]:
            total_s = time.perf_counter() - started
            data = answer_json(stats, settings.model or DEFAULT_MODEL, ingested, total_s)
            data["citations"] = [citation.to_json() for citation in renderer.citations]
            data.update(fallback_json(fallback))
            renderer.print_json({**data, "question": questions[index]} if questions else data)
        elif index == len(queries) - 1:
            renderer.finish_answer(stats)
        else:
            renderer.end_answer()

    headers = [f"Q: {q}" for q in questions] if several and questions else None
    try:
        request = _make_request(renderer, settings, nproc, device, documents_text, queries, options)
    except BeyondLocalPositionsError as exc:
        if settings.fallback != "map-reduce":
            raise
        if settings.nnodes > 1:
            raise ConfigError(
                f"the input is {exc.context_tokens + exc.query_tokens:,} tokens, past 2x the model's "
                f"{exc.limit:,}-token window, where map-reduce answers on one machine only: drop "
                "--nnodes, or shorten the input"
            ) from exc
        renderer.note(
            f"the input is {exc.context_tokens + exc.query_tokens:,} tokens, "
            f"{(exc.context_tokens + exc.query_tokens) / exc.limit:.1f}× the model's {exc.limit:,}-token "
            "window: answering by map-reduce over window-sized parts (docs/long-inputs.md)"
        )
        _map_reduce_all(
            renderer, settings, device, documents_text, questions, queries, options, on_answer, headers
        )
        return EXIT_OK
    _answer_all(renderer, request, settings, options, on_answer, headers)
    return EXIT_OK


def _may_refuse_for_length(settings: Settings) -> bool:
    """Whether any input length can be refused: not with star attention and either automatic
    positions with the map-reduce fallback (the defaults) or local positions (every block stays
    within the window however many there are), which answer at any length. Where none can be,
    no estimate is made: a run counts exactly, and the estimate's vocabulary takes time to load."""
    if settings.attention != "star":
        return True
    return not (
        settings.positions == "local" or (settings.fallback == "map-reduce" and settings.positions == "auto")
    )


def _check_map_reduce_reach(settings: Settings, ingested, command: str) -> None:
    """Refuse up front an input too large even for map-reduce (``starcli.mapreduce.MAX_PARTS``),
    estimating only when the text is long enough that it might be: a normal run counts once."""
    from starcli.ingest import estimate_context_tokens
    from starcli.mapreduce import MAX_PARTS, check_part_count
    from starcli.prompt import model_facts

    window, _ = model_facts(settings.model)
    chars = sum(len(doc.text) for doc in ingested.documents)
    if window and chars > MAX_PARTS * window:  # under ~1 character a token, it cannot be too long
        check_part_count(estimate_context_tokens(ingested.documents), 64, window, command)


def _map_reduce_all(
    renderer, settings, device, documents_text, questions, queries, options, on_answer, headers
):
    """Every question by map-reduce over window-sized parts (``starcli.fallback``), one model load."""
    from starcli.fallback import load_engine, run_map_reduce
    from starcli.launch import load_tokenizer
    from starcli.prompt import model_facts

    tokenizer = load_tokenizer(settings.model)
    window, cost = model_facts(settings.model)
    engine = load_engine(renderer, settings, device)
    for index, query in enumerate(queries):
        if headers:
            renderer.begin_answer(headers[index])
        asked = questions[index] if questions else None
        stats, result = run_map_reduce(
            renderer,
            engine,
            settings,
            options["command"],
            device,
            tokenizer,
            documents_text,
            query,
            asked,
            window,
            cost,
        )
        on_answer(stats, index, result)


def _settings(renderer: Renderer, options: dict[str, Any]) -> Settings:
    """The run's settings: flags, then variables, then the config file (its warnings shown)."""
    _quiet_libraries()
    keep_compiler_caches_in(cache_dir())
    file_values, config_warnings = read_config()
    settings = resolve({name: options.get(name) for name in OPTION_NAMES}, file_values)
    for warning in config_warnings:
        renderer.warn(warning)
    return settings


def _read_sources(renderer: Renderer, sources: list[str], options: dict[str, Any]):
    """Ingest the sources and report what was read and skipped (no joined text: the dry run and
    the context command do without it)."""
    from starcli import ingest as ingestion

    renderer.stage("Reading sources")
    ingested = ingestion.ingest(
        sources,
        stdin=getattr(sys.stdin, "buffer", sys.stdin) if "-" in sources else None,
        include=tuple(options["include"] or ()),
        exclude=tuple(options["exclude"] or ()),
        use_gitignore=not options["no_gitignore"],
        skip_unreadable=options.get("skip_unreadable", False),
        redact_secrets=options.get("redact_secrets", False),
    )
    renderer.report_ingest(
        ingested.documents,
        ingested.skipped,
        ingested.warnings,
        ingested.total_tokens if options.get("dry_run") else None,  # a run counts them exactly
        list_skips=not (options.get("dry_run") and not options["json"]),
    )
    return ingested


def _device_and_ranks(settings: Settings) -> tuple[str, int]:
    from starcli.launch import default_nproc, resolve_device

    with held_signals():  # torch's import: Ctrl-C acts once it is done (starcli.interrupts)
        device = resolve_device(settings.device)
        nproc = settings.nproc or (1 if settings.attention == Attention.GLOBAL else default_nproc(device))
    return device, nproc * settings.nnodes  # every node's ranks: the plan spreads blocks over them all


def _nodes(settings: Settings):
    """The machines the job spans (``starcli.launch.Nodes``)."""
    from starcli.launch import Nodes

    return Nodes(settings.nnodes, settings.rdzv_endpoint, settings.rdzv_id)


def _make_request(
    renderer: Renderer,
    settings: Settings,
    nproc: int,
    device: str,
    documents_text: str,
    queries: list[str],
    options: dict[str, Any],
):
    """Tokenize exactly and make the run plan (refusing input beyond the window before any weights
    load); the request answers every query over one encoding, saved for later runs unless off."""
    from engine.request import Request
    from engine.runplan import make_run_plan
    from starcli.launch import load_tokenizer
    from starcli.prompt import build, model_facts, query_ids, refuse_far_beyond_window

    renderer.stage("Tokenizing")
    with held_signals():  # transformers' imports, the model's config: Ctrl-C acts once they are in
        window, cost = model_facts(settings.model)
    run_settings = settings.run_settings(options["command"])
    if "context_estimate" in options:  # before the exact count: a far too long input stops at once
        longest = max(queries, key=len)
        estimate = options["context_estimate"]
        refuse_far_beyond_window(settings, run_settings, estimate, longest, nproc, device, window)
    with held_signals():
        tokenizer = load_tokenizer(settings.model)
    prompt = build(tokenizer, documents_text, queries[0], settings.system)
    ids = [prompt.query_ids] + [query_ids(tokenizer, q, settings.system) for q in queries[1:]]
    n, m = len(prompt.context_ids), max(len(q) for q in ids)
    of_window = f" of {window:,}" if window else ""
    renderer.update_stage(f"Tokenized: {n:,} context + {m:,} query tokens{of_window}")
    plan = make_run_plan(run_settings, n, m, nproc, device, window, cost)
    _refuse_beyond_memory(settings, plan, cost)
    if settings.max_tokens is None and plan.max_tokens < run_settings.generation.default_max_tokens:
        renderer.note(f"answer limited to {plan.max_tokens} tokens by the model's window of {window:,}")
    if plan.positions == Positions.LOCAL and window and n + m > window and renderer.err_tty:
        renderer.note(
            f"the input is {n + m:,} tokens, {(n + m) / window:.1f}× the model's {window:,}-token "
            "window: blocks keep window-local positions (answers are less reliable beyond the "
            "window: docs/long-inputs.md)"
        )
    return Request(prompt.context_ids, ids, run_settings, plan, _saved_contexts(settings))


def _refuse_beyond_memory(settings: Settings, plan, cost) -> None:
    """Refuse, before any weights load, a plan whose estimated peak exceeds the free memory of its
    device (``engine.memory``). On CPU the machine's ranks share it; on CUDA this process reads its
    GPU only where it runs the one rank itself: a torchrun job's ranks read their own GPU before
    loading (read here, every GPU would keep this process's CUDA context for the whole run)."""
    if not plan.options.memory_check:
        return
    from engine.memory_budget import check_budget, probe_budget
    from starcli.prompt import model_shape

    shape = model_shape(settings.model)
    budget = probe_budget(plan, settings.nnodes)
    if shape is not None and budget is not None:
        check_budget(plan, shape, budget, cost)


def _saved_contexts(settings: Settings):
    """Where and how the run saves its encoded context, or None when that is off (or the model
    has no local files to fingerprint yet)."""
    limit = settings.context_cache_bytes
    if not limit:
        return None
    from engine.context_store import StoreSpec, contexts_dir, model_fingerprint
    from engine.models import DEFAULT_MODEL, is_default, resolve_model_path

    name = DEFAULT_MODEL if is_default(settings.model) else settings.model
    key = model_fingerprint(name, resolve_model_path(settings.model))
    return StoreSpec(str(contexts_dir()), limit, key) if key else None


def _answer_all(renderer: Renderer, request, settings: Settings, options: dict[str, Any], on_answer, headers):
    """Run the request and stream its events; ``on_answer(stats)`` as each answer completes
    (``headers``: a line on stderr before each answer, when there are several). On several nodes
    only the one whose ranks include the query host (the last rank) answers; it shows the stages
    from the moment it knows, and the others stay quiet."""
    from engine.events import Failure, QueryStarted, Started, Stats
    from starcli.launch import LaunchError, run_request

    plan = request.plan
    several_nodes = settings.nnodes > 1
    renderer.total_blocks = plan.world_size if plan.attention == Attention.RING else plan.blocks
    if several_nodes:  # the stages count what this node's ranks report: theirs, not all
        renderer.ranks_here, renderer.total_blocks = plan.world_size // settings.nnodes, None
    renderer.start_ranks(renderer.ranks_here or plan.world_size)
    answered, holds_host = 0, not several_nodes
    events = run_request(request, model=settings.model, verbose=options["verbose"], nodes=_nodes(settings))
    with closing(events):  # closing it on any exit stops the job's workers
        for event in events:
            if isinstance(event, Failure):  # a rank's failure the launcher passed on
                raise LaunchError(f"rank {event.rank} failed during {event.phase}: {event.message}")
            if isinstance(event, Started) and event.rank == event.world_size - 1 and several_nodes:
                holds_host = True
                renderer.unmute(options["quiet"])
            if isinstance(event, QueryStarted) and headers:
                renderer.begin_answer(headers[event.query])
            renderer.handle(event)
            if isinstance(event, Stats):
                answered += 1
                on_answer(event)
                # Every answer is out: leave the ranks' teardown to closing(). On several nodes
                # torchrun ends by itself once every node is done; stopping it early would be
                # another node's error.
                if answered == len(request.queries) and not several_nodes:
                    break
    if not holds_host:
        if options["verbose"]:
            renderer.note(f"done: the answer is printed on the node holding rank {plan.world_size - 1}")
        return
    if answered < len(request.queries):
        raise LaunchError("the engine finished without an answer; rerun with --verbose")


def exit_code_for(exc: BaseException) -> int:
    """The error's own exit code (``StarcliError.exit_code``: 2 for bad usage or unusable input,
    1 for runtime failures), 130 for Ctrl-C, 141 (as if killed by SIGPIPE, like other Unix tools)
    when stdout's reader went away, 1 for anything unexpected."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    return exc.exit_code if isinstance(exc, StarcliError) else EXIT_FAILURE


def _message(exc: BaseException, code: int) -> str:
    """The text after ``Error:``: our own errors speak for themselves; anything else is named."""
    if is_out_of_memory(exc):
        return OUT_OF_MEMORY_HINT
    message = str(exc).strip() or type(exc).__name__
    if code == EXIT_FAILURE and type(exc).__module__ == "builtins":
        message = f"{type(exc).__name__}: {message}"
    if code == EXIT_USAGE and isinstance(exc, StarcliError):
        return message  # ours, one line by design: a newline in it is a path's (escaped on print)
    return message.splitlines()[0] if message else message


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so that flushing what is still buffered cannot raise at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _keep_undecodable_bytes() -> None:
    """File names that are not valid UTF-8 reach Python with their bad bytes as lone surrogates;
    write those bytes back out as they were (as ls does) instead of failing under a UTF-8 locale."""
    try:
        sys.stdout.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError, io.UnsupportedOperation):
        pass


def _quiet_libraries() -> None:
    """Keep transformers' own progress bars and advice off stderr (ours says what is happening);
    set in the environment so that torchrun's ranks inherit it too."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if (hf_logging := sys.modules.get("transformers.utils.logging")) is not None:
        hf_logging.disable_progress_bar()  # already imported (tests in one process): env is read too late
        hf_logging.set_verbosity_error()


def _close(renderer: Renderer) -> None:
    try:
        renderer.close()
    except BrokenPipeError:
        silence_stdout()


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is None or sys.stdin.isatty()
    except (AttributeError, ValueError):
        return True


def _terminate(signum: int, _frame) -> None:
    """SIGTERM unwinds like an exception, so a torchrun job is torn down and the terminal tidied
    (the default action would kill this process and leave that to the ranks' own watchdog)."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
