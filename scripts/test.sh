#!/usr/bin/env bash
# Set up from nothing and run the checks CI runs: ruff, then the CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest -q -ra "$@"
