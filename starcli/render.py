"""Everything starcli shows: the answer on stdout, progress and notes on stderr.

stdout carries only the answer (or the ``--json`` object, or the ``--dry-run`` plan), so pipes
and scripts get nothing else. It is written token by token as plain text, and rendered as
markdown only when stdout is a terminal. Progress is drawn with rich on stderr only when stderr
is a terminal and ``--quiet`` is off; rich honours ``NO_COLOR`` and emits no escape codes to a
file or pipe. When both streams are the same terminal, the live progress display stops before
the answer starts (two live displays would overwrite each other) and a one-line summary with
tokens/s follows the answer; when stdout is piped, tokens/s is shown live on stderr.

The stages follow the run's real phases, switched by the engine's events (``Started``, ``Loaded``,
phase-1 ``Progress``, ``QueryStarted``): starting ranks, loading weights, encoding the context
(blocks done over every rank, and the time left once a block has finished), answering. A stage
gets its green ✓ only when the next one begins or the answer is complete; one cut short by an
error, Ctrl-C or anything else gets a red ✗ and says so in its line.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from math import ceil
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from starcli.escaping import answer_for_terminal, json_safe, printable
from starcli.output import write_all

if TYPE_CHECKING:  # the engine imports torch: seconds that --help and usage errors should not pay
    from engine.events import ContextEncoded, Event, Loaded, Started, Stats
    from engine.events import Progress as ProgressEvent

_REFRESH_S = 0.07  # markdown re-render at most ~15 times a second: each render reparses the answer
STARTING, LOADING, ENCODING, ANSWERING = "Starting ranks", "Loading weights", "Encoding context", "Answering"
_ENGINE_STAGES = (STARTING, LOADING, ENCODING, ANSWERING)  # in the order a run goes through them


class _Status(SpinnerColumn):
    """A spinner while a stage runs, a green ✓ once it is done, a red ✗ when it was cut short."""

    def __init__(self) -> None:
        super().__init__(finished_text="[green]✓[/]")

    def render(self, task) -> Any:
        return Text("✗", style="red") if task.fields.get("failed") else super().render(task)


class _Bar(BarColumn):
    """A bar only for stages with a known total; spinner-only stages get none."""

    def render(self, task) -> Any:
        return super().render(task) if task.fields.get("bar") else Text("")


class _TimeLeft(ProgressColumn):
    """Phase 1's time left, counting down to the end the measured time per block predicts (the
    ``ends_at`` field, set once a block has finished). Not rich's TimeRemainingColumn: its rate
    needs two updates within a 30 s window, so it says nothing after the first block of a long
    encoding and forgets its first minutes later on."""

    def render(self, task) -> Text:
        ends_at = task.fields.get("ends_at")
        if ends_at is None or task.finished or task.fields.get("failed"):
            return Text("")
        left = ends_at - task.get_time()
        text = f"~{timedelta(seconds=ceil(left))} left" if left > 0 else "finishing"
        return Text(text, style="progress.remaining")


class Renderer:
    """Draws one run; create it once per command and always call ``close`` (a ``finally``)."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        verbose: bool = False,
        json_output: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], float] | None = None,
    ):
        """``clock``: the progress display's time source (monotonic seconds; tests pass their own)."""
        self.out: TextIO = out or sys.stdout
        self.err_stream: TextIO = err or sys.stderr
        self.out_tty = _isatty(self.out)
        self.err_tty = _isatty(self.err_stream)
        self.quiet, self.verbose, self.json_output = quiet, verbose, json_output
        self.err = Console(file=self.err_stream, highlight=False, soft_wrap=True, emoji=False)
        self.progress: Progress | None = None
        self._clock = clock
        self.resume_progress()
        self._task: TaskID | None = None
        self._stage = ""
        self.world_size = 1
        self.ranks_here: int | None = None  # on one node of several: its ranks, the ones it hears from
        self.total_blocks: int | None = None
        self._ranks_up: set[int] = set()
        self._loaded_at: dict[int, float] = {}  # rank: when its weights were in (its phase 1 began)
        self._blocks: dict[int, tuple[int, int, float]] = {}  # rank: (blocks done, its blocks, when)
        self.answer = ""
        self.citations: list = []  # starcli.citations.Citation, set before finish_answer
        self._live: Live | None = None
        self._restore_echo: Callable[[], None] | None = None
        self._last_refresh = 0.0
        self._generated = 0
        self._gen_started = 0.0

    # --- stages on stderr ---------------------------------------------------------------------
    def stage(self, description: str, total: int | None = None) -> None:
        """Finish the current stage (✓: the next one starts only once it is done) and start the next
        (bookkeeping only without a progress display)."""
        self._stage = description
        if self.progress is None:
            return
        self._finish_stage()
        label = printable(description)
        self._task = self.progress.add_task(label, total=total, count="", bar=total is not None)

    def resume_progress(self) -> None:
        """Show the stage display (on a terminal, without --quiet): at the start, and again after a
        pause (``chat`` takes it down while a question is typed)."""
        if self.progress is not None or not self.err_tty or self.quiet:
            return
        self.progress = Progress(
            _Status(),
            TextColumn("{task.description}", markup=False),
            _Bar(bar_width=30),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            _TimeLeft(),
            console=self.err,
            get_time=self._clock,
            redirect_stdout=False,  # stdout is the answer's alone, never drawn into the display
        )
        self.progress.start()

    def start_ranks(self, world_size: int) -> None:
        """The engine job is launched: torchrun's ranks take seconds to start, then each loads the
        weights; in this process (one rank) loading begins at once."""
        self.world_size = world_size
        self.stage(STARTING if world_size > 1 else LOADING)
        self._count(STARTING, f"0/{world_size} ranks")

    def update_stage(self, description: str | None = None, done: int | None = None, total: int | None = None):
        if self.progress is None or self._task is None:
            return
        count = f"{done}/{total}" if done is not None and total is not None else ""
        kwargs: dict[str, Any] = {"count": count}
        if description is not None:
            kwargs["description"] = printable(description)
        if total is not None:
            kwargs["total"] = total
            kwargs["bar"] = True
        if done is not None:
            kwargs["completed"] = done
        self.progress.update(self._task, **kwargs)

    def _finish_stage(self) -> None:
        """The running stage is done: its ✓ (a stage with no total counts as one unit of work)."""
        if self.progress is not None and self._task is not None:
            task = self.progress.tasks[self._task]
            total = task.total if task.total is not None else 1
            self.progress.update(self._task, total=total, completed=total, ends_at=None)
            self._task = None

    def fail_stage(self, reason: str) -> bool:
        """Mark the running stage cut short (a red ✗, ``reason`` such as ``failed`` or ``interrupted``
        in its line, its clock stopped) and take the display down. False when no stage line shows it
        (no display, or no stage running): the caller then says it in a note."""
        if self.progress is None or self._task is None:
            return False
        self._mark_failed(reason)
        self.stop_progress()
        return True

    def _mark_failed(self, reason: str) -> None:
        assert self.progress is not None and self._task is not None
        task = self.progress.tasks[self._task]
        self.progress.update(self._task, description=f"{task.description} · {reason}", failed=True)
        self.progress.stop_task(self._task)
        self._task = None

    def mute(self) -> None:
        """Say nothing but errors until ``unmute`` (a node of a multi-node job that may not hold
        the answer: which one does is known only once its ranks are up)."""
        self.stop_progress()
        self.quiet = True

    def unmute(self, quiet: bool) -> None:
        """Back to showing stages (unless ``quiet``), from the one running now."""
        self.quiet = quiet
        self.resume_progress()
        if self.progress is not None and self._stage:
            self.stage(self._stage)

    def stop_progress(self) -> None:
        """Take the display down. A stage still running did not finish (the run ended some other
        way: SIGTERM, a closed pipe): it is marked ``stopped``, never given a ✓."""
        if self.progress is not None:
            if self._task is not None:
                self._mark_failed("stopped")
            self.progress.stop()
            self.progress = None

    def _enter(self, name: str, total: int | None = None) -> bool:
        """Start engine stage ``name`` when the run reaches it; an event of a slower rank arriving
        once a later stage has begun changes nothing. True when the stage started."""
        if self._stage in _ENGINE_STAGES and _ENGINE_STAGES.index(self._stage) >= _ENGINE_STAGES.index(name):
            return False
        self.stage(name, total)
        return True

    def _count(self, stage: str, text: str) -> None:
        """Set the count column of ``stage`` if it is the one running."""
        if self.progress is not None and self._task is not None and self._stage == stage:
            self.progress.update(self._task, count=text)

    def _now(self) -> float:
        return self.progress.get_time() if self.progress is not None else 0.0

    # --- notes -------------------------------------------------------------------------------
    def note(self, message: str, *, style: str | None = None) -> None:
        """An informational line on stderr; silent with ``--quiet``. Whatever it quotes from the
        input (paths, reasons) shows its control characters escaped (``printable``)."""
        if not self.quiet:
            self.err.print(printable(message), style=style, markup=False)

    def warn(self, message: str) -> None:
        self.note(f"warning: {message}", style="yellow")

    def error(self, message: str) -> None:
        """The one ``Error:`` line of a failed run, shown even with ``--quiet``; the stage that was
        running is marked failed."""
        self.fail_stage("failed")
        self.stop_progress()
        self.err.print(f"Error: {printable(message)}", style="bold red", markup=False)

    def report_ingest(
        self,
        documents: list,
        skipped: list,
        warnings: list[str],
        tokens: int | None,
        *,
        list_skips: bool = True,
    ) -> None:
        """What was read and what was left out: a summary line (with the estimated tokens, unless
        ``None``: a run that counts them exactly moments later), every skip with ``--verbose``
        (``list_skips`` off when the output lists them anyway, as ``--dry-run``'s plan does)."""
        estimate = f" (~{tokens:,} tokens)" if tokens is not None else ""
        self.update_stage(f"Read {_plural(len(documents), 'file')}{estimate}")
        for warning in warnings:
            self.warn(warning)
        if not skipped or not list_skips:
            return
        if self.verbose:
            self.note(f"skipped {_plural(len(skipped), 'file')}:", style="dim")
            for item in skipped:
                self.note(f"  {item.path}: {item.reason}", style="dim")
            return
        reasons = Counter(item.label for item in skipped)  # the kind of skip: "gitignored", "secret", ...
        detail = ", ".join(f"{reason}: {count}" for reason, count in reasons.most_common(4))
        more = ", …" if len(reasons) > 4 else ""
        self.note(f"skipped {_plural(len(skipped), 'file')} ({detail}{more}); -v lists them", style="dim")

    # --- engine events -----------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        """Show one engine event (matched by ``kind``, so this module needs no engine import)."""
        if event.kind == "token":
            self._token(event.text)
        elif event.kind == "started":
            self._rank_started(event)
        elif event.kind == "loaded":
            self._rank_loaded(event)
        elif event.kind == "progress":
            self._encoding_progress(event)
        elif event.kind == "context_encoded":
            self._encoded(event)
        elif event.kind == "query_started":
            self._gen_started = time.perf_counter()
            self._enter(ANSWERING)
        elif event.kind == "stats":
            self._finish_stage()  # the answer is complete

    def _rank_started(self, event: Started) -> None:
        self.world_size = min(event.world_size, self.ranks_here or event.world_size)
        self._ranks_up.add(event.rank)
        if self.world_size > 1:
            self._enter(STARTING)
            self._count(STARTING, f"{len(self._ranks_up)}/{self.world_size} ranks")
        if len(self._ranks_up) >= self.world_size and self._enter(LOADING):  # all up: they join and load
            self._count(LOADING, f"0/{self.world_size} ranks" if self.world_size > 1 else "")

    def _rank_loaded(self, event: Loaded) -> None:
        self._loaded_at[event.rank] = self._now()
        self._enter(LOADING)
        if self.world_size > 1:
            self._count(LOADING, f"{len(self._loaded_at)}/{self.world_size} ranks")
        if len(self._loaded_at) >= self.world_size:  # every rank has its weights: phase 1 runs on all
            self._encoding_progress()

    def _encoding_progress(self, event: ProgressEvent | None = None) -> None:
        """A rank finished its anchor or a block. The stage switches once no rank is still loading
        (a fast rank starts phase 1 while a slow one loads; its blocks are counted meanwhile)."""
        if event is not None and event.stage == "phase1":
            self._blocks[event.rank] = (event.done, event.total, self._now())
        if 0 < len(self._loaded_at) < self.world_size:
            return
        self._enter(ENCODING, self.total_blocks)
        done = sum(d for d, _, _ in self._blocks.values())
        self._show_blocks(done, self.total_blocks or sum(t for _, t, _ in self._blocks.values()) or None)

    def _encoded(self, event: ContextEncoded) -> None:
        self._enter(ENCODING, event.blocks)
        self._show_blocks(event.blocks, event.blocks)

    def _show_blocks(self, done: int, total: int | None) -> None:
        """Blocks encoded over every rank, and when phase 1 will end at the pace each rank has shown."""
        if self.progress is None or self._task is None or self._stage != ENCODING:
            return
        count = f"{done:,}/{total:,} blocks" if total else f"{done:,} blocks"
        ends_at = self._phase1_end() if total and 0 < done < total else None
        self.progress.update(
            self._task, completed=done, total=total, bar=total is not None, count=count, ends_at=ends_at
        )

    def _phase1_end(self) -> float | None:
        """When the last rank should finish: each rank's blocks left at its own time per block so far,
        timed from its ``Loaded`` (or from this stage's start)."""
        assert self.progress is not None and self._task is not None
        began = self.progress.tasks[self._task].start_time or 0.0
        ends = [
            at + (total - done) * (at - self._loaded_at.get(rank, began)) / done
            for rank, (done, total, at) in self._blocks.items()
            if done
        ]
        return max(ends, default=None)

    def _start_live(self) -> None:
        """The answer's first token, with stdout a terminal: the stage display makes way, since both
        streams are most likely one terminal (two live displays would overwrite each other)."""
        self._count(ANSWERING, "first token")
        self._finish_stage()
        self.stop_progress()
        self._restore_echo = _hide_control_echo(self.out)
        self._live = Live(
            Markdown(""),
            console=Console(file=self.out, emoji=False),
            auto_refresh=False,
            vertical_overflow="ellipsis",  # crop while streaming; the final render shows it all
            redirect_stdout=False,
            redirect_stderr=False,  # notes and rank logs must stay on stderr
        )
        self._live.start()

    def _token(self, text: str) -> None:
        self._generated += 1
        self.answer += text
        if not self.json_output and self.out_tty and self._live is None:
            self._start_live()
        elif self.progress is not None and self._task is not None:
            elapsed = max(time.perf_counter() - self._gen_started, 1e-9)
            rate = self._generated / elapsed
            self.update_stage(f"{ANSWERING} · {_plural(self._generated, 'token')} · {rate:.1f} tok/s")
        if self.json_output or not text:
            return
        if self._live is not None:
            now = time.perf_counter()
            if now - self._last_refresh >= _REFRESH_S:
                self._live.update(Markdown(answer_for_terminal(self.answer)), refresh=True)
                self._last_refresh = now
            return
        write_all(self.out, text)

    # --- several answers ---------------------------------------------------------------------
    def begin_answer(self, header: str) -> None:
        """Before one of several answers: its question, on stderr and only on a terminal (stdout
        carries the answers alone)."""
        if self.err_tty and not self.quiet and not self.json_output:
            self.err.print(header, style="bold", markup=False)

    def end_answer(self, blank_line: bool = True) -> None:
        """One of several answers is complete: close it (final render, newline), then an empty
        line on stdout, and start the next one afresh."""
        self._finish_stage()
        if self._live is not None:
            self._live.update(Markdown(self.answer), refresh=True)
            self._live.stop()
            self._live = None
        elif self.answer and not self.json_output and not self.answer.endswith("\n"):
            self.out.write("\n")
        if blank_line and not self.json_output:
            self.out.write("\n")
        self.out.flush()
        self.answer, self._generated, self._last_refresh = "", 0, 0.0

    # --- the end -----------------------------------------------------------------------------
    def finish_answer(self, stats: Stats | None) -> None:
        """Close the answer (final render, trailing newline) and, on a terminal, one stats line."""
        self._finish_stage()
        self.close()
        self._show_citations()
        if stats is not None and self.err_tty and not self.quiet:
            self.err.print(_stats_line(stats), style="dim", markup=False)

    def _show_citations(self) -> None:
        """The answer's citations, checked (``starcli.citations``): on a terminal each with a ✓ or
        ✗ and, where it names a file, as a link to it (an OSC 8 hyperlink, where the terminal
        supports them); elsewhere only a warning for each one not verified."""
        if self.quiet or not self.citations:
            return
        if not self.err_tty:
            for citation in self.citations:
                if not citation.verified:
                    self.warn(f"unverified citation {citation.text}: {citation.reason}")
            return
        from rich.style import Style

        from starcli.citations import file_url

        self.err.print("Citations:", style="dim")
        for citation in self.citations:
            line = Text(
                "  ✓ " if citation.verified else "  ✗ ", style="green" if citation.verified else "red"
            )
            url = file_url(citation)
            line.append(citation.text, style=Style(link=url) if url else None)
            if not citation.verified:
                line.append(f": not verified, {citation.reason}", style="dim")
            self.err.print(line)

    def close(self) -> None:
        """Leave the terminal tidy: final markdown render, newline after a plain answer, progress gone
        (a stage still running is marked stopped). Safe to call more than once and after a failure
        (the partial answer stays, printed once)."""
        if self._live is not None:
            try:
                self._live.update(Markdown(answer_for_terminal(self.answer)), refresh=True)
                self._live.stop()
            finally:
                self._live = None
                if self._restore_echo is not None:
                    self._restore_echo()
                    self._restore_echo = None
        elif self.answer and not self.json_output and not self.answer.endswith("\n"):
            self.answer += "\n"
            write_all(self.out, "\n")
        self.stop_progress()

    def print_json(self, data: dict[str, Any]) -> None:
        self._finish_stage()  # the result is here: the stage that made it is done
        self.close()
        text = json.dumps(data, ensure_ascii=False, indent=2 if self.out_tty else None)
        # Exact strings; a file name's undecodable bytes (lone surrogates), C1 and bidi characters
        # as \u escapes: the output stays UTF-8 and shows nothing raw on a terminal.
        write_all(self.out, json_safe(text) + "\n")

    def print_text(self, text: str) -> None:
        """Text already made safe to show (``format_plan`` escapes what it quotes)."""
        self._finish_stage()
        self.close()
        write_all(self.out, text)


