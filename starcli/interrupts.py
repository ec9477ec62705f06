"""Ctrl-C and SIGTERM held back while the CLI is somewhere they must not land, then acted on.

Python raises ``KeyboardInterrupt`` (and our SIGTERM handler ``SystemExit``) between any two
bytecodes of the main thread. Two places make that unsafe:

- a job's teardown: a second Ctrl-C must not leave ranks or the temp dir behind;
- importing torch/transformers and loading weights (seconds): the interrupt can land inside
  library code that runs ``exec`` (every dataclass and namedtuple a module defines), where CPython
  records it as *unhandled* even though ``starcli.cli`` catches it and exits 130 — the process then
  kills itself with SIGINT at exit (status -2); or inside a finalizer (``__del__``, a generator
  being collected), which swallows it and the run goes on.

``held_signals`` records the signals meanwhile and replays them once the block is done, so the
interrupt is raised in our own code, a second or two late at most on CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on each once, as its handler would."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread, where signals are delivered anyway
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum)) for sig in HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for sig in dict.fromkeys(held):
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)  # default_int_handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), sig)
