#!/usr/bin/env bash
# `llmtrain tokenize` and `llmtrain inspect` from the command line: jsonl and gzip text in, shards
# out that inspect reads back (header, document count, decoded text); bad input (malformed line,
# existing shards, truncated shard) gives exit code 2 and a one-line message, and no partial shard.
source "$(dirname "$0")/common.sh"
export LLMTRAIN_DATA_DIR="$SRC/data"

IN="$WORK/in"; mkdir -p "$IN"
for i in $(seq 1 40); do
  echo "{\"text\": \"Document $i: the quick brown fox jumps over the lazy dog. It's number $i.\\nSecond line.\", \"id\": $i}"
done > "$IN/a.jsonl"
printf 'Plain text document, gzipped.\n' | gzip -c > "$IN/b.txt.gz"

OUT="$WORK/out"
"$LLMTRAIN" tokenize "$IN" --out "$OUT" --name t --val-tokens 100 --shard-tokens 300 --threads 2 > "$WORK/tok.log"
cat "$WORK/tok.log"
grep -q "2 file(s), 41 documents" "$WORK/tok.log" || fail "tokenize report: $(cat "$WORK/tok.log")"
[ -f "$OUT/t_val_000000.bin" ] && [ -f "$OUT/t_train_000001.bin" ] && [ -f "$OUT/t_train_000002.bin" ] ||
  fail "expected val and train shards in $OUT: $(ls "$OUT")"
ls "$OUT" | grep -q '\.tmp' && fail "temp files left in $OUT"

"$LLMTRAIN" inspect "$OUT/t_val_000000.bin" --tokens 30 > "$WORK/inspect.log"
cat "$WORK/inspect.log"
grep -q "magic 20240520, version 1 (uint16 tokens)" "$WORK/inspect.log" || fail "inspect header"
grep -q ": ok" "$WORK/inspect.log" || fail "inspect size check"
grep -q "starts with the delimiter" "$WORK/inspect.log" || fail "inspect delimiter"
grep -q "<|endoftext|>Document 1: the quick brown fox" "$WORK/inspect.log" || fail "inspect decoded text"

# Same shards with one thread.
"$LLMTRAIN" tokenize "$IN" --out "$WORK/out1" --name t --val-tokens 100 --shard-tokens 300 --threads 1 > /dev/null
for f in "$OUT"/*.bin; do cmp -s "$f" "$WORK/out1/$(basename "$f")" || fail "thread count changed $(basename "$f")"; done

expect_input_error "existing shards" "--overwrite" "$LLMTRAIN" tokenize "$IN" --out "$OUT" --name t
cp "$IN/a.jsonl" "$WORK/bad.jsonl"; echo '{"text": "broken' >> "$WORK/bad.jsonl"
expect_input_error "malformed JSON line" "bad.jsonl:41: malformed JSON" \
  "$LLMTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/bad_out" --shard-tokens 50
[ -z "$(ls -A "$WORK/bad_out")" ] || fail "failed tokenize left files: $(ls "$WORK/bad_out")"
"$LLMTRAIN" tokenize "$WORK/bad.jsonl" --out "$WORK/bad_out" --skip-bad > "$WORK/skip.log"
grep -q "1 bad skipped" "$WORK/skip.log" || fail "skip-bad report: $(cat "$WORK/skip.log")"

head -c 1500 "$OUT/t_train_000001.bin" > "$WORK/trunc.bin"
expect_input_error "inspect truncated shard" "trunc.bin: truncated shard" "$LLMTRAIN" inspect "$WORK/trunc.bin"
"$LLMTRAIN" inspect "$WORK/trunc.bin" > "$WORK/trunc.log" 2>/dev/null || true
grep -q "TRUNCATED" "$WORK/trunc.log" || fail "inspect does not show the size problem: $(cat "$WORK/trunc.log")"
echo "tokenize_cli: ok"