def answer_json(stats: Stats, model: str, ingested, total_s: float) -> dict[str, Any]:
    """The ``--json`` object: the keys issue 3's contract names (scripts rely on them), and
    ``stopped``, why the answer ended (issue 20)."""
    return {
        "answer": stats.answer,
        "model": model,
        "attention": stats.mode,
        "positions": stats.positions,  # global, or local beyond the model's window (issue 13)
        "block_size": stats.block_size,
        "anchor_size": stats.anchor_size,
        "world_size": stats.world_size,
        "context_tokens": stats.context_tokens,
        "query_tokens": stats.query_tokens,
        "generated_tokens": stats.generated_tokens,
        "stopped": stats.stop_reason,  # eos, stop (a stop string), max_tokens or repetition
        "context_cache": stats.context_cache,  # hit (loaded from a saved context), miss or off
        "sources": [{"path": str(d.path), "tokens": d.tokens} for d in ingested.documents],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in ingested.skipped],
        "timings": {
            "load_s": stats.load_s,
            "context_encoding_s": stats.context_encoding_s,
            "ttft_s": stats.ttft_s,
            "decode_tokens_per_s": stats.decode_tokens_per_s,
            "total_s": total_s,
        },
    }


def _memory_line(memory: dict[str, Any]) -> str:
    """The dry run's estimate of the peak memory beside what the device has free."""
    gib = 1 << 30
    names = (("weights", "weights_bytes"), ("KV cache", "kv_cache_bytes"), ("work", "work_bytes"))
    parts = " + ".join(f"{name} {memory[key] / gib:.1f}" for name, key in names)
    sharing = memory.get("ranks_sharing") or 1
    each = f"{sharing} ranks sharing it, the largest " if sharing > 1 else ""
    free = memory.get("free_bytes")
    room = f"{free / gib:.1f} GiB free on {memory['where']}" if free is not None else "free memory unknown"
    return f"Memory: ~{memory['peak_bytes'] / gib:.1f} GiB at the peak ({each}{parts} GiB); {room}"


