"""Run the real ``starcli`` command in this process with a clock on each of its steps (issue 14):
where the time before the first answer byte goes, measured on the code path a user runs rather
than on a copy of it.

    BENCH_T0=$(date +%s.%N) python bench/cli_trace.py TRACE.json ask DOC QUESTION --device cuda ...

Timers wrap the CLI's and the engine's own functions (``STEPS``) as their modules are imported,
so nothing is imported earlier than the command would import it. Every outermost ``import``
statement is timed as well, so each step splits into the imports it triggered and its own work
(transformers' lazy attribute imports at call time count as work). ``torch.cuda``'s lazy
initialisation, which runs inside whatever first touches the GPU, is timed on its own. The events
the renderer handles (weights in, phase 1 done, the first token, the answer's stats) are stamped as
they arrive. Times are seconds since ``BENCH_T0`` (the caller's wall clock just before it started
this process; without it, this script's own start). The trace is written when the command ends.
"""

from __future__ import annotations

import time

_WALL0 = time.time()

import builtins  # noqa: E402 - the clock starts before anything else
import functools  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ORIGIN = float(os.environ.get("BENCH_T0", _WALL0))

# (module, attribute, label): the steps of ``starcli ask`` in the order a one-rank run takes them.
STEPS = (
    ("starcli.cli", "_settings", "config"),
    ("starcli.cli", "_read_sources", "read sources"),
    ("starcli.cli", "_device_and_ranks", "device and ranks"),
    ("starcli.prompt", "ask_instructions", "question prompt"),
    ("starcli.ingest", "estimate_context_tokens", "token estimate"),
    ("starcli.ingest", "render_documents", "join documents"),
    ("starcli.prompt", "model_facts", "model config"),
    ("starcli.launch", "load_tokenizer", "tokenizer"),
    ("starcli.prompt", "build", "tokenize"),
    ("starcli.prompt", "query_ids", "tokenize"),
    ("engine.runplan", "make_run_plan", "run plan"),
    ("starcli.cli", "_saved_contexts", "weights fingerprint"),
    ("starcli.launch", "run_request", "engine (in this process)"),
    ("engine.models", "load_model", "weight load"),
    ("engine.api", "Engine.__init__", "engine init"),
    ("engine.api", "Engine.runner", "model runner"),
    ("engine.saved_context", "SavedContexts.__init__", "saved-context key"),
    ("engine.saved_context", "SavedContexts.load", "saved-context load"),
    ("engine.saved_context", "SavedContexts.save", "saved-context save"),
    ("engine.api", "Engine.encode_context", "phase 1"),
)


class Trace:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.events: list[dict] = []
        self.import_s = 0.0
        self._depth = 0
        self._pending = {name for name, _, _ in STEPS} | {"torch.cuda", "starcli.render"}
        self._real_import = builtins.__import__

    @staticmethod
    def now() -> float:
        return time.time() - ORIGIN

    # --- imports ----------------------------------------------------------------------------
    def timed_import(self, *args, **kwargs):
        if self._depth:
            return self._real_import(*args, **kwargs)
        self._depth = 1
        started = time.perf_counter()
        try:
            return self._real_import(*args, **kwargs)
        finally:
            self.import_s += time.perf_counter() - started
            self._depth = 0
            if self._pending:
                self.patch_ready()

    def patch_ready(self) -> None:
        for module_name in [m for m in self._pending if m in sys.modules]:
            module = sys.modules[module_name]
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                continue  # still running its body: patch once it has finished
            self._pending.discard(module_name)
            if module_name == "torch.cuda":
                self.patch(module, "_lazy_init", "CUDA init", only_slow=True)
            elif module_name == "starcli.render":
                self.stamp_events(module.Renderer)
            for name, attribute, label in STEPS:
                if name == module_name:
                    owner, _, leaf = attribute.rpartition(".")
                    self.patch(getattr(module, owner) if owner else module, leaf, label)

    # --- steps ------------------------------------------------------------------------------
    def patch(self, owner, name: str, label: str, only_slow: bool = False) -> None:
        real = getattr(owner, name)
        trace = self

        def record(started: float, imports_before: float) -> None:
            seconds = trace.now() - started
            if only_slow and seconds < 1e-3:
                return
            trace.calls.append(
                {
                    "step": label,
                    "start_s": started,
                    "seconds": seconds,
                    "imports_s": trace.import_s - imports_before,
                    "imports_at_start_s": imports_before,
                }
            )

        if inspect.isgeneratorfunction(real):

            @functools.wraps(real)
            def wrapper(*args, **kwargs):
                started, imports = trace.now(), trace.import_s
                try:
                    return (yield from real(*args, **kwargs))
                finally:
                    record(started, imports)
        else:

            @functools.wraps(real)
            def wrapper(*args, **kwargs):
                started, imports = trace.now(), trace.import_s
                try:
                    return real(*args, **kwargs)
                finally:
                    record(started, imports)

        if hasattr(real, "cache_clear"):  # functools.lru_cache: tests and the CLI call cache_clear
            wrapper.cache_clear = real.cache_clear
        setattr(owner, name, wrapper)

    def stamp_events(self, renderer_class) -> None:
        real = renderer_class.handle
        trace = self

        @functools.wraps(real)
        def handle(renderer, event):
            entry = {"event": event.kind, "at_s": trace.now()}
            if event.kind in ("stats", "loaded", "context_encoded"):
                entry["data"] = event.to_dict()
            if event.kind != "token" or not any(e["event"] == "token" for e in trace.events):
                trace.events.append(entry)  # every event once, but only the first token
            return real(renderer, event)

        renderer_class.handle = handle

    def dump(self, path: str, exit_code: object) -> None:
        data = {
            "argv": sys.argv[2:],
            "exit_code": exit_code,
            "harness_started_s": _WALL0 - ORIGIN,
            "imports_s": self.import_s,
            "calls": self.calls,
            "events": self.events,
            "ended_s": self.now(),
        }
        Path(path).write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    out, command = sys.argv[1], sys.argv[2:]
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = os.getcwd()  # as ``python -m starcli`` has it: bench/'s modules are not the CLI's
    trace = Trace()
    builtins.__import__ = trace.timed_import
    sys.argv = ["starcli", *command]
    code: object = 0
    started, imports = trace.now(), trace.import_s
    try:
        trace.timed_import("starcli.cli")  # an outermost import, timed like the others
        seconds = trace.now() - started
        trace.calls.append({"step": "import starcli.cli", "start_s": started, "seconds": seconds})
        trace.calls[-1]["imports_s"] = trace.import_s - imports
        sys.modules["starcli.cli"].main()
    except SystemExit as done:
        code = done.code
    finally:
        builtins.__import__ = trace._real_import
        trace.dump(out, code)
    sys.exit(code)


if __name__ == "__main__":
    main()
