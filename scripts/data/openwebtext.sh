#!/usr/bin/env bash
# OpenWebText (Gokaslan & Cohen 2019; 8,013,769 documents, ~38 GB of text, ~9B GPT-2 tokens), the
# corpus of the RMNP paper's GPT-2 OpenWebText runs (configs/paper/gpt2-*-owt-*.json), tokenized with
# GPT-2 BPE into data/openwebtext/openwebtext_{val,train}_*.bin.
#
# Source: https://huggingface.co/datasets/Skylion007/openwebtext, files subsets/urlsf_subset00.tar ..
# urlsf_subset20.tar (21 tars, ~12 GB). Each tar holds .xz archives of .txt documents;
# owt_to_jsonl.py turns each tar into one .jsonl.gz (one document per line, in archive order) with the
# Python standard library only. nanoGPT's split is ~0.05% validation: here the first 4M tokens of
# whole documents form the validation shard.
#
#   bash scripts/data/openwebtext.sh            # download (resumable), convert, tokenize
#   SUBSETS=1 bash scripts/data/openwebtext.sh  # only urlsf_subset00 (~0.6 GB), to try it out
# Env: LLMTRAIN (binary, default build/llmtrain), DATA (output root, default data/), RAW (download dir,
# default $DATA/raw), JOBS, THREADS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need python3
SUBSETS=${SUBSETS:-21}
DL=$RAW/openwebtext
OUT=$DATA/openwebtext

for i in $(seq 0 $((SUBSETS - 1))); do
  n=$(printf '%02d' "$i")
  echo "$HF/datasets/Skylion007/openwebtext/resolve/main/subsets/urlsf_subset$n.tar urlsf_subset$n.tar"
done | fetch_all "$DL/tar"

mkdir -p "$DL/jsonl"
for tarfile in "$DL"/tar/urlsf_subset*.tar; do
  out="$DL/jsonl/$(basename "$tarfile" .tar).jsonl.gz"
  [ -s "$out" ] && continue
  python3 "$(dirname "${BASH_SOURCE[0]}")/owt_to_jsonl.py" "$tarfile" "$out.part" && mv "$out.part" "$out"
  echo "  converted $out"
done

# The exact tokenize call. Interrupted? Run the script again: finished shards are kept.
"$LLMTRAIN" tokenize "$DL/jsonl" --out "$OUT" --name openwebtext --tokenizer gpt2 \
  --val-tokens 4M --shard-tokens 100M --threads "${THREADS:-0}"
