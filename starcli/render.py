"""Everything starcli shows: the answer on stdout, progress and notes on stderr.

stdout carries only the answer (or the ``--json`` object, or the ``--dry-run`` plan), so pipes
and scripts get nothing else. It is written token by token as plain text, and rendered as
markdown only when stdout is a terminal. Progress is drawn with rich on stderr only when stderr
is a terminal and ``--quiet`` is off; rich honours ``NO_COLOR`` and emits no escape codes to a
file or pipe. When both streams are the same terminal, the live progress display stops before
the answer starts (two live displays would overwrite each other) and a one-line summary with
tokens/s follows the answer; when stdout is piped, tokens/s is shown live on stderr.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

if TYPE_CHECKING:  # the engine imports torch: seconds that --help and usage errors should not pay
    from engine.events import Event, Stats
    from engine.events import Progress as ProgressEvent

_SURROGATE = re.compile("[\ud800-\udfff]")
_REFRESH_S = 0.07  # markdown re-render at most ~15 times a second: each render reparses the answer


class _Bar(BarColumn):
    """A bar only for stages with a known total; spinner-only stages get none."""

    def render(self, task) -> Any:
        return super().render(task) if task.fields.get("bar") else Text("")


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
    ):
        self.out: TextIO = out or sys.stdout
        self.err_stream: TextIO = err or sys.stderr
        self.out_tty = _isatty(self.out)
        self.err_tty = _isatty(self.err_stream)
        self.quiet, self.verbose, self.json_output = quiet, verbose, json_output
        self.err = Console(file=self.err_stream, highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        if self.err_tty and not quiet:
            self.progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description}"),
                _Bar(bar_width=30),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=self.err,
                redirect_stdout=False,  # stdout is the answer's alone, never drawn into the display
            )
            self.progress.start()
        self._task: TaskID | None = None
        self._stage = ""
        self._phase1: dict[int, tuple[int, int]] = {}
        self.total_blocks: int | None = None
        self.answer = ""
        self._live: Live | None = None
        self._last_refresh = 0.0
        self._generated = 0
        self._gen_started = 0.0

    # --- stages on stderr ---------------------------------------------------------------------
    def stage(self, description: str, total: int | None = None) -> None:
        """Finish the current stage and start the next (no-op without a progress display)."""
        self._stage = description
        if self.progress is None:
            return
        self._finish_stage()
        self._task = self.progress.add_task(description, total=total, count="", bar=total is not None)

    def update_stage(self, description: str | None = None, done: int | None = None, total: int | None = None):
        if self.progress is None or self._task is None:
            return
        count = f"{done}/{total}" if done is not None and total is not None else ""
        kwargs: dict[str, Any] = {"count": count}
        if description is not None:
            kwargs["description"] = description
        if total is not None:
            kwargs["total"] = total
            kwargs["bar"] = True
        if done is not None:
            kwargs["completed"] = done
        self.progress.update(self._task, **kwargs)

    def _finish_stage(self) -> None:
        if self.progress is not None and self._task is not None:
            task = self.progress.tasks[self._task]
            total = task.total if task.total is not None else 1
            self.progress.update(self._task, total=total, completed=total)
            self._task = None

    def stop_progress(self) -> None:
        if self.progress is not None:
            self._finish_stage()
            self.progress.stop()
            self.progress = None

    # --- notes -------------------------------------------------------------------------------
    def note(self, message: str, *, style: str | None = None) -> None:
        """An informational line on stderr; silent with ``--quiet``."""
        if not self.quiet:
            self.err.print(message, style=style, markup=False)

    def warn(self, message: str) -> None:
        self.note(f"warning: {message}", style="yellow")

    def error(self, message: str) -> None:
        """The one ``Error:`` line of a failed run; shown even with ``--quiet``."""
        self.stop_progress()
        self.err.print(f"Error: {message}", style="bold red", markup=False)

    def report_ingest(
        self, documents: list, skipped: list, warnings: list[str], tokens: int, *, list_skips: bool = True
    ) -> None:
        """What was read and what was left out: a summary line, every skip with ``--verbose``
        (``list_skips`` off when the output lists them anyway, as ``--dry-run``'s plan does)."""
        self.update_stage(f"Read {_plural(len(documents), 'file')} (~{tokens:,} tokens)")
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
        elif event.kind == "progress":
            self._progress(event)
        elif event.kind == "context_encoded":
            self.update_stage(done=event.blocks, total=event.blocks)
        elif event.kind == "query_started":
            self._start_answer()

    def _progress(self, event: ProgressEvent) -> None:
        if event.stage == "load":
            if self._stage in ("Encoding context", "Generating"):
                return  # a slower rank finished loading after a faster one started phase 1
            if self._stage != "Loading model":
                self.stage("Loading model")
            if event.total > 1:
                self.update_stage(done=event.done, total=event.total)
            return
        if event.stage == "phase1":
            self._phase1[event.rank] = (event.done, event.total)
        if self._stage != "Encoding context":
            self.stage("Encoding context")
        done = sum(d for d, _ in self._phase1.values())
        total = self.total_blocks or sum(t for _, t in self._phase1.values()) or None
        self.update_stage(done=done, total=total)

    def _start_answer(self) -> None:
        self._gen_started = time.perf_counter()
        if self.json_output or not self.out_tty:
            self.stage("Generating")
            return
        self.stop_progress()
        self._live = Live(
            Markdown(""),
            console=Console(file=self.out),
            auto_refresh=False,
            vertical_overflow="ellipsis",  # crop while streaming; the final render shows it all
            redirect_stdout=False,
            redirect_stderr=False,  # notes and rank logs must stay on stderr
        )
        self._live.start()

    def _token(self, text: str) -> None:
        self._generated += 1
        self.answer += text
        if self.progress is not None and self._task is not None:
            elapsed = max(time.perf_counter() - self._gen_started, 1e-9)
            rate = self._generated / elapsed
            self.update_stage(f"Generating · {_plural(self._generated, 'token')} · {rate:.1f} tok/s")
        if self.json_output or not text:
            return
        if self._live is not None:
            now = time.perf_counter()
            if now - self._last_refresh >= _REFRESH_S:
                self._live.update(Markdown(self.answer), refresh=True)
                self._last_refresh = now
            return
        self.out.write(text)
        self.out.flush()

    # --- the end -----------------------------------------------------------------------------
    def finish_answer(self, stats: Stats | None) -> None:
        """Close the answer (final render, trailing newline) and, on a terminal, one stats line."""
        self.close()
        if stats is not None and self.err_tty and not self.quiet:
            self.err.print(_stats_line(stats), style="dim", markup=False)

    def close(self) -> None:
        """Leave the terminal tidy: final markdown render, newline after a plain answer, progress gone.
        Safe to call more than once and after a failure (the partial answer stays, printed once)."""
        if self._live is not None:
            self._live.update(Markdown(self.answer), refresh=True)
            self._live.stop()
            self._live = None
        elif self.answer and not self.json_output and not self.answer.endswith("\n"):
            self.answer += "\n"
            self.out.write("\n")
            self.out.flush()
        self.stop_progress()

    def print_json(self, data: dict[str, Any]) -> None:
        self.close()
        text = json.dumps(data, ensure_ascii=False, indent=2 if self.out_tty else None)
        # A file name's undecodable bytes (lone surrogates) as \u escapes: the output stays UTF-8.
        text = _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
        self.out.write(text + "\n")
        self.out.flush()

    def print_text(self, text: str) -> None:
        self.close()
        self.out.write(text)
        self.out.flush()


def answer_json(stats: Stats, model: str, ingested, total_s: float) -> dict[str, Any]:
    """The ``--json`` object: exactly the keys issue 3's contract names (scripts rely on them)."""
    return {
        "answer": stats.answer,
        "model": model,
        "attention": stats.mode,
        "block_size": stats.block_size,
        "anchor_size": stats.anchor_size,
        "world_size": stats.world_size,
        "context_tokens": stats.context_tokens,
        "query_tokens": stats.query_tokens,
        "generated_tokens": stats.generated_tokens,
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


def format_plan(plan: dict[str, Any]) -> str:
    """``--dry-run``'s plan as text: sources, skips, estimates, blocks."""
    lines = ["Sources (estimated tokens):"]
    lines += [f"  {s['tokens']:>9,}  {s['path']}" for s in plan["sources"]]
    if plan["skipped"]:
        lines.append(f"Skipped ({len(plan['skipped'])}):")
        lines += [f"  {s['path']}: {s['reason']}" for s in plan["skipped"]]
    lines.append(f"Context: ~{plan['context_tokens']:,} tokens; query: ~{plan['query_tokens']:,} tokens")
    if plan["attention"] != "star":
        lines.append(f"Attention: {plan['attention']}; model {plan['model']} on {plan['device']}")
        lines.append(f"Blocks: {plan['blocks']:,} over {_plural(plan['world_size'], 'rank')}")
    else:
        per_rank = ", ".join(str(b) for b in plan["blocks_per_rank"])
        lines.append(
            f"Attention: star, block {plan['block_size']:,}, anchor {plan['anchor_size']:,}; "
            f"model {plan['model']} on {plan['device']}"
        )
        ranks = _plural(plan["world_size"], "rank")
        lines.append(f"Blocks: {plan['blocks']:,} over {ranks} (blocks per rank: {per_rank})")
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
