#!/usr/bin/env bash
# Set up (first run only) and run starcli with the given arguments.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/setup.sh" >&2
exec "$here/.venv/bin/starcli" "$@"
