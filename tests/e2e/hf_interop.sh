#!/usr/bin/env bash
# Hugging Face interop through the CLI. A trained bias-free, untied GPT-2 and a LLaMA with GQA and
# a SentencePiece tokenizer are exported; then:
#  - `llmtrain eval HF_DIR` gives exactly the loss of `llmtrain eval RUN` (same weights, same code);
#  - an independent numpy float64 implementation reading only the exported files
#    (scripts/hf_numpy_loss.py) gives the same loss to 1e-5: names, layouts and config keys are right;
#  - `llmtrain generate HF_DIR` samples what `generate RUN` does, with the exported tokenizer.model;
#  - model.init_from reads the export back bit for bit (`export --init` of a config that names it);
#    a model key that disagrees with its config.json is exit code 2 naming the key and both values;
#  - `tokenize` on input without documents is exit code 2 naming the file.
source "$(dirname "$0")/common.sh"
NPY=/usr/bin/python3
"$NPY" -c "import numpy" 2>/dev/null || NPY="$PY"
"$NPY" -c "import numpy" 2>/dev/null || fail "numpy is missing (Debian python3-numpy: run scripts/setup.sh)"

D="$WORK/data"; tiny_shards "$D" t 1000
SPM="$SRC/tests/fixtures/spm/tiny.model"
json_field() { "$PY" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

for arch in gpt2 llama; do
  C="$WORK/$arch.json"; R="$WORK/run_$arch"; H="$WORK/hf_$arch"
  tiny_config "$C" "$D" "$R" "$arch"
  sets=(--set model.vocab_size=1000 --set run.steps=12 --set run.eval_every=12)
  if [ "$arch" = gpt2 ]; then
    sets+=(--set model.bias=false --set model.tie_embeddings=false)
  else
    sets+=(--set "data.tokenizer=$SPM" --set data.delimiter=1 --set run.sample_tokens=0)
  fi
  "$LLMTRAIN" train "$C" "${sets[@]}" > "$WORK/train_$arch.log" 2>&1 || { cat "$WORK/train_$arch.log"; fail "$arch: training failed"; }
  "$LLMTRAIN" export "$R" --out "$H" > "$WORK/export_$arch.log" 2>&1 || { cat "$WORK/export_$arch.log"; fail "$arch: export failed"; }
  for f in config.json generation_config.json model.safetensors; do [ -f "$H/$f" ] || fail "$arch: export has no $f"; done
  if [ "$arch" = llama ]; then
    cmp -s "$H/tokenizer.model" "$SPM" || fail "llama: tokenizer.model is not the run's SentencePiece model"
    [ -f "$H/tokenizer_config.json" ] || fail "llama: no tokenizer_config.json"
  fi
  grep -q '99999' "$H/config.json" "$R/config.json" && fail "$arch: float32 noise in a config: $(grep -h 99999 "$H/config.json" "$R/config.json")"

  eval_args=(--data "$D/t_val_*.bin" --batches 3 --batch-size 4 --seq-len 32)
  ours="$("$LLMTRAIN" eval "$R" "${eval_args[@]}" | json_field loss)" || fail "$arch: eval of the run failed"
  theirs="$("$LLMTRAIN" eval "$H" "${eval_args[@]}" | json_field loss)" || fail "$arch: eval of the HF directory failed"
  [ "$ours" = "$theirs" ] || fail "$arch: eval of the export gives $theirs, of the run $ours"
  numpy="$("$NPY" "$SRC/scripts/hf_numpy_loss.py" "$H" "$D"/t_val_000000.bin --batches 3 --batch-size 4 --seq-len 32 |
           json_field loss)" || fail "$arch: numpy reference failed"
  "$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 1e-5 * abs(b) else 1)" \
    "$ours" "$numpy" || fail "$arch: llmtrain eval loss $ours, numpy reference on the exported files $numpy"
  echo "ok: $arch: eval of the run and of its export $ours, numpy float64 on the export $numpy"

  # Training starts from the export: the initial weights are the exported ones, bit for bit.
  "$LLMTRAIN" export --init --config "$C" "${sets[@]}" --set "model.init_from=\"$H\"" --out "$WORK/init_$arch" > /dev/null \
    || fail "$arch: export --init with model.init_from failed"
  "$PY" "$SRC/tests/e2e/st_compare.py" "$H/model.safetensors" "$WORK/init_$arch/model.safetensors" 0 \
    || fail "$arch: model.init_from did not read the export back bit for bit"
  expect_input_error "$arch: init_from with another depth" "model.n_layer: 3, but model.init_from $H/config.json has 2" \
    "$LLMTRAIN" train "$C" "${sets[@]}" --set "model.init_from=\"$H\"" --set model.n_layer=3
done

# Sampling from the export uses its tokenizer.model and gives what the run gives.
a="$("$LLMTRAIN" generate "$WORK/run_llama" --prompt "hello" --tokens 12 --temperature 0)" || fail "generate of the run failed"
b="$("$LLMTRAIN" generate "$WORK/hf_llama" --prompt "hello" --tokens 12 --temperature 0)" || fail "generate of the HF directory failed"
[ "$a" = "$b" ] || fail "generate differs: run '$a', export '$b'"
echo "ok: generate from the export: $b"

printf '' > "$WORK/empty.txt"
expect_input_error "tokenize without documents" "no documents found in $WORK/empty.txt" \
  "$LLMTRAIN" tokenize "$WORK/empty.txt" --out "$WORK/tok_empty"
[ -z "$(ls -A "$WORK/tok_empty" 2>/dev/null)" ] || fail "tokenize without documents left files: $(ls "$WORK/tok_empty")"
echo "hf_interop: export, import, numpy reference and init_from agree"
