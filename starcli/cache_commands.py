"""``starcli cache list|clear``: the saved contexts (phase 1's results kept for later runs).

No torch: both answer at once. The model conversions in the same cache directory are not touched.
"""

from __future__ import annotations

import datetime
import json as jsonlib
from typing import Annotated

import typer

from engine.context_store import clear, contexts_dir, format_size, list_entries
from starcli.config import ConfigError, read_config, resolve

cache_app = typer.Typer(
    help="The saved contexts: encoded sources kept so that later questions skip encoding.",
    no_args_is_help=True,
    add_completion=False,
)


def _limit() -> str:
    """The size setting in force (config file or STARCLI_CONTEXT_CACHE_SIZE)."""
    try:
        settings = resolve({}, read_config()[0])
    except ConfigError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not settings.context_cache_bytes:
        return "saving off"
    return f"limit {format_size(settings.context_cache_bytes)}"


@cache_app.command("list")
def cache_list(
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List the saved contexts, most recently used first."""
    limit = _limit()
    entries = list(reversed(list_entries()))
    total = sum(e.bytes for e in entries)
    if json:
        data = {
            "directory": str(contexts_dir()),
            "bytes": total,
            "entries": [
                {"key": e.key, "bytes": e.bytes, "last_used": e.last_used, **e.info} for e in entries
            ],
        }
        typer.echo(jsonlib.dumps(data))
        return
    for e in entries:
        used = datetime.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        info = e.info
        what = (
            f"{info.get('tokens', 0):,} tokens, {info.get('attention', '?')}, "
            f"{info.get('ranks', '?')} rank(s), block {info.get('block_size', '?')}"
            if info
            else "incomplete"
        )
        typer.echo(f"{e.key[:12]}  {used}  {format_size(e.bytes):>10}  {what}")
    count = f"{len(entries)} saved context{'' if len(entries) == 1 else 's'}"
    typer.echo(f"{count}, {format_size(total)} ({limit}) in {contexts_dir()}")


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every saved context (the converted models stay)."""
    count, size = clear()
    typer.echo(f"Removed {count} saved context{'' if count == 1 else 's'} ({format_size(size)}).")
