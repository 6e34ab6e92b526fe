#!/usr/bin/env bash
# Every optimizer trains a small GPT-2 and LLaMA on the bundled demo corpus (real English text,
# GPT-2 vocabulary): after 30 steps the training loss must be clearly below the first step's
# (by at least 1.5 nats from ~10.8) and the validation loss must be finite and below 9.5.
# The models are shrunk (2 layers, C=32, T=32) so the whole grid takes about a minute on 2 cores.
source "$(dirname "$0")/common.sh"

check() {
  local tag="$1" arch="$2" matrix="$3" R="$WORK/run_$1"
  local sets=(--set "model={\"arch\": \"$arch\", \"n_layer\": 2, \"n_embd\": 32, \"n_head\": 4, \"vocab_size\": 50257, \"max_seq_len\": 32}"
              --set data.seq_len=32 --set data.micro_batch=8 --set data.batch_tokens=256
              --set "optimizer={\"adamw\": {\"type\": \"adamw\", \"lr\": 0.01}}"
              --set run.steps=30 --set run.eval_every=30 --set run.eval_batches=4 --set run.sample_every=0
              --set run.checkpoint_every=0 --set run.log_every=10 --set run.threads=2 --set run.dir=\"$R\")
  [ "$arch" = llama ] && sets+=(--set data.delimiter=50256)
  [ -n "$matrix" ] && sets+=(--set "optimizer.matrix=$matrix")
  (cd "$SRC" && "$LLMTRAIN" train configs/demo-gpt2-tiny.json "${sets[@]}") > "$WORK/$tag.log" 2>&1 \
    || { cat "$WORK/$tag.log"; fail "$tag: training failed"; }
  "$PY" - "$R/metrics.jsonl" "$tag" <<'PY' || fail "$tag: did not learn (see above)"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
losses = [r["loss"] for r in rows if "loss" in r]
val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
first, last = losses[0], losses[-1]
print(f"{sys.argv[2]}: loss {first:.3f} -> {last:.3f}, val {val[-1]:.3f}")
ok = first > 10 and last < first - 1.5 and val and math.isfinite(val[-1]) and val[-1] < 9.5
sys.exit(0 if ok else 1)
PY
}

check adamw_gpt2 gpt2 ""
check adamw_llama llama ""
check muon gpt2 '{"type": "muon", "lr": 0.02}'
check rmnp gpt2 '{"type": "rmnp", "lr": 0.02}'
check rmnp_llama llama '{"type": "rmnp", "lr": 0.02}'
check lowrank_muon gpt2 '{"type": "lowrank_muon", "lr": 0.02, "rank": 8, "full_threshold": 16}'
check polargrad gpt2 '{"type": "polargrad", "lr": 0.02}'
check newton_muon llama '{"type": "newton_muon", "lr": 0.02, "refresh_every": 5}'
echo "optimizers_demo: every optimizer learns on the demo corpus"
