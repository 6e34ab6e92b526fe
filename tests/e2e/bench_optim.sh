#!/usr/bin/env bash
# `llmtrain bench optim` on the CPU optimizers at a tiny size: a Markdown row per (model, optimizer)
# with the preconditioning and step times, the RMNP-vs-Muon speedup, the JSON rows, and input
# errors for unknown models and optimizers.
source "$(dirname "$0")/common.sh"

OUT="$("$LLMTRAIN" bench optim --model gpt2-tiny --optimizer muon,rmnp,adamw --steps 3 --warmup 1 \
        --device cpu --json "$WORK/rows.json")"
echo "$OUT"
echo "$OUT" | grep -q '^| model | device | optimizer' || fail "no table header"
for opt in muon rmnp adamw; do
  echo "$OUT" | grep -q "^| gpt2-tiny | cpu | $opt |" || fail "no row for $opt"
done
echo "$OUT" | grep "| rmnp |" | grep -q 'x / ' || fail "no RMNP-vs-Muon speedup"
echo "$OUT" | grep "| muon |" | grep -q 'TFLOP/s' || fail "no Newton-Schulz TFLOP/s"
echo "$OUT" | grep -q '^measured peaks on cpu: GEMM [0-9.]* TFLOP/s, copy [0-9.]* GB/s' || fail "no measured peaks"
echo "$OUT" | grep "| adamw |" | grep -Eq '\| [0-9.]+x \| [0-9]+ \| - \|$' || fail "no x-floor for the adamw step"
"$PY" - "$WORK/rows.json" <<'PYEOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["device"] == "cpu" and doc["peaks"]["gemm_tflops"] > 0 and doc["peaks"]["copy_gbps"] > 0, doc
rows = doc["rows"]
assert [r["optimizer"] for r in rows] == ["muon", "rmnp", "adamw"], rows
for r in rows:
    assert r["params"] == 4 * 12 * 128 * 128, r  # the hidden matrices of gpt2-tiny
    assert r["matrices"] == 16 and r["step_ms"] > 0 and r["peak_mib"] > 0, r
assert rows[0]["precond_ms"] > 0 and rows[1]["precond_ms"] > 0 and rows[2]["precond_ms"] < 0, rows
# Floors: positive for the three, never above the measured time (the peaks are ceilings) by more than noise.
for r in rows:
    assert r["step_floor_ms"] > 0 and r["step_ms"] > 0.5 * r["step_floor_ms"], r
assert rows[0]["precond_floor_ms"] > 0 and rows[1]["precond_floor_ms"] > 0 and rows[2]["precond_floor_ms"] < 0, rows
PYEOF

expect_input_error "unknown model" "gpt2-9b" "$LLMTRAIN" bench optim --model gpt2-9b --steps 1 --device cpu
expect_input_error "unknown optimizer" "sgdx" "$LLMTRAIN" bench optim --optimizer sgdx --model gpt2-tiny --steps 1 --device cpu
echo "bench_optim: ok"
