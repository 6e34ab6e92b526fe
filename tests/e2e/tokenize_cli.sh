#!/usr/bin/env bash
# `llmtrain tokenize` and `llmtrain inspect` from the command line: jsonl and gzip text in, shards
# out that inspect reads back (header, document count, decoded text); bad input (malformed line,
# existing shards, truncated shard, truncated zstd, broken Parquet) gives exit code 2 and a one-line
# message, and no partial shard; the manifest's checksums are right; a run killed with SIGKILL
# continues to the same shards when the command is repeated.
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
# The manifest names the tokenizer, the counts, the sources and every shard with its SHA-256.
"$PY" - "$OUT" <<'PYEOF' || fail "manifest"
import hashlib, json, os, sys
out = sys.argv[1]
m = json.load(open(os.path.join(out, "t_manifest.json")))
assert m["tokenizer"]["name"] == "gpt2" and m["counts"]["documents"] == 41, m["counts"]
for s in m["shards"]:
    data = open(os.path.join(out, s["file"]), "rb").read()
    assert hashlib.sha256(data).hexdigest() == s["sha256"], s
    assert len(data) == s["bytes"] == 1024 + 2 * s["tokens"], s
for s in m["sources"]:
    assert hashlib.sha256(open(s["path"], "rb").read()).hexdigest() == s["sha256"], s
assert sum(s["tokens"] for s in m["shards"]) == m["counts"]["tokens"]
PYEOF

# Killed with SIGKILL in the middle of a run, the same command continues it to the same shards.
"$PY" - "$WORK/big.jsonl" <<'PYEOF'
import json, random, sys
rng = random.Random(5)
words = ["the", "Union", "of", "Congress", "it's", "peace", "2024", "naïve", "日本語", "😀", "tax", "world", "—",
         "budget", "1,234", "def", "return", "{", "}", "    ", "\n", "Ελλάδα", "Москва", "x = y + 1;"]
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 900)))
        f.write(json.dumps({"text": text, "id": i}) + "\n")
PYEOF
gzip -k "$WORK/big.jsonl"
TOK=(tokenize "$WORK/big.jsonl" "$WORK/big.jsonl.gz" --name k --val-tokens 20k --shard-tokens 50k --threads 2)
count_shards() { [ -d "$1" ] || { echo 0; return; }; find "$1" -maxdepth 1 -name 'k_*.bin' | wc -l; }
"$LLMTRAIN" "${TOK[@]}" --out "$WORK/kref" > "$WORK/kref.log"
nref=$(count_shards "$WORK/kref")
[ "$nref" -ge 20 ] || fail "expected at least 20 shards, got $nref"
for attempt in 1 2; do
  "$LLMTRAIN" "${TOK[@]}" --out "$WORK/kill" > "$WORK/kill$attempt.log" 2>&1 &
  pid=$!
  # Kill once a few more shards are finished (the progress file lists them).
  for _ in $(seq 1 600); do
    n=$(count_shards "$WORK/kill")
    [ "$n" -ge $((attempt * 3)) ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  kill -9 $pid 2>/dev/null || fail "tokenize finished before it could be killed (attempt $attempt)"
  wait $pid 2>/dev/null || true
  [ -f "$WORK/kill/k_tokenize_progress.json" ] || fail "no progress file after the kill: $(ls "$WORK/kill")"
  [ ! -f "$WORK/kill/k_manifest.json" ] || fail "manifest written by a killed run"
done
"$LLMTRAIN" "${TOK[@]}" --out "$WORK/kill" > "$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; fail "resume"; }
grep -q "resuming an interrupted run" "$WORK/resume.log" || fail "resume not reported: $(cat "$WORK/resume.log")"
grep -q "resumed an interrupted run" "$WORK/resume.log" || fail "resume not in the report"
[ "$(count_shards "$WORK/kill")" -eq "$nref" ] || fail "resumed run has $(ls "$WORK/kill" | tr '\n' ' ')"
for f in "$WORK/kref"/k_*.bin; do cmp -s "$f" "$WORK/kill/$(basename "$f")" || fail "resumed $(basename "$f") differs"; done
[ ! -e "$WORK/kill/k_tokenize_progress.json" ] || fail "progress file left after a finished run"
ls "$WORK/kill" | grep -q '\.tmp' && fail "temp files left in $WORK/kill"
"$PY" -c 'import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); assert a["shards"]==b["shards"] and a["counts"]==b["counts"], "manifests differ"' \
  "$WORK/kref/k_manifest.json" "$WORK/kill/k_manifest.json" || fail "manifest after resume"
# Other settings on an interrupted run are refused rather than mixed.
"$LLMTRAIN" "${TOK[@]}" --out "$WORK/kill2" --max-docs 4000 > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -f "$WORK/kill2/k_tokenize_progress.json" ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
if [ -f "$WORK/kill2/k_tokenize_progress.json" ]; then
  expect_input_error "resume with other settings" "different settings" "$LLMTRAIN" "${TOK[@]}" --out "$WORK/kill2"
fi

# Truncated zstd input and a damaged Parquet footer stop the run with the file named, no shards left.
zstd -q -c "$WORK/big.jsonl" > "$WORK/full.zst"; head -c 200000 "$WORK/full.zst" > "$WORK/trunc.jsonl.zst"
expect_input_error "truncated zstd" "trunc.jsonl.zst: truncated zstd stream" \
  "$LLMTRAIN" tokenize "$WORK/trunc.jsonl.zst" --out "$WORK/tz" --shard-tokens 10k --skip-bad
[ -z "$(ls -A "$WORK/tz")" ] || fail "truncated zstd left files: $(ls "$WORK/tz")"
PQ="$SRC/tests/fixtures/parquet/duckdb_zstd.parquet"
if [ -f "$PQ" ]; then
  head -c $(( $(stat -c %s "$PQ") - 6 )) "$PQ" > "$WORK/broken.parquet"; printf 'XXPAR1' >> "$WORK/broken.parquet"
  expect_input_error "corrupt parquet footer" "broken.parquet" "$LLMTRAIN" tokenize "$WORK/broken.parquet" --out "$WORK/bp"
  expect_input_error "missing parquet column" "no_such_col" \
    "$LLMTRAIN" tokenize "$PQ" --out "$WORK/bp" --text-field no_such_col
fi
echo "tokenize_cli: ok"
