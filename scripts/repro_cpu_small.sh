#!/usr/bin/env bash
# The scaled-down CPU reproduction of the RMNP paper's comparison (docs/reproducing.md, "CPU
# reproduction"): trains configs/repro/cpu_small_gpt2.json and cpu_small_llama.json (a tiny GPT-2 and
# a tiny LLaMA on the bundled demo corpus, AdamW vs Muon vs RMNP, two learning rates each: 12 runs),
# the two sweeps side by side with one thread per run, then writes the report tables and plots to
# docs/repro/. Re-running skips finished runs and resumes interrupted ones.
#
#   scripts/repro_cpu_small.sh                 # binary: build/llmtrain (or $LLMTRAIN)
#   LLMTRAIN=build-repro/llmtrain scripts/repro_cpu_small.sh
#   OUT=/tmp/repro scripts/repro_cpu_small.sh  # write the report elsewhere
#   SEQUENTIAL=1 scripts/repro_cpu_small.sh    # one sweep after the other (one core busy)
#
# The CPU time of each sweep (user + system over all its processes) is measured with /usr/bin/time
# and printed; on a busy machine it is the honest measure of the cost, the wall time is not.
set -euo pipefail
cd "$(dirname "$0")/.."
LLMTRAIN=${LLMTRAIN:-build/llmtrain}
OUT=${OUT:-docs/repro}
RUNS=runs/repro_cpu_small
if [ ! -x "$LLMTRAIN" ]; then
  echo "repro: $LLMTRAIN not found; build first (cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && ninja -C build llmtrain) or set LLMTRAIN" >&2
  exit 2
fi
mkdir -p "$OUT" "$RUNS"

sweep() {  # MODEL: trains configs/repro/cpu_small_MODEL.json, times it into $RUNS/time_MODEL.txt
  /usr/bin/time -f '%e %U %S' -o "$RUNS/time_$1.txt" \
    "$LLMTRAIN" sweep "configs/repro/cpu_small_$1.json" --continue-on-failure > "$RUNS/sweep_$1.log" 2>&1
}
echo "repro: training configs/repro/cpu_small_{gpt2,llama}.json into $RUNS (logs: $RUNS/sweep_*.log)"
status=0
if [ -n "${SEQUENTIAL:-}" ]; then
  sweep gpt2 || status=$?
  sweep llama || status=$?
else
  sweep gpt2 & g=$!
  sweep llama & l=$!
  wait $g || status=$?
  wait $l || status=$?
fi
total=0
for m in gpt2 llama; do
  read -r wall user sys < <(tail -n 1 "$RUNS/time_$m.txt")  # after a failure, time adds a line first
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  total=$((total + cpu))
  echo "repro: $m sweep: ${wall} s wall, ${cpu} s CPU (user ${user} + system ${sys})"
done
echo "repro: ${total} CPU seconds in all (this invocation; skipped runs cost nothing)"
[ "$status" -eq 0 ] || echo "repro: a sweep did not finish (exit $status); see $RUNS/sweep_*.log; the report marks incomplete runs" >&2

# Tables: the paper's layout (rows optimizer, columns model; best of the lr grid in each cell), the
# best validation perplexity seen during training, and every run by learning rate.
"$LLMTRAIN" report "$RUNS/gpt2" "$RUNS/llama" --by optimizer,model --md "$OUT/cpu_small.md" --csv "$OUT/cpu_small.csv" \
  --runs-csv "$OUT/cpu_small_runs.csv" --quiet
"$LLMTRAIN" report "$RUNS/gpt2" "$RUNS/llama" --by optimizer,model --metric best --quiet --md "$OUT/cpu_small_best.md"
"$LLMTRAIN" report "$RUNS/gpt2" "$RUNS/llama" --by model+optimizer,lr --quiet --md "$OUT/cpu_small_lr.md" --csv "$OUT/cpu_small_lr.csv"

# Plots, one per model (loss curves; diagonal-dominance ratios of the Muon and RMNP runs).
"$LLMTRAIN" report "$RUNS/gpt2" --quiet --plot "$OUT/cpu_small_gpt2.png" \
  --title "GPT-2 4x128, demo corpus: AdamW vs Muon vs RMNP"
"$LLMTRAIN" report "$RUNS/llama" --quiet --plot "$OUT/cpu_small_llama.png" \
  --title "LLaMA 4x128, demo corpus: AdamW vs Muon vs RMNP"
echo "repro: report in $OUT/cpu_small.md (and _best.md, _lr.md, .csv, *.png)"
