#!/usr/bin/env bash
# Bad input never trains: malformed or unknown-key configs, wrong types, impossible values,
# truncated or wrong-magic shards, tokens outside the model vocabulary and missing files each stop
# with exit code 2 and a one-line message naming the file, key or value.
source "$(dirname "$0")/common.sh"
D="$WORK/data"; tiny_shards "$D" t 256
C="$WORK/c.json"; tiny_config "$C" "$D" "$WORK/run"

echo '{"model": {"arch": "gpt2",}' > "$WORK/malformed.json"
expect_input_error "malformed JSON" "malformed.json: invalid JSON" "$LLMTRAIN" train "$WORK/malformed.json"

expect_input_error "unknown key" "model.n_layers: unknown key" "$LLMTRAIN" train "$C" --set model.n_layers=3
expect_input_error "unknown section" "optimiser: unknown key" "$LLMTRAIN" train "$C" --set optimiser.x=1
expect_input_error "wrong type" "run.steps: expected an integer" "$LLMTRAIN" train "$C" --set run.steps=\"many\"
expect_input_error "impossible value" "model.n_head" "$LLMTRAIN" train "$C" --set model.n_head=5
expect_input_error "negative lr" "optimizer.adamw.lr" "$LLMTRAIN" train "$C" --set optimizer.adamw.lr=-1
expect_input_error "unknown optimizer" "optimizer.adamw.type" "$LLMTRAIN" train "$C" --set optimizer.adamw.type=\"sgdx\"
expect_input_error "momentum >= 1" "optimizer.matrix.momentum" "$LLMTRAIN" train "$C" \
  --set 'optimizer.matrix={"type": "muon", "lr": 0.02, "momentum": 1.0}'
expect_input_error "unknown coefficient set" "optimizer.matrix.coefficients" "$LLMTRAIN" train "$C" \
  --set 'optimizer.matrix={"type": "muon", "lr": 0.02, "coefficients": "jordan7"}'
expect_input_error "missing config" "nope.json" "$LLMTRAIN" train "$WORK/nope.json"
expect_input_error "missing shard" "data.train" "$LLMTRAIN" train "$C" --set data.train=\"$WORK/none_*.bin\" --overwrite

B="$WORK/bad"; tiny_shards "$B/trunc" t 256 --truncate
expect_input_error "truncated shard" "t_train_000001.bin" "$LLMTRAIN" train "$C" --overwrite \
  --set data.train=\"$B/trunc/t_train_*.bin\" --set data.val=\"\"
tiny_shards "$B/magic" t 256 --bad-magic
expect_input_error "wrong magic" "magic" "$LLMTRAIN" train "$C" --overwrite \
  --set data.train=\"$B/magic/t_train_*.bin\" --set data.val=\"\"
tiny_shards "$B/vocab" t 5000
expect_input_error "vocab larger than the model's" "t_train_000001.bin" "$LLMTRAIN" train "$C" --overwrite \
  --set data.train=\"$B/vocab/t_train_*.bin\" --set data.val=\"\"
expect_input_error "eval of a missing run" "missing_run" "$LLMTRAIN" eval "$WORK/missing_run"
expect_input_error "malformed fault-injection spec" "LLMTRAIN_FAULT" env LLMTRAIN_FAULT=after_step:x "$LLMTRAIN" train "$C"
echo "bad_inputs: all cases rejected as expected"
