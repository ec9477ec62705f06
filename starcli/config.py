"""Settings: built-in defaults, then the config file, then environment variables, then flags.

Also declares the command-line options of the settings, so that the help texts sit together.

The defaults are the engine's own (``engine.settings``, no torch), decided in one place; ``None``
here means "the engine decides from the input" (block size, answer length) or "the machine
decides" (ranks, device). Flags and environment variables arrive together from Typer (each option
names its ``STARCLI_*`` variable); the engine options, which have no flags, are read from their
``STARCLI_*`` variables here, once (``resolve``), and reach the ranks in the request, never
through the environment. A value left as ``None`` falls through to the file, then the default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.context_store import parse_size
from engine.errors import EngineError
from engine.settings import (
    DEFAULT_DELTA_STRIDE,
    DEFAULT_REPETITION_PENALTY,
    MIN_BLOCK_SIZE,
    REPETITION_WINDOW,
    Correction,
    EngineOptions,
    GenerationSettings,
    Kernels,
    KVDtype,
    Positions,
    RunSettings,
)
from engine.settings import (
    Attention as AttentionMode,
)
from engine.support import CHECKED_MODEL_TYPES

DEVICES = ("auto", "cpu", "cuda")
ATTENTION_MODES: tuple[str, ...] = tuple(a.value for a in AttentionMode)
POSITION_MODES: tuple[str, ...] = ("auto", *(p.value for p in Positions))
FALLBACKS: tuple[str, ...] = ("map-reduce", "refuse")
CORRECTIONS: tuple[str, ...] = tuple(c.value for c in Correction)
KV_DTYPES: tuple[str, ...] = tuple(k.value for k in KVDtype)
_ENGINE_DEFAULTS = EngineOptions()
# The answer's default length per command (an explicit --max-tokens is honoured or refused; a
# default is lowered to the room the model's window leaves): a question wants a short answer, and
# a looping answer stops at the limit, so a one-line question must not wait for 512 tokens.
ANSWER_TOKENS = {"ask": 256, "summarize": 512}


class ConfigError(EngineError):
    """A config file or setting that cannot be used; the CLI exits 2 with this message."""


@dataclass(frozen=True)
class Settings:
    """What a run needs to know beyond its sources and question."""

    model: str | None = None  # None: the bundled default model
    attention: str = AttentionMode.STAR.value
    positions: str = "auto"  # auto: global where the input fits the model's window, else local
    fallback: str = "map-reduce"  # past 2x the window with positions auto: map-reduce or refuse
    block_size: int | None = None  # None: engine.plan.default_block_size (n/4W, 4K..16K)
    anchor_size: int | None = None  # None: as long as a block (the paper's choice)
    correction: str = Correction.NONE.value  # delta: correct phase 1 from exact rows (issue 15)
    delta_stride: int = DEFAULT_DELTA_STRIDE
    kv_dtype: str = KVDtype.AUTO.value  # auto: fp8 on a GPU (star, ring), else the model's dtype (issue 16)
    nproc: int | None = None  # None: every visible GPU, else 1 (decided once the device is known)
    nnodes: int = 1  # machines in the job; past 1, torchrun's c10d rendezvous at rdzv_endpoint
    rdzv_endpoint: str | None = None  # HOST:PORT every node reaches (one node's address)
    rdzv_id: str = "starcli"  # names the job at the endpoint: the same on every node
    device: str = "auto"
    max_tokens: int | None = None  # None: ANSWER_TOKENS for the command, fitted to the window
    temperature: float = 0.0
    seed: int | None = None
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY  # 1: off
    no_repeat_ngram: int = 0  # 0: off
    loop_stop: bool = True  # end an answer that has begun to repeat itself
    system: str | None = None
    context_cache: bool = True  # save phase 1's result and reuse it for the same sources (issue 14)
    context_cache_size: str = "4GiB"  # the saved contexts' total size; least recently used go first
    # Engine options (engine.settings.EngineOptions): environment or config file, no flags.
    share_anchor: bool = _ENGINE_DEFAULTS.share_anchor
    cuda_graphs: bool = _ENGINE_DEFAULTS.cuda_graphs
    compile: bool = _ENGINE_DEFAULTS.compile
    fused: bool = _ENGINE_DEFAULTS.fused
    kernels: str = _ENGINE_DEFAULTS.kernels.value
    timeout: float = _ENGINE_DEFAULTS.collective_timeout_s
    memory_check: bool = _ENGINE_DEFAULTS.memory_check

    def run_settings(self, command: str = "ask") -> RunSettings:
        """What the engine is asked for by ``command`` (``ask`` or ``summarize``, whose default
        answer lengths differ); ``engine.runplan.make_run_plan`` decides the rest."""
        generation = GenerationSettings(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram=self.no_repeat_ngram,
            stop_on_repetition=self.loop_stop,
            default_max_tokens=ANSWER_TOKENS[command],
        )
        return RunSettings(
            attention=AttentionMode(self.attention),
            positions=None if self.positions == "auto" else Positions(self.positions),
            block_size=self.block_size,
            anchor_size=self.anchor_size,
            generation=generation,
            options=self.engine_options(),
            correction=Correction(self.correction),
            delta_stride=self.delta_stride,
            kv_dtype=KVDtype(self.kv_dtype),
        )

    @property
    def context_cache_bytes(self) -> int:
        """The saved contexts' size limit in bytes; 0 when saving is off."""
        return parse_size(str(self.context_cache_size)) if self.context_cache else 0

    def engine_options(self) -> EngineOptions:
        return EngineOptions(
            share_anchor=self.share_anchor,
            cuda_graphs=self.cuda_graphs,
            compile=self.compile,
            fused=self.fused,
            kernels=Kernels(self.kernels),
            collective_timeout_s=self.timeout,
            memory_check=self.memory_check,
        )