def format_plan(plan: dict[str, Any], fold_below: int = 0) -> str:
    """``--dry-run``'s plan as text: tokens by folder (items under ``fold_below`` tokens folded),
    skips, totals, and the run plan rank by rank (or, past the window, the map-reduce that would
    run). Names from the input are shown with control characters escaped (``printable``)."""
    from starcli.tokentree import build_tree, tree_lines

    counted = plan["counted_with"]
    how = f"{counted['tokenizer']} tokenizer, exact" if counted["exact"] else counted["tokenizer"]
    lines = [f"Tokens by folder ({printable(how)}):"]
    lines += [
        printable(line)
        for line in tree_lines(build_tree((s["path"], s["tokens"]) for s in plan["sources"]), fold_below)
    ]
    if plan["skipped"]:
        lines.append(f"Skipped ({len(plan['skipped'])}):")
        lines += [f"  {printable(s['path'])}: {printable(s['reason'])}" for s in plan["skipped"]]
    about = "" if counted["exact"] else "~"
    lines.append(
        f"Context: {about}{plan['context_tokens']:,} tokens with the chat template; "
        f"query: {about}{plan['query_tokens']:,} tokens; answer: up to {plan['max_tokens']:,} tokens"
        + (f"; window {plan['window']:,}" if plan.get("window") else "")
    )
    ranks = _plural(plan["world_size"], "rank")
    lines.append(f"Model {printable(plan['model'])} on {plan['device']}, {ranks}")
    tokens, window = plan["context_tokens"] + plan["query_tokens"], plan.get("window")
    if plan.get("fallback") == "map-reduce":
        lines.append(
            f"Window: the input exceeds the window ({tokens:,} > {window:,} tokens); the run answers "
            f"by map-reduce over about {_plural(plan['parts'], 'part')} of the window, each on its own, "
            "then from what they found (docs/long-inputs.md)"
        )
        lines.append("Dry run: no model was loaded.")
        return "\n".join(lines) + "\n"
    if plan["attention"] != "star":
        lines.append(
            f"Attention: {plan['attention']}; {_plural(plan['blocks'], 'block')}"
            + (", fp8 KV cache" if plan.get("kv_dtype") == "fp8" else "")
        )
    else:
        lines.append(
            f"Attention: star, {_plural(plan['blocks'], 'block')} of {plan['block_size']:,} tokens, "
            f"anchor {plan['anchor_size']:,}, {plan['positions']} positions"
            + (f", delta correction every {plan['delta_stride']} rows" if plan.get("delta_stride") else "")
            + (", fp8 KV cache" if plan.get("kv_dtype") == "fp8" else "")
        )
    for span in plan["ranks"]:
        if not span["blocks"]:
            lines.append(f"  rank {span['rank']}: no blocks")
            continue
        first, last = span["blocks"]
        blocks = f"block {first}" if first == last else f"blocks {first}-{last}"
        (start, stop), (p0, p1) = span["tokens"], span["positions"]
        lines.append(
            f"  rank {span['rank']}: {blocks}, tokens {start:,}-{stop - 1:,}, positions {p0:,}-{p1 - 1:,}"
        )
    lines.append(f"  query and answer from position {plan['query_position']:,}")
    if plan.get("memory"):
        lines.append(_memory_line(plan["memory"]))
    if plan["positions"] == "local" and window and tokens > window:
        lines.append(
            f"Window: the input exceeds the window ({tokens:,} > {window:,} tokens); the run "
            "keeps every block at window-local positions (less reliable: docs/long-inputs.md)"
        )
    lines.append("Dry run: no model was loaded.")
    return "\n".join(lines) + "\n"


def _stats_line(stats: Stats) -> str:
    ranks = f" on {_plural(stats.world_size, 'rank')}" if stats.world_size > 1 else ""
    return (
        f"{stats.context_tokens:,} context tokens encoded in {stats.context_encoding_s:.2f}s{ranks} · "
        f"first token {stats.ttft_s:.2f}s · {stats.generated_tokens} tokens at "
        f"{stats.decode_tokens_per_s:.1f} tok/s"
    )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _hide_control_echo(stream: TextIO) -> Callable[[], None] | None:
    """While the answer is redrawn in place on a terminal, keep the terminal from echoing ``^C``
    (ECHOCTL) and from discarding queued output on Ctrl-C (NOFLSH): the echo landed after a
    full-width last line, moved the cursor a line down, and the final redraw then left the
    answer's first lines on the screen twice. Returns what restores the terminal's settings."""
    try:
        import termios

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        changed = list(saved)
        changed[3] = (saved[3] & ~termios.ECHOCTL) | termios.NOFLSH
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except Exception:  # noqa: BLE001 - not a terminal (termios.error, no fileno, no termios): nothing to do
        return None

    def restore() -> None:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        except Exception:  # noqa: BLE001 - the terminal went away: nothing to restore
            pass

    return restore
