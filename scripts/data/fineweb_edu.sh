#!/usr/bin/env bash
# FineWeb-Edu (HuggingFaceFW, ODC-By 1.0) tokenized with GPT-2 BPE, as Parquet read directly.
#
# Default: the 100B-token shuffle used by the RMNP paper's GPT-2 FineWeb runs
# (configs/paper/gpt2-*-fineweb-*.json): https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle,
# shard_00000.parquet .. shard_01822.parquet (1,823 files, ~170 GB; FineWeb-Edu sample-100BT shuffled
# and re-sharded, column "text"), into data/fineweb_edu_100b/fineweb_edu_100b_{val,train}_*.bin.
# The validation shard is the first 100M tokens of whole documents (the data is already shuffled).
#
# SAMPLE=10BT (or 100BT, 350BT) instead takes HuggingFaceFW/fineweb-edu's own sample/<SAMPLE>/*.parquet
# into data/fineweb_edu_<sample>/.
#
#   bash scripts/data/fineweb_edu.sh               # all 1,823 shards
#   SHARDS=20 bash scripts/data/fineweb_edu.sh     # the first 20 shards only (~1.1B tokens)
#   SAMPLE=10BT bash scripts/data/fineweb_edu.sh
# Env: LLMTRAIN, DATA (output root, default data/), RAW (download dir), JOBS, THREADS, SHARDS, SAMPLE, VAL_TOKENS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SAMPLE=${SAMPLE:-}
VAL_TOKENS=${VAL_TOKENS:-100M}

if [ -z "$SAMPLE" ]; then
  NAME=fineweb_edu_100b
  DL=$RAW/fineweb-edu-100b-shuffle
  last=$(( ${SHARDS:-1823} - 1 ))
  for i in $(seq 0 "$last"); do
    f=$(printf 'shard_%05d.parquet' "$i")
    echo "$HF/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main/$f $f"
  done | fetch_all "$DL"
else
  need python3
  NAME=fineweb_edu_$(echo "$SAMPLE" | tr 'A-Z' 'a-z')
  DL=$RAW/fineweb-edu-$SAMPLE
  # The file list of sample/<SAMPLE>/ from the Hub API (paths like sample/10BT/000_00000.parquet).
  curl -fsSL "$HF/api/datasets/HuggingFaceFW/fineweb-edu/tree/main/sample/$SAMPLE" |
    python3 -c 'import json,sys; [print(f["path"]) for f in json.load(sys.stdin) if f["path"].endswith(".parquet")]' |
    sort | head -n "${SHARDS:-100000}" |
    while read -r p; do echo "$HF/datasets/HuggingFaceFW/fineweb-edu/resolve/main/$p $(basename "$p")"; done |
    fetch_all "$DL"
fi

# The exact tokenize call (Parquet column "text"; files in name order). Interrupted? Run it again.
"$LLMTRAIN" tokenize "$DL" --format parquet --text-field text --out "$DATA/$NAME" --name "$NAME" \
  --tokenizer gpt2 --val-tokens "$VAL_TOKENS" --shard-tokens 100M --threads "${THREADS:-0}"
