"""The option sets commands share (``starcli.optionsets``): every setting with a flag reaches the
commands that run the engine, and a command gets exactly its set."""

from __future__ import annotations

import pytest
import typer

from starcli.cli import app
from starcli.config import OPTION_NAMES
from starcli.optionsets import CHAT, RUN, Shared, takes, without


def options_of(command: str) -> list[str]:
    group = typer.main.get_command(app)
    return [p.name for p in group.commands[command].params if isinstance(p, typer.core.TyperOption)]


@pytest.mark.parametrize("command", ["ask", "summarize"])
def test_every_setting_with_a_flag_is_an_option_of_ask_and_summarize(command):
    options = options_of(command)
    assert set(OPTION_NAMES) <= set(options), set(OPTION_NAMES) - set(options)
    assert options[-len(RUN) :] == [o.name for o in RUN]  # in the set's order, after the command's own


def test_chat_takes_the_run_options_but_those_of_one_shot_runs():
    chat = options_of("chat")
    assert chat == [o.name for o in CHAT]
    assert {o.name for o in RUN} - set(chat) == {
        "fallback",
        "nnodes",
        "rdzv_endpoint",
        "rdzv_id",
        "json",
        "dry_run",
        "fold_below",
    }


def test_a_command_takes_a_set_through_keyword_arguments_only():
    extra = (Shared("verbose", bool, False),)

    def plain(ctx):
        return ctx

    with pytest.raises(TypeError, match=r"\*\*options"):
        takes(extra)(plain)

    def repeats(verbose: bool = False, **options):
        return options

    with pytest.raises(TypeError, match="repeat"):
        takes(extra)(repeats)
    with pytest.raises(ValueError, match="not in the set"):
        without(extra, "quiet")
