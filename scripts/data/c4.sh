#!/usr/bin/env bash
# C4 English (allenai/c4 "en", ODC-By 1.0) with T5's SentencePiece vocabulary (32,000 pieces), the
# setup of GaLore and of the RMNP paper's LLaMA runs (configs/paper/llama-*-c4-*.json), into
# data/c4/c4_{val,train}_*.bin and data/c4/spiece.model.
#
# Source: https://huggingface.co/datasets/allenai/c4, en/c4-train.00000-of-01024.json.gz ..
# en/c4-train.01023-of-01024.json.gz (~305 GB) and en/c4-validation.0000{0..7}-of-00008.json.gz;
# tokenizer: https://huggingface.co/google-t5/t5-base/resolve/main/spiece.model. T5's model has no BOS:
# every document starts with EOS (</s> = 1), the delimiter the LLaMA configs use.
# Train shards come from the train files; the validation shard is the first 10M tokens of whole
# documents of the validation split (tokenized separately, so no validation text is trained on).
#
#   bash scripts/data/c4.sh                  # all 1,024 train files
#   TRAIN_FILES=16 bash scripts/data/c4.sh   # the first 16 (~2.5B tokens), enough for the 60M-350M runs
# Env: LLMTRAIN, DATA (output root, default data/), RAW (download dir), JOBS, THREADS, TRAIN_FILES, VAL_TOKENS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TRAIN_FILES=${TRAIN_FILES:-1024}
VAL_TOKENS=${VAL_TOKENS:-10M}
DL=$RAW/c4-en
OUT=$DATA/c4
BASE=$HF/datasets/allenai/c4/resolve/main/en

fetch "$HF/google-t5/t5-base/resolve/main/spiece.model" "$OUT/spiece.model"
for i in $(seq 0 $((TRAIN_FILES - 1))); do
  f=$(printf 'c4-train.%05d-of-01024.json.gz' "$i"); echo "$BASE/$f $f"
done | fetch_all "$DL/train"
for i in $(seq 0 7); do
  f=$(printf 'c4-validation.%05d-of-00008.json.gz' "$i"); echo "$BASE/$f $f"
done | fetch_all "$DL/validation"

# The exact tokenize calls. Train: no validation shard. Interrupted? Run the script again.
"$LLMTRAIN" tokenize "$DL/train" --format jsonl --text-field text --out "$OUT" --name c4 \
  --tokenizer "$OUT/spiece.model" --val-tokens 0 --shard-tokens 100M --threads "${THREADS:-0}"
# Validation: whole documents of the validation split until VAL_TOKENS; --max-docs bounds the rest,
# which lands in throw-away train shards.
if [ ! -f "$OUT/c4_val_000000.bin" ]; then
  "$LLMTRAIN" tokenize "$DL/validation" --format jsonl --text-field text --out "$OUT/val.tmp" --name c4 \
    --tokenizer "$OUT/spiece.model" --val-tokens "$VAL_TOKENS" --max-docs 60000 --threads "${THREADS:-0}" --overwrite
  mv "$OUT/val.tmp/c4_val_000000.bin" "$OUT/c4_val_000000.bin"
  mv "$OUT/val.tmp/c4_manifest.json" "$OUT/c4_val_manifest.json"
  rm -rf "$OUT/val.tmp"
fi
"$LLMTRAIN" inspect "$OUT/c4_val_000000.bin" --tokenizer "$OUT/spiece.model" --tokens 60
