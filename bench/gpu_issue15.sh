#!/usr/bin/env bash
# Issue 15 on one H200 in one command (run from the repository root): bash bench/gpu_issue15.sh
#
#   1. bench.delta_probe: one attention layer of the corrected phase 1 vs plain Star, block by
#      block at 128K / 16K blocks (8B heads), per stride: where the correction's time goes;
#   2. bench/speed.py: phase 1 at 128K, 16K blocks, random Llama-8B-shape weights, plain Star and
#      the correction with strides 16, 64, 256, twice each (phase1_vs_plain: best over best);
#   3. bench.accuracy: the default model on CUDA (bf16, the CLI's GPU default), dense, Star n/8
#      and n/4, and the six corrected configurations, at 2K/4K/8K over the three main suites,
#      seed 2 (haystacks no earlier run used), in $JOBS processes until the time budget;
#   4. the reports: markdown tables and plots next to the JSON.
#
# Everything goes to $OUT: JSON, logs, GPU utilisation while the accuracy run goes. The whole
# run stays within $BUDGET_S seconds (570: 9.5 minutes); the accuracy run gets what is left.
# Smoke run on a CPU (tiny sizes, a few minutes): SMOKE=1 OUT=/tmp/x bash bench/gpu_issue15.sh
set -u
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export STARCLI_CACHE="${STARCLI_CACHE:-/tmp/sc}"
export TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
BUDGET_S=${BUDGET_S:-570}
JOBS=${JOBS:-12}
started=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - started))); }
stamp() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$OUT/steps.log"; }

if [ "${SMOKE:-0}" = 1 ]; then  # the same steps at sizes a CPU runs in minutes
  PROBE=(--device cpu --heads 4 --kv-heads 2 --head-dim 16 --context 2048 --block 512 --layers 2 --reps 2)
  SPEED=(--device cpu --shape tiny --skip-rates --lengths 1024 --blocks 256 --warm-block 64)
  ACCURACY=(--device cpu --lengths 1024 --samples 2 --suites single)
  CONFIGS=(dense 'star n/4' 'star n/4 delta 16')
  JOBS=2
else
  PROBE=(--context 131072 --block 16384)
  SPEED=(--lengths 131072 --blocks 16384)
  ACCURACY=(--device cuda --lengths 2048 4096 8000 --samples 200 --suites single noise essay)
  CONFIGS=(dense 'star n/8' 'star n/4'
    'star n/8 delta 16' 'star n/8 delta 64' 'star n/8 delta 256'
    'star n/4 delta 16' 'star n/4 delta 64' 'star n/4 delta 256')
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
fi
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee "$OUT/versions.txt"

stamp "1. delta probe"
timeout 90 $PY -m bench.delta_probe "${PROBE[@]}" --strides 16 64 256 --out "$OUT/delta-probe.json" \
  > "$OUT/delta-probe.log" 2>&1
stamp "   exit $?"

stamp "2. speed at 128K"
timeout 210 $PY bench/speed.py --modes star "${SPEED[@]}" --corrections none delta:16 delta:64 delta:256 \
  --repeats 2 --decode-tokens 16 --out "$OUT/speed-delta.json" > "$OUT/speed.log" 2>&1
stamp "   exit $?"

stamp "3. accuracy, $JOBS processes"
if command -v nvidia-smi > /dev/null && [ "${SMOKE:-0}" != 1 ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu-util.csv" 2>&1 &
  util_pid=$!
fi
minutes=$(awk -v s="$(left)" 'BEGIN { m = (s - 100) / 60; print (m > 0.5 ? m : 0.5) }')
timeout $(($(left) - 20)) $PY -m bench.accuracy "${ACCURACY[@]}" --configs "${CONFIGS[@]}" --seed 2 \
  --jobs "$JOBS" --minutes "$minutes" --out "$OUT/accuracy-issue15.json" > "$OUT/accuracy.log" 2>&1
stamp "   exit $? (budget $minutes min)"
[ -n "${util_pid:-}" ] && kill "$util_pid"

stamp "4. reports"
timeout 60 $PY -m bench.accuracy_report "$OUT/accuracy-issue15.json" --md "$OUT/accuracy-issue15.md" \
  --png "$OUT/accuracy-issue15.png" --delta-md "$OUT/accuracy-delta.md" --delta-png "$OUT/accuracy-delta.png" \
  --speed "$OUT/speed-delta.json" --probe "$OUT/delta-probe.json" >> "$OUT/steps.log" 2>&1
timeout 30 $PY bench/speed_report.py "$OUT/speed-delta.json" --md "$OUT/speed-delta.md" >> "$OUT/steps.log" 2>&1
stamp "done"
