#!/usr/bin/env bash
# Crash safety: a run killed with SIGKILL at a random step and resumed with --resume auto ends
# with bit-identical weights and loss curve to an uninterrupted run, for GPT-2 and LLaMA; and
# kills landing at random moments (many during checkpoint writes, one checkpoint per step) never
# leave a `latest` that fails to load.
source "$(dirname "$0")/common.sh"
D="$WORK/data"; tiny_shards "$D" t 256

losses() { "$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l); print(j["step"], repr(j["loss"]), repr(j.get("val_loss")))' "$1"; }

run_case() {
  local arch="$1" matrix="${2:-}" opt_sets=()
  [ -n "$matrix" ] && opt_sets=(--set "optimizer.matrix=$matrix")
  local tag="$arch$(echo "$matrix" | tr -cd 'a-z_' | cut -c1-40)${3:+_$3}"
  local C="$WORK/$tag.json" REF="$WORK/ref_$tag" R="$WORK/kill_$tag"
  tiny_config "$C" "$D" "$REF" "$arch"
  "$LLMTRAIN" train "$C" "${opt_sets[@]}" > "$REF.log" 2>&1 || { cat "$REF.log"; fail "$tag: reference run"; }

  # SIGKILL at a random step (LLMTRAIN_FAULT makes the process kill itself there, so the step is
  # exact however fast the machine is), or, with a third argument, in the middle of step 8's
  # checkpoint (files written, not yet committed: `latest` must still be step 4).
  local kill_at=$(( (RANDOM % 18) + 5 )) point=after_step  # 5..22: after the first checkpoint (step 4)
  if [ -n "${3:-}" ]; then kill_at=8; point=in_checkpoint; fi
  local rc=0
  LLMTRAIN_FAULT="$point:$kill_at" "$LLMTRAIN" train "$C" "${opt_sets[@]}" --set run.dir=\"$R\" > "$R.log" 2>&1 || rc=$?
  [ "$rc" -eq 137 ] || { cat "$R.log"; fail "$tag: expected the run to die of SIGKILL at $point $kill_at, exit code $rc"; }
  if [ "$point" = in_checkpoint ]; then
    [ "$(cat "$R/ckpt/latest")" = step_00000004 ] || fail "$tag: latest moved to an uncommitted checkpoint"
    "$LLMTRAIN" eval "$R" --batches 1 > "$R.eval.log" 2>&1 || { cat "$R.eval.log"; fail "$tag: latest does not load"; }
  fi
  "$LLMTRAIN" train "$C" "${opt_sets[@]}" --set run.dir=\"$R\" --resume auto > "$R.resume.log" 2>&1 \
    || { cat "$R.resume.log"; fail "$tag: resume"; }
  grep -q "resumed from" "$R.resume.log" || fail "$tag: the second run did not resume"
  # Tensors bit for bit (tolerance 0); the files' metadata differs (it holds each run's run.dir).
  "$PY" "$SRC/tests/e2e/st_compare.py" "$REF/ckpt/step_00000024/model.safetensors" "$R/ckpt/step_00000024/model.safetensors" 0 \
    || fail "$tag: final weights differ after kill at step $kill_at and resume"
  "$PY" "$SRC/tests/e2e/st_compare.py" "$REF/ckpt/step_00000024/optimizer_rank0.safetensors" "$R/ckpt/step_00000024/optimizer_rank0.safetensors" 0 \
    || fail "$tag: final optimizer state differs"
  diff <(losses "$REF/metrics.jsonl") <(losses "$R/metrics.jsonl") \
    || fail "$tag: loss curve differs after kill at step $kill_at and resume"
  echo "ok: $tag killed ($point $kill_at), resumed, bit-identical"
}

run_case gpt2
run_case llama
run_case gpt2 '' mid-checkpoint
# Every matrix optimizer's state (momentum, sketch RNG, Newton-Muon statistics) must resume exactly.
run_case gpt2 '{"type": "muon", "lr": 0.02}'
run_case gpt2 '{"type": "rmnp", "lr": 0.01}'
run_case llama '{"type": "rmnp", "lr": 0.01}'
run_case gpt2 '{"type": "lowrank_muon", "lr": 0.02, "rank": 4, "full_threshold": 8}'
run_case gpt2 '{"type": "polargrad", "lr": 0.01}'
run_case llama '{"type": "newton_muon", "lr": 0.02, "refresh_every": 3}'

# Random kills with a checkpoint every step: after each, the latest checkpoint must load. Each
# attempt first waits (up to 120 s) until the run has committed a new checkpoint, so the kills land
# at random points of later steps however loaded the machine is (a fixed delay could kill every
# attempt before its first step on a busy CI machine).
C="$WORK/gpt2.json"  # the plain AdamW config of the first case
R="$WORK/chaos"
for i in 1 2 3 4 5 6; do
  before="$(cat "$R/ckpt/latest" 2>/dev/null || true)"
  "$LLMTRAIN" train "$C" --set run.dir=\"$R\" --set run.checkpoint_every=1 --set run.steps=400 --resume auto \
    > "$WORK/chaos_$i.log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do
    now="$(cat "$R/ckpt/latest" 2>/dev/null || true)"
    [ -n "$now" ] && [ "$now" != "$before" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  if [ -f "$R/ckpt/latest" ]; then
    "$LLMTRAIN" eval "$R" --batches 1 > "$WORK/chaos_eval_$i.log" 2>&1 \
      || { cat "$WORK/chaos_eval_$i.log"; ls -la "$R/ckpt"; fail "latest checkpoint failed to load after kill $i"; }
  fi
done
ls "$R/ckpt" | grep -q step_ || fail "chaos run never wrote a checkpoint"
echo "kill_resume: all cases bit-identical; latest always loadable"
