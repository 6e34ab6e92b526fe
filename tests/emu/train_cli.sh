#!/usr/bin/env bash
# `llmtrain train` with run.backend=cuda end to end on the CUDA emulator (the llmtrain binary with
# LLMTRAIN_CUDA_PLUGIN naming the emulated plugin, libllmtrain_cuda_emu.so): the trainer with the
# device optimizers (Muon's batched Newton-Schulz + AdamW; RMNP on LLaMA), checkpoints with
# device optimizer state, and the claims that need the whole loop: a resumed run is bitwise the
# uninterrupted one (with nearest and with stochastic rounding), run.recompute=2 and run.zero=1 change
# nothing, and the loss curve stays with the CPU backend's. What only a GPU can show (speed, real
# tensor-core numerics) is scripts/gpu_check.sh's job; this runs in CI.
source "$(dirname "$0")/../e2e/common.sh"
D="$WORK/data"; tiny_shards "$D" t 256

# config PATH ARCH MATRIX_JSON: a 2-layer model with head size 64 (what the attention kernels take).
config() {
  local extra='"n_layer": 2, "n_embd": 64, "n_head": 1'
  [ "$2" = llama ] && extra='"n_layer": 2, "n_embd": 128, "n_head": 2, "n_kv_head": 1'
  cat > "$1" <<JSON
{
  "model": {"arch": "$2", $extra, "vocab_size": 256, "max_seq_len": 32},
  "data": {"train": "$D/t_train_*.bin", "val": "$D/t_val_*.bin", "seq_len": 32, "micro_batch": 4,
           "batch_tokens": 256, "delimiter": 0, "tokenizer": "none"},
  "optimizer": {"matrix": $3, "adamw": {"type": "adamw", "lr": 0.01}},
  "run": {"dir": "$WORK/unused", "steps": 12, "seed": 7, "eval_every": 6, "eval_batches": 2, "backend": "cuda",
          "sample_every": 0, "sample_tokens": 0, "checkpoint_every": 6, "keep_last": 3, "log_every": 6, "threads": 2}
}
JSON
}
# train NAME CONFIG [--set ...]: a run into $WORK/NAME.
train() {
  local name="$1" cfg="$2"; shift 2
  "$LLMTRAIN" train "$cfg" --set "run.dir=\"$WORK/$name\"" "$@" > "$WORK/$name.log" 2>&1 \
    || { cat "$WORK/$name.log"; fail "$name"; }
}
same() {  # same RUN_A RUN_B STEP: bitwise equal weights
  "$PY" "$SRC/tests/e2e/st_compare.py" "$WORK/$1/ckpt/step_$3/model.safetensors" "$WORK/$2/ckpt/step_$3/model.safetensors" 0 \
    > /dev/null || fail "$2 is not bitwise $1 at step $3"
  echo "ok: $2 is bitwise $1"
}
# resumed NAME FROM_RUN [--set ...]: a run resumed from FROM_RUN's step 6 checkpoint.
resumed() {
  local name="$1" from="$2" cfg="$3"; shift 3
  mkdir -p "$WORK/$name/ckpt" && cp -r "$WORK/$from/ckpt/step_00000006" "$WORK/$name/ckpt/"
  train "$name" "$cfg" --resume "$WORK/$name/ckpt/step_00000006" "$@"
}

config "$WORK/g.json" gpt2 '{"type": "muon", "lr": 0.02}'
train full "$WORK/g.json"
grep -q "backend cuda" "$WORK/full.log" || fail "the run did not use the cuda backend"
[ -f "$WORK/full/ckpt/step_00000012/optimizer_rank0.safetensors" ] || fail "no optimizer state"
resumed resumed full "$WORK/g.json"
same full resumed 00000012
train recompute2 "$WORK/g.json" --set run.recompute=2
same full recompute2 00000012
train zero1 "$WORK/g.json" --set run.zero=1
same full zero1 00000012
train sr "$WORK/g.json" --set 'run.bf16_rounding="stochastic"'
resumed sr_resumed sr "$WORK/g.json" --set 'run.bf16_rounding="stochastic"'
same sr sr_resumed 00000012
"$PY" "$SRC/tests/e2e/st_compare.py" "$WORK/full/ckpt/step_00000012/model.safetensors" \
  "$WORK/sr/ckpt/step_00000012/model.safetensors" 0 > /dev/null && fail "stochastic rounding changed nothing"

# The loss curve of the CPU backend on the same config: bf16 compute, so close, not equal.
train cpu "$WORK/g.json" --set 'run.backend="cpu"'
"$PY" - "$WORK/full/metrics.jsonl" "$WORK/cpu/metrics.jsonl" <<'PY' || fail "the cuda loss curve left the cpu one"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b]
worst = max(abs(x["loss"] - y["loss"]) / y["loss"] for x, y in zip(a, b))
print("cuda vs cpu: max relative loss difference %.2e over %d steps" % (worst, len(a)))
sys.exit(0 if worst < 2e-2 else 1)
PY

# LLaMA (GQA, RoPE, SwiGLU) with the fused RMNP kernel: resume bitwise.
config "$WORK/l.json" llama '{"type": "rmnp", "lr": 0.01}'
train llama "$WORK/l.json"
resumed llama_resumed llama "$WORK/l.json"
same llama llama_resumed 00000012
echo "train_cli: the cuda backend trains, resumes bitwise, and recompute/zero/rounding behave, under the emulator"