SETTING_NAMES = tuple(f.name for f in fields(Settings))
ENV_VARS = {name: f"STARCLI_{name.upper()}" for name in SETTING_NAMES}
# Settings with no flag, read from the environment by ``resolve`` (the rest arrive through Typer).
ENGINE_OPTION_NAMES = (
    "share_anchor",
    "cuda_graphs",
    "compile",
    "fused",
    "kernels",
    "timeout",
    "memory_check",
)
NO_FLAG_NAMES = (*ENGINE_OPTION_NAMES, "context_cache_size")
OPTION_NAMES = tuple(name for name in SETTING_NAMES if name not in NO_FLAG_NAMES)
_INTS = {
    "block_size",
    "anchor_size",
    "delta_stride",
    "nproc",
    "nnodes",
    "max_tokens",
    "seed",
    "no_repeat_ngram",
}
_FLOATS = {"temperature", "timeout", "repetition_penalty"}
_BOOLS = {"share_anchor", "cuda_graphs", "compile", "fused", "loop_stop", "context_cache", "memory_check"}
_MINIMUM = {
    "block_size": MIN_BLOCK_SIZE,
    "anchor_size": 0,
    "delta_stride": 1,
    "nproc": 1,
    "nnodes": 1,
    "max_tokens": 1,
    "temperature": 0,
    "repetition_penalty": 1,
    "no_repeat_ngram": 0,
}
_POSITIVE = {"timeout"}
_CHOICES = {
    "attention": ATTENTION_MODES,
    "positions": POSITION_MODES,
    "fallback": FALLBACKS,
    "correction": CORRECTIONS,
    "kv_dtype": KV_DTYPES,
    "device": DEVICES,
    "kernels": tuple(k.value for k in Kernels),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def config_path() -> Path:
    """``$STARCLI_CONFIG`` if set, else ``$XDG_CONFIG_HOME/starcli/config.toml``."""
    if os.environ.get("STARCLI_CONFIG"):
        return Path(os.environ["STARCLI_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "starcli" / "config.toml"


def read_config(path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The file's settings (keys may use ``-`` or ``_``) and warnings for keys it does not know.

    A missing file is no error; a malformed one is, because silently ignoring a setting the
    user wrote is worse than stopping."""
    path = path or config_path()
    if not path.is_file():
        return {}, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    values: dict[str, Any] = {}
    warnings = []
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in SETTING_NAMES:
            warnings.append(f"{path}: unknown setting {key!r} ignored (known: {', '.join(SETTING_NAMES)})")
            continue
        values[name] = _checked(name, value, f"{path}: {key}")
    return values, warnings


def resolve(
    given: dict[str, Any], file_values: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge: ``given`` (flags and env, ``None`` meaning "not given") and the engine options'
    variables beat the file, which beats the defaults."""
    merged = dict(file_values or {})
    merged.update({k: v for k, v in given.items() if v is not None})
    merged.update(engine_options_from_environment(os.environ if environ is None else environ))
    for name, value in merged.items():
        _checked(name, value, f"--{name.replace('_', '-')}")
    settings = replace(Settings(), **merged)
    _check_nodes(settings)
    return settings


def _check_nodes(settings: Settings) -> None:
    """Several nodes need an endpoint every node can reach, and an attention mode that spans ranks."""
    if settings.nnodes == 1:
        return
    if not settings.rdzv_endpoint:
        raise ConfigError(
            f"--nnodes {settings.nnodes} needs --rdzv-endpoint HOST:PORT, an address of one of the "
            "nodes that every node reaches (the same on every node)"
        )
    if settings.attention == AttentionMode.GLOBAL.value:
        raise ConfigError("--attention global runs on one rank; drop --nnodes or use star or ring")


def engine_options_from_environment(environ: dict[str, str]) -> dict[str, Any]:
    """The settings with no flag (the engine options, the context cache's size) set by their
    ``STARCLI_*`` variables, typed (the only place they are read)."""
    values: dict[str, Any] = {}
    for name in NO_FLAG_NAMES:
        text = environ.get(ENV_VARS[name])
        if text is None or text == "":
            continue
        if name in _BOOLS:
            if text.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"{ENV_VARS[name]} must be 1 or 0 (got {text!r})")
            values[name] = text.lower() in _TRUE
        elif name in _FLOATS:
            try:
                values[name] = float(text)
            except ValueError:
                raise ConfigError(f"{ENV_VARS[name]} must be a number (got {text!r})") from None
        else:
            values[name] = text
        _checked(name, values[name], ENV_VARS[name])
    return values


def _checked(name: str, value: Any, where: str) -> Any:
    """Type and range check one setting, naming where it came from in the error."""
    if name in _BOOLS and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if name in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} must be an integer (got {value!r})")
    if name in _FLOATS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where} must be a number (got {value!r})")
    if name == "context_cache_size" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a plain number of bytes in the config file
    if name not in _INTS | _FLOATS | _BOOLS and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string (got {value!r})")
    if name in _MINIMUM and value < _MINIMUM[name]:
        raise ConfigError(f"{where} must be at least {_MINIMUM[name]} (got {value})")
    if name in _POSITIVE and not value > 0:
        raise ConfigError(f"{where} must be a positive number of seconds (got {value})")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{where} must be one of {', '.join(_CHOICES[name])} (got {value!r})")
    if name == "rdzv_endpoint" and not _is_endpoint(value):
        raise ConfigError(f"{where} must be HOST:PORT, such as node1:29400 (got {value!r})")
    if name == "rdzv_id" and not value.strip():
        raise ConfigError(f"{where} must not be empty")
    if name == "context_cache_size":
        try:
            parse_size(value)
        except ValueError:
            raise ConfigError(f"{where} must be a size such as 4GiB, 500MB or 0 (got {value!r})") from None
    return float(value) if name in _FLOATS else value


def _is_endpoint(value: str) -> bool:
    """``HOST:PORT`` with a port number (``[::1]:29400`` for an IPv6 address)."""
    host, _, port = value.rpartition(":")
    return bool(host.strip("[]")) and port.isdigit() and 0 < int(port) < 65536


# --- the command-line options shared by ask and summarize --------------------------------------
# Declared here, beside the defaults their help texts quote. Flags and STARCLI_* variables arrive
# through Typer; a value left as None falls back to the config file, then to the defaults above.
_MODEL, _ANSWER, _OUTPUT, _INPUT = "Model and attention", "Answer", "Output", "Input"


def _setting(help_text: str, *names: str, panel: str = _MODEL, **kwargs: Any) -> Any:
    """A setting's option: no Typer default (None means "not given"), its STARCLI_* variable."""
    return typer.Option(*names, show_default=False, help=help_text, rich_help_panel=panel, **kwargs)


def _one_of(choices: tuple[str, ...]) -> Any:
    """A callback accepting only ``choices`` (this Typer has no Choice type for plain strings)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar=ENV_VARS["model"],
        metavar="NAME",
        show_default=False,
        rich_help_panel=_MODEL,
        help="A local model directory or hub id (default: the bundled SmolLM2-135M-Instruct). "
        f"Model types checked exact: {', '.join(sorted(CHECKED_MODEL_TYPES))}; others are refused.",
    ),
]
Attention = Annotated[
    str | None,
    _setting(
        "star; global (dense, one rank); or ring (exact ring attention across ranks) (default: star).",
        envvar=ENV_VARS["attention"],
        metavar="[" + "|".join(ATTENTION_MODES) + "]",
        callback=_one_of(ATTENTION_MODES),
    ),
]
PositionsOption = Annotated[
    str | None,
    _setting(
        "global: each context token at its own index (the paper; must fit the model's window); "
        "local: every block at the positions just after its anchor, so inputs beyond the window "
        "fit (star only; accuracy falls with length); auto: global where the input fits, local "
        "up to 2x the window, else an error (default: auto).",
        envvar=ENV_VARS["positions"],
        metavar="[" + "|".join(POSITION_MODES) + "]",
        callback=_one_of(POSITION_MODES),
    ),
]
FallbackOption = Annotated[
    str | None,
    _setting(
        "What runs when the input is past 2x the model's window and --positions is auto: "
        "map-reduce (each window-sized part answers on its own, then one pass answers from what "
        "the parts found; docs/long-inputs.md) or refuse (default: map-reduce).",
        envvar=ENV_VARS["fallback"],
        metavar="[" + "|".join(FALLBACKS) + "]",
        callback=_one_of(FALLBACKS),
    ),
]
BlockSize = Annotated[
    int | None,
    _setting(
        f"Context block size in tokens, at least {MIN_BLOCK_SIZE} (default: a quarter of each "
        "rank's share, 4096 to 16384).",
        envvar=ENV_VARS["block_size"],
        metavar="TOKENS",
        min=MIN_BLOCK_SIZE,
    ),
]
AnchorSize = Annotated[
    int | None,
    _setting(
        "Anchor size in tokens (default: the block size).",
        envvar=ENV_VARS["anchor_size"],
        metavar="TOKENS",
        min=0,
    ),
]
CorrectionOption = Annotated[
    str | None,
    _setting(
        "delta: correct star's phase 1 (Delta Attention): every --delta-stride-th row of a block "
        "is computed exactly over all earlier blocks and its difference to star's output is added "
        "to the rows after it; global positions only (default: none).",
        envvar=ENV_VARS["correction"],
        metavar="[" + "|".join(CORRECTIONS) + "]",
        callback=_one_of(CORRECTIONS),
    ),
]
DeltaStride = Annotated[
    int | None,
    _setting(
        f"With --correction delta: rows per exactly computed row; 1 is dense attention "
        f"(default: {DEFAULT_DELTA_STRIDE}).",
        envvar=ENV_VARS["delta_stride"],
        metavar="N",
        min=1,
    ),
]
KVDtypeOption = Annotated[
    str | None,
    _setting(
        "How the context's KV cache is stored: model (the model's dtype, exact), fp8 (e4m3 with a "
        "scale per token: half of bf16's memory and decode reads, not exact; star and ring "
        "attention) or auto (fp8 on a GPU for star and ring attention, else model) (default: auto).",
        envvar=ENV_VARS["kv_dtype"],
        metavar="[" + "|".join(KV_DTYPES) + "]",
        callback=_one_of(KV_DTYPES),
    ),
]
Nproc = Annotated[
    int | None,
    _setting(
        "Ranks (processes) to run (default: every visible GPU, else 1).",
        envvar=ENV_VARS["nproc"],
        metavar="N",
        min=1,
    ),
]
_NODES = "Several machines"
Nnodes = Annotated[
    int | None,
    _setting(
        "Machines in the job; run the same command on each (default: 1). Past 1, torchrun's c10d "
        "rendezvous at --rdzv-endpoint joins them; --nproc is the ranks per machine. The answer "
        "prints on the machine holding the last rank; the others print nothing but errors.",
        envvar=ENV_VARS["nnodes"],
        panel=_NODES,
        metavar="N",
        min=1,
    ),
]
RdzvEndpoint = Annotated[
    str | None,
    _setting(
        "HOST:PORT of one of the machines, which every machine reaches (the rendezvous; needed "
        "with --nnodes).",
        envvar=ENV_VARS["rdzv_endpoint"],
        panel=_NODES,
        metavar="HOST:PORT",
    ),
]
RdzvId = Annotated[
    str | None,
    _setting(
        "A name for the job at the endpoint, the same on every machine, e.g. $SLURM_JOB_ID "
        "(default: starcli).",
        envvar=ENV_VARS["rdzv_id"],
        panel=_NODES,
        metavar="ID",
    ),
]
Device = Annotated[
    str | None,
    _setting(
        "auto, cpu or cuda (default: auto).",
        envvar=ENV_VARS["device"],
        metavar="[" + "|".join(DEVICES) + "]",
        callback=_one_of(DEVICES),
    ),
]
MaxTokens = Annotated[
    int | None,
    _setting(
        f"Longest answer in tokens (default: {ANSWER_TOKENS['ask']} for ask, "
        f"{ANSWER_TOKENS['summarize']} for summarize; less when the model's window is short).",
        envvar=ENV_VARS["max_tokens"],
        panel=_ANSWER,
        metavar="TOKENS",
        min=1,
    ),
]
RepetitionPenalty = Annotated[
    float | None,
    _setting(
        f"Divide the scores of tokens the answer used in its last {REPETITION_WINDOW} tokens by "
        f"this; 1 turns it off (default: {DEFAULT_REPETITION_PENALTY}).",
        envvar=ENV_VARS["repetition_penalty"],
        panel=_ANSWER,
        metavar="FACTOR",
        min=1.0,
    ),
]
NoRepeatNgram = Annotated[
    int | None,
    _setting(
        "Never repeat an N-token sequence within the answer; 0 turns it off (default: 0).",
        envvar=ENV_VARS["no_repeat_ngram"],
        panel=_ANSWER,
        metavar="N",
        min=0,
    ),
]
LoopStop = Annotated[
    bool | None,
    _setting(
        "Stop an answer that has begun to repeat itself (default: on).",
        "--loop-stop/--no-loop-stop",
        envvar=ENV_VARS["loop_stop"],
        panel=_ANSWER,
    ),
]
Temperature = Annotated[
    float | None,
    _setting(
        "Sampling temperature; 0 is greedy (default: 0).",
        envvar=ENV_VARS["temperature"],
        panel=_ANSWER,
        metavar="T",
        min=0.0,
    ),
]
Seed = Annotated[
    int | None, _setting("Random seed for sampling.", envvar=ENV_VARS["seed"], panel=_ANSWER, metavar="N")
]
System = Annotated[
    str | None,
    _setting(
        "System prompt (default: the model's own).", envvar=ENV_VARS["system"], panel=_ANSWER, metavar="TEXT"
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON object: answer, sources, skipped files, timings.",
        rich_help_panel=_OUTPUT,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress or notes on stderr, only errors.", rich_help_panel=_OUTPUT
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="List every skipped file; tracebacks and rank logs on errors.",
        rich_help_panel=_OUTPUT,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show sources, token estimates and the block plan; load no model.",
        rich_help_panel=_OUTPUT,
    ),
]
ContextCache = Annotated[
    bool | None,
    _setting(
        "Save the encoded context and reuse it when the same sources, model and settings come "
        "again; the saved contexts are capped by the context-cache-size setting (default 4GiB), "
        "least recently used go first (default: on).",
        "--context-cache/--no-cache",
        envvar=ENV_VARS["context_cache"],
        panel=_OUTPUT,
    ),
]
Include = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        show_default=False,
        rich_help_panel=_INPUT,
        help="Read only files matching GLOB (gitignore syntax; repeatable).",
    ),
]
Exclude = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="GLOB",
        show_default=False,
        rich_help_panel=_INPUT,
        help="Skip files matching GLOB (gitignore syntax; repeatable).",
    ),
]
NoGitignore = Annotated[
    bool,
    typer.Option("--no-gitignore", help="Also read files that .gitignore excludes.", rich_help_panel=_INPUT),
]
SkipUnreadable = Annotated[
    bool,
    typer.Option(
        "--skip-unreadable",
        help="Leave out a named file that cannot be read (no permission, I/O error) with a warning, "
        "instead of stopping with an error.",
        rich_help_panel=_INPUT,
    ),
]
RedactSecrets = Annotated[
    bool,
    typer.Option(
        "--redact-secrets",
        help="Keep files whose contents hold secrets (tokens, keys, passwords), with each secret "
        "replaced by a placeholder, instead of skipping them (files named like .env stay out).",
        rich_help_panel=_INPUT,
    ),
]
CONTEXT_FORMATS = ("text", "xml", "markdown")
ContextFormat = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="[" + "|".join(CONTEXT_FORMATS) + "]",
        callback=_one_of(CONTEXT_FORMATS),
        rich_help_panel=_OUTPUT,
        help="text: byte for byte what the model reads (a ===== path ===== header per document); "
        "xml: <documents><document index=..><source>..</source><document_content>..; markdown: "
        "the path, then the text in a fence (default: text).",
    ),
]
FoldBelow = Annotated[
    int | None,
    typer.Option(
        "--fold-below",
        metavar="TOKENS",
        min=0,
        show_default=False,
        rich_help_panel=_OUTPUT,
        help="In --dry-run's tokens by folder, fold files and folders under TOKENS into one line "
        "per folder (default: 0, list everything).",
    ),
]
