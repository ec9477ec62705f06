"""How ``--help`` and usage errors look: typer's rich help, minus its two habits that read badly.

typer 0.2x prints each parameter's Python type in help (``<bool>`` after every flag,
``<list[str]>`` after SOURCE), and draws a usage error inside a box that narrow terminals and
logs cut. starcli's contract is one ``Error: ...`` line for bad input, so a usage error is
exactly that: click's message and where to find help, on one line (``usage_error_line``), exit 2;
and help shows an option's own metavar, nothing for a flag or an argument (whose name already
says what it takes). Both are set once, at import of the CLI, and
fall back to typer's own behaviour where a future typer lacks the hooks.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

_ENV_HINT = re.compile(r" \(env var: '([A-Za-z0-9_]+)'\)")


def install() -> None:
    """Patch typer's help and error display (idempotent)."""
    from typer import core, rich_utils

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and argument is not None and hasattr(option, "display_type_rich"):
        shown = getattr(option, "_starcli_shown", option.display_type_rich)

        def option_type(self, ctx) -> str | None:
            if self.is_flag:
                return None
            return self.metavar if self.metavar is not None else shown(self, ctx)

        option._starcli_shown = shown
        option.display_type_rich = option_type
        argument.display_type_rich = lambda self, ctx: None

    boxed = getattr(rich_utils, "_starcli_boxed", getattr(rich_utils, "rich_format_error", None))
    if boxed is not None:

        def plain(error: Any) -> None:
            if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed already
                return boxed(error)
            print(usage_error_line(error), file=sys.stderr)
            return None

        rich_utils._starcli_boxed = boxed
        rich_utils.rich_format_error = plain


def usage_error_line(error: Any) -> str:
    """``Error: <click's message>; see 'starcli ask --help'``. The environment variable an option
    reads is named only when it is set (then it may be where the bad value came from)."""
    message = " ".join(error.format_message().split()).rstrip(".")
    message = _ENV_HINT.sub(lambda m: f" (from ${m.group(1)})" if os.environ.get(m.group(1)) else "", message)
    ctx = getattr(error, "ctx", None)
    where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    return f"Error: {message}{where}"
