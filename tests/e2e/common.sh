# Shared helpers for the end-to-end tests: $LLMTRAIN (binary), $SRC (source dir), a scratch $WORK
# removed on exit, tiny shards, a tiny config, and assertions that print what went wrong.
set -euo pipefail
LLMTRAIN="$1"
SRC="$2"
WORK="$(mktemp -d /tmp/llmtrain_e2e.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
PY="$(command -v python3)"

fail() { echo "FAIL: $*" >&2; exit 1; }

# tiny_shards DIR NAME VOCAB [flags...]
tiny_shards() { mkdir -p "$1"; "$PY" "$SRC/tests/e2e/make_shards.py" "$1" "$2" "$3" 60000 8000 "${@:4}"; }

# tiny_config PATH DATA_DIR RUN_DIR [arch]: a 2-layer model on a 256-token vocabulary.
tiny_config() {
  local arch="${4:-gpt2}"
  local extra='"n_layer": 2, "n_embd": 32, "n_head": 4'
  if [ "$arch" = llama ]; then extra="$extra, \"n_kv_head\": 2"; fi
  cat > "$1" <<JSON
{
  "model": {"arch": "$arch", $extra, "vocab_size": 256, "max_seq_len": 32},
  "data": {"train": "$2/t_train_*.bin", "val": "$2/t_val_*.bin", "seq_len": 32, "micro_batch": 4,
           "batch_tokens": 256, "delimiter": 0, "tokenizer": "none"},
  "optimizer": {"adamw": {"type": "adamw", "lr": 0.01}},
  "run": {"dir": "$3", "steps": 24, "seed": 7, "eval_every": 8, "eval_batches": 2,
          "sample_every": 0, "sample_tokens": 0, "checkpoint_every": 4, "keep_last": 3, "log_every": 4, "threads": 2}
}
JSON
}

# expect_input_error "description" expected-substring cmd...: exit code 2 and a one-line message.
expect_input_error() {
  local what="$1" needle="$2"; shift 2
  local out rc=0
  out="$("$@" 2>&1 >/dev/null)" || rc=$?
  [ "$rc" -eq 2 ] || fail "$what: expected exit code 2, got $rc; stderr: $out"
  echo "$out" | grep -qF -- "$needle" || fail "$what: message does not mention '$needle': $out"
  [ "$(echo "$out" | grep -c .)" -eq 1 ] || fail "$what: expected a one-line message, got: $out"
  echo "ok: $what -> $out"
}
