#!/usr/bin/env bash
# scripts/gpu_check.sh's own logic, without a GPU: a fake build directory whose `llmtrain` and
# `llmtrain_gpu_tests` only print what the real ones would, so CI checks what the first run on a
# lent GPU machine depends on: argument errors, the stage table and exit status, the throughput
# table parsed from bench JSON, the archive (logs, not weights), and that an INT/TERM stops the
# running stage at once and still leaves report.md and the archive.
source "$(dirname "$0")/common.sh"
GC="$SRC/scripts/gpu_check.sh"

FAKE="$WORK/build"
mkdir -p "$FAKE/tests"
cat > "$FAKE/llmtrain" <<'SH'
#!/usr/bin/env bash
# Fake CLI: `bench gpu` prints a line (or sleeps / fails on request), `bench train` prints JSON.
case "$1 $2" in
  "bench gpu")
    if [ -n "${FAKE_SLEEP:-}" ]; then echo $$ > "$FAKE_PIDFILE"; sleep "$FAKE_SLEEP"; fi
    if [ -n "${FAKE_FAIL:-}" ]; then echo "no GPU"; exit 3; fi
    echo "| GEMM bf16 8192^3 | 700.0 TFLOP/s |" ;;
  "bench train")
    echo '{"tokens_per_step": 4096, "step_ms_median": 2.5, "tokens_per_s": 1638400, "achieved_tflops": 12.5,
           "mfu": 0.0126, "peak_device_bytes_by_run": 1073741824, "optimizer": "adamw"}' ;;
  *) echo "fake llmtrain: $*"; exit 0 ;;
esac
SH
printf '#!/usr/bin/env bash\necho "All tests passed"\n' > "$FAKE/tests/llmtrain_gpu_tests"
chmod +x "$FAKE/llmtrain" "$FAKE/tests/llmtrain_gpu_tests"

# Bad arguments: exit 2 before anything is written.
rc=0; bash "$GC" --bogus > "$WORK/bad.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown argument --bogus" "$WORK/bad.log" || fail "--bogus: rc $rc, $(cat "$WORK/bad.log")"
rc=0; bash "$GC" --archive > "$WORK/bad.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "needs a file name" "$WORK/bad.log" || fail "--archive without a file: rc $rc"

# A passing quick benchmark pass, with a leftover weights file that the archive must leave out.
R="$WORK/r1"
mkdir -p "$R" && touch "$R/model.safetensors"
OUT="$R" BUILD_DIR="$FAKE" bash "$GC" --skip-build --benches-only --quick --archive "$WORK/r1.tgz" > "$WORK/r1.log" 2>&1 ||
  fail "all-pass run failed: $(cat "$WORK/r1.log")"
grep -q "| bench gpu (GEMM, copy, kernels) | pass |" "$R/report.md" || fail "bench gpu row: $(cat "$R/report.md")"
grep -q "| gpt2-tiny-hs64 | 4096 | 2.50 | 1638400 | 12.5 | 1.3% | - | - | 1.00 |" "$R/report.md" ||
  fail "throughput row: $(grep gpt2-tiny "$R/report.md")"
grep -q "GPU tests (llmtrain_gpu_tests)" "$R/report.md" && fail "--benches-only ran the GPU tests"
tar tzf "$WORK/r1.tgz" > "$WORK/r1.list"
grep -qx "./report.md" "$WORK/r1.list" && grep -qx "./bench_gpu.txt" "$WORK/r1.list" || fail "archive: $(cat "$WORK/r1.list")"
grep -q safetensors "$WORK/r1.list" && fail "the archive carries weights"
echo "ok: quick benchmark pass, report and archive"

# A failing stage: recorded, the others still run, exit 1.
R="$WORK/r2"
rc=0; FAKE_FAIL=1 OUT="$R" BUILD_DIR="$FAKE" bash "$GC" --skip-build --benches-only --quick > "$WORK/r2.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "failing stage: rc $rc"
grep -q "| bench gpu (GEMM, copy, kernels) | \*\*FAIL (exit 3)\*\* |" "$R/report.md" || fail "FAIL row: $(cat "$R/report.md")"
grep -q "| bench train --fwd-bwd-only gpt2-tiny-hs64 | pass |" "$R/report.md" || fail "later stage did not run"
echo "ok: a failing stage is recorded and the rest runs"

# TERM while a stage runs: the script stops within seconds (not after the 60 s stage), stops the
# stage, and leaves the report and the archive.
R="$WORK/r3"
export FAKE_PIDFILE="$WORK/stage.pid"
FAKE_SLEEP=60 OUT="$R" BUILD_DIR="$FAKE" bash "$GC" --skip-build --benches-only --quick --archive "$WORK/r3.tgz" \
  > "$WORK/r3.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -s "$FAKE_PIDFILE" ] && break; sleep 0.1; done
[ -s "$FAKE_PIDFILE" ] || fail "the slow stage never started: $(cat "$WORK/r3.log")"
t0=$SECONDS
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || fail "after TERM: rc $rc, $(cat "$WORK/r3.log")"
[ $((SECONDS - t0)) -lt 20 ] || fail "TERM took $((SECONDS - t0)) s to stop the script"
grep -q "interrupted" "$WORK/r3.log" || fail "no 'interrupted' line"
[ -f "$R/report.md" ] && [ -f "$WORK/r3.tgz" ] || fail "no report or archive after TERM"
sleep 1
kill -0 "$(cat "$FAKE_PIDFILE")" 2>/dev/null && fail "the interrupted stage is still running"
echo "ok: TERM stops the stage at once, report and archive written"
