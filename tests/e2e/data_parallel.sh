#!/usr/bin/env bash
# Data parallelism on the CPU through Gloo: 2 and 4 ranks with micro-batch B/world reach the same
# loss curve and final weights as 1 rank with micro-batch B (the same global batch), up to fp32
# reduction-order rounding, for AdamW, Muon and RMNP. Ranks run under `llmtrain launch`.
source "$(dirname "$0")/common.sh"
"$LLMTRAIN" launch --help > /dev/null 2>&1 || fail "llmtrain has no launch command"
D="$WORK/data"; tiny_shards "$D" t 256

losses() { "$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l); print(j["step"], "%.5f" % j["loss"], "%.5f" % j.get("val_loss", 0))' "$1"; }

run_case() {
  local world="$1" matrix="${2:-}" opt_sets=()
  [ -n "$matrix" ] && opt_sets=(--set "optimizer.matrix=$matrix")
  local tag="w$world$(echo "$matrix" | tr -cd 'a-z_')"
  local C="$WORK/$tag.json" REF="$WORK/ref_$tag" R="$WORK/dp_$tag"
  tiny_config "$C" "$D" "$REF"
  "$LLMTRAIN" train "$C" "${opt_sets[@]}" --set run.threads=1 --set data.micro_batch=4 > "$REF.log" 2>&1 \
    || { cat "$REF.log"; fail "$tag: single-rank run"; }
  "$LLMTRAIN" launch --standalone --nproc-per-node "$world" -- train "$C" "${opt_sets[@]}" --set run.threads=1 \
    --set data.micro_batch=$((4 / world)) --set run.dir=\"$R\" > "$R.log" 2>&1 \
    || { cat "$R.log"; fail "$tag: $world-rank run"; }
  grep -q "rank 1/$world (gloo)" "$R.log" || { cat "$R.log"; fail "$tag: rank 1 did not run on gloo"; }
  diff <(losses "$REF/metrics.jsonl") <(losses "$R/metrics.jsonl") || fail "$tag: loss curves differ"
  "$PY" "$SRC/tests/e2e/st_compare.py" "$REF/ckpt/step_00000024/model.safetensors" \
    "$R/ckpt/step_00000024/model.safetensors" 1e-4 || fail "$tag: final weights differ"
  for r in $(seq 0 $((world - 1))); do
    [ -f "$R/ckpt/step_00000024/optimizer_rank$r.safetensors" ] || fail "$tag: no optimizer state of rank $r"
  done
  echo "ok: $tag matches the single-rank run"
}

run_case 2
run_case 2 '{"type": "muon", "lr": 0.02}'
run_case 2 '{"type": "rmnp", "lr": 0.01}'
run_case 4 '{"type": "rmnp", "lr": 0.01}'
echo "data_parallel: 2 and 4 ranks match 1 rank"
