#!/usr/bin/env bash
# What a user sees when a run goes wrong or its directory is abused: a non-finite step (stopped,
# or skipped and counted), non-finite weights refused by resume, eval and export; a second trainer
# on a locked run.dir; --overwrite leaving nothing of the old run to resume or prune against;
# failed writes of metrics.jsonl and of a checkpoint; symlinks in the run dir; a state.json that
# breaks its schema; damaged or incomplete newest checkpoints passed over by --resume auto; the
# rename-to-`latest` window; --dry-run's data and batch checks; `inspect` on directories. Each case
# checks the exit code, the one-line message naming file/key/step, and the files left behind.
source "$(dirname "$0")/common.sh"
D="$WORK/data"; tiny_shards "$D" t 256
C="$WORK/c.json"; tiny_config "$C" "$D" "$WORK/ref"

# expect_runtime_error "description" expected-substring cmd...: exit code 1 and the message.
expect_runtime_error() {
  local what="$1" needle="$2"; shift 2
  local out rc=0
  out="$("$@" 2>&1 >/dev/null)" || rc=$?
  [ "$rc" -eq 1 ] || fail "$what: expected exit code 1, got $rc; stderr: $out"
  echo "$out" | grep -qF -- "$needle" || fail "$what: message does not mention '$needle': $out"
  echo "$out" > "$WORK/last_err"
  echo "ok: $what -> $(echo "$out" | tail -1)"
}
# Patches a JSON file in place: jpatch FILE 'python statement on j'.
jpatch() { "$PY" -c 'import json,sys
p=sys.argv[1]; j=json.load(open(p)); exec(sys.argv[2]); json.dump(j, open(p,"w"), indent=2)' "$1" "$2"; }
steps_in() { "$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$1"; }
same_weights() { "$PY" "$SRC/tests/e2e/st_compare.py" "$1/model.safetensors" "$2/model.safetensors" 0 >/dev/null; }
run() { "$LLMTRAIN" train "$C" --set run.dir=\""$1"\" "${@:2}"; }

# The reference: 24 uninterrupted steps, checkpoints every 4 (keep 3: steps 16, 20, 24).
"$LLMTRAIN" train "$C" > "$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "reference run"; }
REF="$WORK/ref/ckpt/step_00000024"
# A run stopped at step 8 (checkpoints at 4 and 8) that the state.json and damage cases start from.
B="$WORK/base"
run "$B" --stop-after 8 > "$WORK/base.log" 2>&1 || { cat "$WORK/base.log"; fail "base run"; }
[ "$(ls "$B/ckpt" | grep -c step_)" -eq 2 ] || fail "base run: expected checkpoints at steps 4 and 8"
fresh_copy() { rm -rf "$WORK/$1"; cp -a "$B" "$WORK/$1"; echo "$WORK/$1"; }

# ---- 2. non-finite steps -------------------------------------------------------------------------
# lr 1e6: step 9's update blows the weights up, step 10's gradient norm is NaN (its loss still finite).
R="$(fresh_copy nan_stop)"
expect_runtime_error "non-finite gradient norm stops the run" "step 10: non-finite gradient norm (nan; loss " \
  run "$R" --resume auto --set optimizer.adamw.lr=1e6
grep -qF "first non-finite tensor: gradient of transformer.wte.weight; stopping (run.on_nonfinite=stop" "$WORK/last_err" \
  || fail "non-finite stop: the first non-finite tensor is not named: $(cat "$WORK/last_err")"
[ "$(cat "$R/ckpt/latest")" = step_00000008 ] || fail "non-finite stop: the newest checkpoint moved"
[ "$(steps_in "$R/metrics.jsonl")" = "1 2 3 4 5 6 7 8 9" ] || fail "non-finite stop: metrics.jsonl holds $(steps_in "$R/metrics.jsonl")"
"$LLMTRAIN" eval "$R" --batches 1 > /dev/null 2>&1 || fail "non-finite stop: the last checkpoint does not evaluate"

R="$(fresh_copy nan_skip)"
expect_runtime_error "skip mode stops after run.max_nonfinite_skips in a row" "the 3 step(s) before it were skipped already" \
  run "$R" --resume auto --set optimizer.adamw.lr=1e6 --set run.on_nonfinite=skip --set run.max_nonfinite_skips=3
"$PY" - "$R/metrics.jsonl" <<'PY' || fail "skip mode: metrics.jsonl does not count the skipped steps"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in recs] == list(range(1, 13)), [r["step"] for r in recs]
assert [r["step"] for r in recs if r.get("skipped")] == [10, 11, 12]
assert recs[-1]["nonfinite_skips"] == 3 and "nonfinite_skips" not in recs[8]
PY
echo "ok: skip mode skipped and counted steps 10-12 in metrics.jsonl"

# A checkpoint whose weights hold a NaN (with a manifest that matches, so only the values are wrong):
# resume, eval and export refuse it, naming the file and the tensor.
R="$(fresh_copy nan_weights)"
"$PY" - "$R/ckpt/step_00000008" <<'PY'
import json, struct, sys
d = sys.argv[1]
def crc32c(data):
    t = []
    for i in range(256):
        c = i
        for _ in range(8): c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
        t.append(c)
    c = 0xFFFFFFFF
    for b in data: c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
raw = bytearray(open(d + "/model.safetensors", "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
off = json.loads(raw[8:8 + n])["transformer.h.1.mlp.c_fc.weight"]["data_offsets"][0]
raw[8 + n + off:8 + n + off + 4] = struct.pack("<f", float("nan"))
open(d + "/model.safetensors", "wb").write(raw)
st = json.load(open(d + "/state.json"))
st["files"]["model.safetensors"] = {"bytes": len(raw), "crc32c": "%08x" % crc32c(raw)}
json.dump(st, open(d + "/state.json", "w"), indent=2)
PY
nan_msg="step_00000008/model.safetensors: tensor transformer.h.1.mlp.c_fc.weight holds non-finite values"
expect_input_error "resume refuses non-finite weights" "$nan_msg" run "$R" --resume auto
expect_input_error "eval refuses non-finite weights" "$nan_msg" "$LLMTRAIN" eval "$R" --batches 1
expect_input_error "export refuses non-finite weights" "$nan_msg" "$LLMTRAIN" export "$R" --out "$WORK/hf_nan"
[ ! -e "$WORK/hf_nan/model.safetensors" ] || fail "export wrote non-finite weights"

# ---- 3. the run-directory lock ---------------------------------------------------------------------
L="$WORK/locked"
"$LLMTRAIN" train "$C" --set run.dir=\""$L"\" --set run.steps=100000 --set run.checkpoint_every=0 --set run.eval_every=0 \
  > "$WORK/holder.log" 2>&1 &
holder=$!
for _ in $(seq 600); do [ -s "$L/metrics.jsonl" ] && break; sleep 0.1; done
[ -s "$L/metrics.jsonl" ] || { kill $holder; fail "lock: the first trainer never started"; }
start=$(date +%s)
expect_input_error "a second trainer on a locked run.dir" "is in use by another trainer (pid $holder on" \
  run "$L" --overwrite
[ $(( $(date +%s) - start )) -le 10 ] || fail "lock: the second trainer did not stop at once"
kill -0 $holder || fail "lock: the first trainer died"
lines_before=$(wc -l < "$L/metrics.jsonl"); sleep 1
[ "$(wc -l < "$L/metrics.jsonl")" -gt "$lines_before" ] || fail "lock: the first trainer stopped writing metrics"
kill $holder; wait $holder 2>/dev/null || true

# ---- 4. --overwrite ----------------------------------------------------------------------------------
# Killed before its first checkpoint, an --overwrite run leaves nothing of the old one to resume.
R="$(fresh_copy overwrite)"
rc=0; LLMTRAIN_FAULT=after_step:2 run "$R" --overwrite > "$WORK/ow.log" 2>&1 || rc=$?
[ "$rc" -eq 137 ] || { cat "$WORK/ow.log"; fail "overwrite: expected the fault to kill the run, exit $rc"; }
[ ! -e "$R/ckpt" ] || fail "overwrite: the old run's checkpoints are still there: $(ls "$R/ckpt")"
[ "$(steps_in "$R/metrics.jsonl")" = "1 2" ] || fail "overwrite: metrics.jsonl holds $(steps_in "$R/metrics.jsonl")"
run "$R" --resume auto > "$WORK/ow2.log" 2>&1 || { cat "$WORK/ow2.log"; fail "overwrite: resume"; }
! grep -q "resumed from" "$WORK/ow2.log" || fail "overwrite: --resume auto continued the old run"
same_weights "$REF" "$R/ckpt/step_00000024" || fail "overwrite: the new run differs from an uninterrupted one"
echo "ok: --overwrite removed the old run; the new one started over and matches the reference"

# ---- 5. lost writes and symlinks ----------------------------------------------------------------------
# Writes past RLIMIT_FSIZE fail with EFBIG (SIGXFSZ ignored): a disk that fills up mid-run.
R="$WORK/full_metrics"
out="$( (trap '' XFSZ; ulimit -f 4; exec "$LLMTRAIN" train "$C" --set run.dir=\""$R"\" --set run.checkpoint_every=0) 2>&1 >/dev/null)" && rc=0 || rc=$?
[ "$rc" -eq 1 ] || fail "full disk (metrics): expected exit 1, got $rc: $out"
echo "$out" | grep -qE "metrics.jsonl: write failed at step [0-9]+: File too large" || fail "full disk (metrics): $out"
"$PY" -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$R/metrics.jsonl" || fail "full disk: a torn metrics line"
echo "ok: metrics.jsonl write failure -> exit 1: $(echo "$out" | tail -1)"

R="$(fresh_copy full_ckpt)"
out="$( (trap '' XFSZ; ulimit -f 180; exec "$LLMTRAIN" train "$C" --set run.dir=\""$R"\" --set run.steps=12 --resume auto) 2>&1 >/dev/null)" && rc=0 || rc=$?
[ "$rc" -eq 1 ] || fail "full disk (checkpoint): expected exit 1, got $rc: $out"
echo "$out" | grep -qF "optimizer_rank0.safetensors.tmp: write failed: File too large" || fail "full disk (checkpoint): $out"
[ "$(ls -A "$R/ckpt" | tr '\n' ' ')" = "latest step_00000004 step_00000008 " ] || fail "full disk: left behind $(ls -A "$R/ckpt")"
[ "$(cat "$R/ckpt/latest")" = step_00000008 ] || fail "full disk: latest moved"
"$LLMTRAIN" eval "$R" --batches 1 > /dev/null 2>&1 || fail "full disk: the previous checkpoint does not load"
echo "ok: checkpoint write failure -> exit 1, step 8 still the newest and loadable"

R="$WORK/symlinks"; mkdir -p "$R"
echo precious > "$WORK/outside_config"; echo precious > "$WORK/outside_metrics"
ln -s "$WORK/outside_config" "$R/config.json"; ln -s "$WORK/outside_metrics" "$R/metrics.jsonl"
run "$R" --set run.steps=4 > "$WORK/symlinks.log" 2>&1 || { cat "$WORK/symlinks.log"; fail "symlinks: run"; }
[ "$(cat "$WORK/outside_config")" = precious ] && [ "$(cat "$WORK/outside_metrics")" = precious ] \
  || fail "symlinks: a write followed a symlink out of the run dir"
[ -f "$R/config.json" ] && [ ! -L "$R/config.json" ] && [ ! -L "$R/metrics.jsonl" ] || fail "symlinks: not replaced"
echo "ok: config.json and metrics.jsonl symlinks replaced, their targets untouched"

# ---- 6. state.json and damaged checkpoints ---------------------------------------------------------------
S8=ckpt/step_00000008/state.json
R="$(fresh_copy st_missing)"; jpatch "$R/$S8" 'del j["loader"]'
expect_input_error "state.json without a key" "$S8: loader: missing" run "$R" --resume auto
R="$(fresh_copy st_type)"; jpatch "$R/$S8" 'j["sample_rng"] = 5'
expect_input_error "state.json with a wrong type" "$S8: sample_rng: expected a decimal string" run "$R" --resume auto
R="$(fresh_copy st_negative)"; jpatch "$R/$S8" 'j["step"] = -3'; cp "$R/metrics.jsonl" "$WORK/metrics_before"
expect_input_error "state.json with step -3" "$S8: step: must be in [0, 2^40], got -3" run "$R" --resume auto
cmp -s "$R/metrics.jsonl" "$WORK/metrics_before" || fail "step -3: metrics.jsonl was changed"
R="$(fresh_copy st_huge)"; jpatch "$R/$S8" 'j["step"] = 1e15'
expect_input_error "state.json with step 1e15" "$S8: step: expected an integer, got number 1e+15" run "$R" --resume auto
R="$(fresh_copy st_beyond)"
expect_input_error "a checkpoint beyond run.steps" "$S8: step: 8 is beyond run.steps (6 in" run "$R" --resume auto --set run.steps=6

# A flipped bit or a missing model.safetensors in the newest checkpoint: --resume auto says so and
# takes step 4; the run still ends bit-identical to the reference.
for damage in flip missing; do
  R="$(fresh_copy "damaged_$damage")"
  if [ $damage = flip ]; then
    "$PY" -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-100]^=0x04; open(p,"wb").write(b)' "$R/ckpt/step_00000008/model.safetensors"
    why="step_00000008/model.safetensors: checksum mismatch"
  else
    rm "$R/ckpt/step_00000008/model.safetensors"; why="step_00000008/model.safetensors: missing (listed in state.json)"
  fi
  expect_input_error "--resume of the damaged checkpoint by name ($damage)" "$why" run "$R" --resume "$R/ckpt/step_00000008"
  expect_input_error "eval of the damaged checkpoint by name ($damage)" "$why" "$LLMTRAIN" eval "$R/ckpt/step_00000008"
  out="$("$LLMTRAIN" eval "$R" --batches 1 2>&1 >/dev/null)" || fail "eval of the run dir ($damage): $out"
  echo "$out" | grep -qF "skipping a damaged checkpoint: $R/ckpt/$why" || fail "eval ($damage) did not say why: $out"
  run "$R" --resume auto > "$WORK/dmg_$damage.log" 2>&1 || { cat "$WORK/dmg_$damage.log"; fail "resume past damage ($damage)"; }
  grep -qF "resume: skipping a damaged checkpoint: $R/ckpt/$why" "$WORK/dmg_$damage.log" || fail "resume ($damage) did not say why"
  grep -qF "resumed from $R/ckpt/step_00000004 at step 4" "$WORK/dmg_$damage.log" || fail "resume ($damage) did not take step 4"
  same_weights "$REF" "$R/ckpt/step_00000024" || fail "resume past damage ($damage): final weights differ"
  echo "ok: damaged newest checkpoint ($damage) passed over for step 4; final weights bit-identical"
done

# ---- 8. the rename-to-latest window, --dry-run, inspect ---------------------------------------------------
# Killed after step 8's directory was renamed but before `latest` moved: the scan takes step 8, and
# the stale temp file of the `latest` update goes with the next checkpoint.
R="$(fresh_copy window)"
printf 'step_00000004\n' > "$R/ckpt/latest"; printf 'step_00000008\n' > "$R/ckpt/.latest.tmp.424242"
run "$R" --resume auto --set run.steps=12 > "$WORK/window.log" 2>&1 || { cat "$WORK/window.log"; fail "window: resume"; }
grep -qF "resumed from $R/ckpt/step_00000008 at step 8" "$WORK/window.log" || fail "window: resumed one checkpoint early"
[ ! -e "$R/ckpt/.latest.tmp.424242" ] || fail "window: the stale .latest.tmp file is still there"
echo "ok: rename window resumed from step 8 and cleaned the stale temp file"

expect_input_error "--dry-run with a missing data glob" "data.train: no files match" \
  "$LLMTRAIN" train "$C" --dry-run --set data.train=\""$WORK/none_*.bin"\"
expect_input_error "--dry-run with a missing val glob" "data.val: no files match" \
  "$LLMTRAIN" train "$C" --dry-run --set data.val=\""$WORK/none_*.bin"\"
expect_input_error "--dry-run with an indivisible batch" "data.batch_tokens: 200 is not a multiple of micro_batch * seq_len * world = 128" \
  "$LLMTRAIN" train "$C" --dry-run --set data.batch_tokens=200
"$LLMTRAIN" train "$C" --dry-run 2> "$WORK/dry.err" | "$PY" -c 'import json,sys; json.load(sys.stdin)' || fail "--dry-run: stdout is not the config"
grep -qF "dry run: ok: 1 data.train shard(s), 60000 tokens" "$WORK/dry.err" || fail "--dry-run: no summary: $(cat "$WORK/dry.err")"
expect_input_error "--resume with --overwrite" "--overwrite excludes --resume" "$LLMTRAIN" train "$C" --resume auto --overwrite

"$LLMTRAIN" inspect "$B" > "$WORK/insp_run.txt" 2>&1 || { cat "$WORK/insp_run.txt"; fail "inspect of a run dir"; }
grep -qF "(run directory)" "$WORK/insp_run.txt" && grep -qF "resume:     --resume auto takes step_00000008" "$WORK/insp_run.txt" \
  && grep -qF "lock:       free" "$WORK/insp_run.txt" || fail "inspect of a run dir: $(cat "$WORK/insp_run.txt")"
"$LLMTRAIN" inspect "$B/ckpt/step_00000008" > "$WORK/insp_ck.txt" 2>&1 || { cat "$WORK/insp_ck.txt"; fail "inspect of a checkpoint"; }
grep -qF "(checkpoint)" "$WORK/insp_ck.txt" && grep -qE "model.safetensors .*: ok" "$WORK/insp_ck.txt" \
  && grep -qF "all finite" "$WORK/insp_ck.txt" || fail "inspect of a checkpoint: $(cat "$WORK/insp_ck.txt")"
"$LLMTRAIN" inspect "$D" --tokens 0 --tokenizer none > "$WORK/insp_data.txt" 2>&1 || fail "inspect of a shard dir"
[ "$(grep -c "header:" "$WORK/insp_data.txt")" -eq "$(ls "$D"/*.bin | wc -l)" ] || fail "inspect of a shard dir: $(cat "$WORK/insp_data.txt")"
R="$(fresh_copy inspect_damaged)"
"$PY" -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-100]^=0x04; open(p,"wb").write(b)' "$R/ckpt/step_00000008/optimizer_rank0.safetensors"
expect_input_error "inspect of a damaged checkpoint" "step_00000008/optimizer_rank0.safetensors: checksum mismatch" \
  "$LLMTRAIN" inspect "$R/ckpt/step_00000008"
out="$("$LLMTRAIN" inspect "$R" 2>&1)" && fail "inspect of a run with a damaged checkpoint exited 0"
echo "$out" | grep -qF "resume:     --resume auto takes step_00000004" || fail "inspect of a damaged run: $out"
mkdir -p "$WORK/empty"
expect_input_error "inspect of an empty directory" "nothing to inspect" "$LLMTRAIN" inspect "$WORK/empty"
echo "run_dir_faults: every case behaved as expected"
