#!/usr/bin/env bash
# First thing to run on a GPU machine: builds the CUDA configuration, runs the device-only tests
# (build/tests/llmtrain_gpu_tests: every CUDA op against the CPU reference, the CUDA backend against
# the CPU backend, a short training run), the CPU unit tests, then the benchmarks, and writes a
# report directory:
#   ${OUT:-gpu_report}/report.md          summary (device, pass/fail per stage, bench numbers)
#   ${OUT:-gpu_report}/nvidia-smi.txt     nvidia-smi -q and the plain table
#   ${OUT:-gpu_report}/build.log          configure + build output
#   ${OUT:-gpu_report}/gpu_tests.txt|xml  Catch2 console and JUnit output of llmtrain_gpu_tests
#   ${OUT:-gpu_report}/ctest_unit.txt     CPU unit tests
#   ${OUT:-gpu_report}/train_cuda.txt     the trainer on cuda: 40 steps, bitwise resume
#   ${OUT:-gpu_report}/nccl_launch.txt    the same through `llmtrain launch` on NCCL (world 1)
#   ${OUT:-gpu_report}/bench_*.txt|json   benchmark outputs (bench gpu, bench optim, bench train)
# Every stage runs even when an earlier one fails (a failing stage is recorded, not fatal), except
# that nothing after the build runs when the build fails. Exit status: 0 when every stage passed.
#
# Usage: scripts/gpu_check.sh [--quick] [--skip-build] [--benches-only] [--archive FILE]
#   --quick        skip the long benchmarks (GPT-2 124M / LLaMA 130M training-step benches, the
#                  Table 4 optimizer benches) and the second (JUnit) pass of the GPU tests
#   --skip-build   reuse an existing build in BUILD_DIR (e.g. built by an earlier call on the same
#                  machine), so build and tests+benches can be split over two time-limited commands
#   --benches-only skip the tests and the trainer stages (a second call after --quick)
#   --archive FILE also write everything under OUT as one .tar.gz (on exit, interrupted or not)
# On a lent machine with 10-minute commands: `--quick --archive A`, then on the same warm machine
# `--skip-build --benches-only --archive B` (docs/perf.md).
# Every stage runs under `timeout` (a hung kernel cannot eat the whole budget); report.md (and the
# archive) is rewritten after every stage and on exit, so an interrupted or killed run keeps them.
# Environment: OUT (report dir), BUILD_DIR (default build), JOBS (default nproc).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-gpu_report}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"
QUICK=0
SKIP_BUILD=0
BENCHES_ONLY=0
ARCHIVE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --benches-only) BENCHES_ONLY=1 ;;
    --archive)
      [[ $# -ge 2 ]] || { echo "gpu_check.sh: --archive needs a file name" >&2; exit 2; }
      ARCHIVE="$2"
      shift
      ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --quick, --skip-build, --benches-only, --archive FILE)" >&2
       exit 2 ;;
  esac
  shift
done
if [[ -n "$ARCHIVE" && "$ARCHIVE" != /* ]]; then ARCHIVE="$PWD/$ARCHIVE"; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
REPORT="$OUT/report.md"
FAILED=()
# Relative paths in the configs and --set overrides (data/demo/...) resolve against the cwd.
cd "$ROOT" || exit 1

export PATH="/usr/local/cuda/bin:$PATH"

log() { echo "[gpu_check] $*" | tee -a "$OUT/progress.log"; }
# stage NAME LOGFILE CMD...: runs CMD with output to LOGFILE, records the result. Commands (not
# shell functions) are limited to STAGE_TIMEOUT seconds (default 240; exit 124 when hit).
stage() {
  local name="$1" logf="$2"
  shift 2
  log "stage: $name"
  local t0=$SECONDS
  local limit=()
  declare -F "$1" >/dev/null || limit=(timeout -k 10 "${STAGE_TIMEOUT:-240}")
  # In the background and waited for, so that an INT/TERM reaches the trap at once (bash defers
  # traps while a foreground command runs) and the trap can stop the stage.
  ${limit[@]+"${limit[@]}"} "$@" >"$logf" 2>&1 &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  if [[ $rc -eq 0 ]]; then
    echo "| $name | pass | $((SECONDS - t0)) s | $(basename "$logf") |" >>"$OUT/stages.md"
  else
    echo "| $name | **FAIL (exit $rc)** | $((SECONDS - t0)) s | $(basename "$logf") |" >>"$OUT/stages.md"
    FAILED+=("$name")
    log "stage $name failed (exit $rc), see $logf"
  fi
  # The report (and archive) after every stage: a SIGKILL of the whole run still leaves them.
  if declare -F write_report >/dev/null; then write_report; fi
  return $rc
}
CHILD=""

: >"$OUT/stages.md"
: >"$OUT/progress.log"

# ---- machine ----
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "git: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "cpus: $(nproc)"
} >"$OUT/machine.txt"
if command -v nvidia-smi >/dev/null; then
  { nvidia-smi; echo; nvidia-smi -q; } >"$OUT/nvidia-smi.txt" 2>&1
else
  echo "nvidia-smi not found" >"$OUT/nvidia-smi.txt"
fi

# ---- build ----
build() {
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMTRAIN_CUDA=ON &&
    cmake --build "$BUILD_DIR" -j "$JOBS" --target llmtrain llmtrain_tests llmtrain_gpu_tests
}
if ! command -v ninja >/dev/null; then
  build() {
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DLLMTRAIN_CUDA=ON &&
      cmake --build "$BUILD_DIR" -j "$JOBS" --target llmtrain llmtrain_tests llmtrain_gpu_tests
  }
fi
if [[ $SKIP_BUILD -eq 1 ]]; then
  log "skipping the build (--skip-build): using $BUILD_DIR"
  if [[ ! -x "$BUILD_DIR/llmtrain" || ! -x "$BUILD_DIR/tests/llmtrain_gpu_tests" ]]; then
    echo "| configure + build | **FAIL (--skip-build but no build in $BUILD_DIR)** | 0 s | - |" >>"$OUT/stages.md"
    FAILED+=("build")
    { echo "# GPU check report"; echo; cat "$OUT/stages.md"; } >"$REPORT"
    if [[ -n "$ARCHIVE" ]]; then tar czf "$ARCHIVE" -C "$OUT" .; fi
    exit 1
  fi
elif ! stage "configure + build (CUDA, Release)" "$OUT/build.log" build; then
  {
    echo "# GPU check report"
    echo
    echo "Build failed; see build.log."
    echo
    echo "| stage | result | time | log |"
    echo "| --- | --- | --- | --- |"
    cat "$OUT/stages.md"
  } >"$REPORT"
  if [[ -n "$ARCHIVE" ]]; then tar czf "$ARCHIVE" -C "$OUT" .; fi
  exit 1
fi
LLMTRAIN="$BUILD_DIR/llmtrain"

# ---- report (also written on an early exit, through the EXIT trap) ----
write_report() {
{
  echo "# GPU check report"
  echo
  echo '```'
  cat "$OUT/machine.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null
  echo '```'
  echo
  echo "| stage | result | time | log |"
  echo "| --- | --- | --- | --- |"
  cat "$OUT/stages.md"
  echo
  echo "## GPU tests (summary)"
  echo '```'
  tail -n 4 "$OUT/gpu_tests.txt" 2>/dev/null
  echo '```'
  if grep -q "FAILED" "$OUT/gpu_tests.txt" 2>/dev/null; then
    echo
    echo "### Failures (first 200 lines)"
    echo '```'
    grep -n -A12 "FAILED" "$OUT/gpu_tests.txt" | head -200
    echo '```'
  fi
  echo
  echo "## CPU unit tests"
  echo '```'
  tail -n 3 "$OUT/ctest_unit.txt" 2>/dev/null
  echo '```'
  echo
  echo "## Forward+backward throughput (CUDA backend, random tokens, one micro-batch per step)"
  echo
  echo "| run | tokens/step | fwd+bwd ms | tokens/s | TFLOP/s | MFU | optim ms | full-step MFU | peak device GiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for f in "$OUT"/bench_fwdbwd_*.json; do
    [[ -f "$f" ]] || continue
    python3 - "$f" <<'EOF' 2>/dev/null || echo "| $(basename "$f" .json) | (no result) | | | | | | | |"
import json, sys, re
txt = open(sys.argv[1]).read()
m = re.search(r"\{.*\}", txt, re.S)
j = json.loads(m.group(0))
name = sys.argv[1].rsplit("/", 1)[-1][len("bench_fwdbwd_"):-5]
om = f"{j['optim_ms_median']:.2f}" if "optim_ms_median" in j else "-"
fm = f"{100*j['full_step_mfu']:.1f}%" if "full_step_mfu" in j else "-"
print(f"| {name} | {j['tokens_per_step']} | {j['step_ms_median']:.2f} | {j['tokens_per_s']:.0f} | "
      f"{j['achieved_tflops']:.1f} | {100*j['mfu']:.1f}% | {om} | {fm} | {j['peak_device_bytes_by_run']/2**30:.2f} |")
print(f"<!-- {name}: optimizer {j.get('optimizer', '?')} -->")
EOF
  done
  echo
  echo "MFU = tokens/s x (6N + 6LCT) FLOP/token / nominal dense bf16 peak of the detected GPU"
  echo "(H100 SXM / H200: 989 TFLOP/s). MFU is forward+backward only; full-step MFU adds the device"
  echo "optimizer update timed after each micro-step (no data loading, no gradient accumulation)."
  for f in "$OUT"/bench_train_*.txt; do
    [[ -f "$f" ]] || continue
    echo
    echo "## $(basename "$f" .txt) (full training step through the trainer)"
    echo '```'
    tail -n 30 "$f"
    echo '```'
  done
  echo
  echo "## Trainer on cuda, NCCL through the launcher"
  echo '```'
  grep -h -E "^(train_cuda|nccl_launch|step .*val loss)" "$OUT/train_cuda.txt" "$OUT/nccl_launch.txt" 2>/dev/null | tail -n 12
  echo '```'
  echo
  echo "## Optimizer step (bench optim --model table4)"
  echo
  cat "$OUT/bench_optim.txt" 2>/dev/null
  echo
  echo "## Symmetric Newton-Schulz split (bench optim --ns-symmetric both)"
  echo
  cat "$OUT/bench_optim_sym.txt" 2>/dev/null
  echo
  echo "## GPU microbenchmarks"
  echo
  cat "$OUT/bench_gpu.txt" 2>/dev/null
} >"$REPORT"
if [[ -n "$ARCHIVE" ]]; then  # OUT as one file (the device tool returns few files), logs not weights
  tar czf "$ARCHIVE" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.tmp' -C "$OUT" .
fi
}

trap 'write_report; log "report: $REPORT${ARCHIVE:+, archive: $ARCHIVE}"' EXIT
trap 'log "interrupted"; [[ -n "$CHILD" ]] && kill -TERM "$CHILD" 2>/dev/null; exit 130' INT TERM

if [[ $BENCHES_ONLY -eq 0 ]]; then
# ---- device tests ----
STAGE_TIMEOUT=300 stage "GPU tests (llmtrain_gpu_tests)" "$OUT/gpu_tests.txt" \
  "$BUILD_DIR/tests/llmtrain_gpu_tests" --durations yes
if [[ $QUICK -eq 0 ]]; then  # a second full pass of the device tests: skipped by --quick
  timeout -k 10 300 "$BUILD_DIR/tests/llmtrain_gpu_tests" --reporter junit --out "$OUT/gpu_tests.xml" >/dev/null 2>&1 || true
fi

# ---- CPU unit tests (quick) ----
STAGE_TIMEOUT=300 stage "CPU unit tests (ctest -L unit)" "$OUT/ctest_unit.txt" \
  ctest --test-dir "$BUILD_DIR" -L unit -j "$JOBS" --output-on-failure --timeout 120

# ---- the trainer on the cuda backend ----
# The demo config with one head (head size 64, which the attention kernels take), short: device
# optimizers (Muon + AdamW), checkpoints, and a resume from the middle that must end bitwise equal
# (deterministic kernels). Then the same run through `llmtrain launch` with LLMTRAIN_FORCE_COMM=1,
# so one GPU runs the NCCL communicator (bucketed all-reduce on its own stream, ZeRO-1 plan): a sum
# over one rank, so again bitwise the plain run.
TRAIN_SETS=(--set model.n_head=1 --set 'run.backend="cuda"' --set run.steps=40 --set run.checkpoint_every=20
  --set run.eval_every=20 --set run.sample_every=0 --set run.log_every=10)
train_cuda() {
  local W="$OUT/train_cuda"
  rm -rf "$W" && mkdir -p "$W" || return 1
  "$LLMTRAIN" train configs/demo-gpt2-tiny.json "${TRAIN_SETS[@]}" --set "run.dir=\"$W/full\"" || return 1
  mkdir -p "$W/resumed/ckpt" && cp -r "$W/full/ckpt/step_00000020" "$W/resumed/ckpt/" || return 1
  "$LLMTRAIN" train configs/demo-gpt2-tiny.json "${TRAIN_SETS[@]}" --set "run.dir=\"$W/resumed\"" \
    --resume "$W/resumed/ckpt/step_00000020" || return 1
  python3 tests/e2e/st_compare.py "$W/full/ckpt/step_00000040/model.safetensors" \
    "$W/resumed/ckpt/step_00000040/model.safetensors" 0 || { echo "resume is not bitwise"; return 1; }
  echo "train_cuda: 40 steps, resumed from step 20 bitwise equal"
}
nccl_launch() {
  local W="$OUT/train_cuda"
  [[ -f "$W/full/ckpt/step_00000040/model.safetensors" ]] || { echo "needs the train_cuda stage"; return 1; }
  for zero in 0 1; do
    LLMTRAIN_FORCE_COMM=1 "$LLMTRAIN" launch --standalone --nproc-per-node 1 -- train configs/demo-gpt2-tiny.json \
      "${TRAIN_SETS[@]}" --set run.zero=$zero --set run.grad_bucket_mb=0.05 --set "run.dir=\"$W/nccl_z$zero\"" \
      > "$W/nccl_z$zero.log" 2>&1 || { tail -n 40 "$W/nccl_z$zero.log"; return 1; }
    grep -q "rank 0/1 (nccl)" "$W/nccl_z$zero.log" || { tail -n 40 "$W/nccl_z$zero.log"; echo "not on nccl"; return 1; }
    python3 tests/e2e/st_compare.py "$W/full/ckpt/step_00000040/model.safetensors" \
      "$W/nccl_z$zero/ckpt/step_00000040/model.safetensors" 0 || { echo "NCCL zero=$zero differs"; return 1; }
    echo "nccl_launch: zero=$zero bitwise the single-process run"
  done
}
STAGE_TIMEOUT=300 stage "train on cuda: 40 steps + bitwise resume" "$OUT/train_cuda.txt" train_cuda
STAGE_TIMEOUT=300 stage "NCCL through llmtrain launch (world 1, LLMTRAIN_FORCE_COMM=1)" "$OUT/nccl_launch.txt" nccl_launch
fi  # BENCHES_ONLY

# ---- benchmarks ----
STAGE_TIMEOUT=120 stage "bench gpu (GEMM, copy, kernels)" "$OUT/bench_gpu.txt" "$LLMTRAIN" bench gpu
if [[ $QUICK -eq 0 ]]; then
# The RMNP paper's Table 4 sizes: preconditioning and optimizer-step time, GB/s and TFLOP/s.
STAGE_TIMEOUT=300 stage "bench optim (table4: muon, rmnp, adamw)" "$OUT/bench_optim.txt" \
  "$LLMTRAIN" bench optim --model table4 --optimizer muon,rmnp,adamw --steps 20 --warmup 3 --json "$OUT/bench_optim.json"
# Muon's Newton-Schulz with the symmetric split against the unsplit GEMMs, per size: the measurement
# that decides the default of "ns_symmetric" (docs/optimizers.md).
STAGE_TIMEOUT=300 stage "bench optim (table4: muon, ns_symmetric off vs on)" "$OUT/bench_optim_sym.txt" \
  "$LLMTRAIN" bench optim --model table4 --optimizer muon --ns-symmetric both --steps 20 --warmup 3 \
  --json "$OUT/bench_optim_sym.json"
fi

bench_fb() {  # name config [extra --set ...]
  local name="$1" cfg="$2"
  shift 2
  STAGE_TIMEOUT=120 stage "bench train --fwd-bwd-only $name" "$OUT/bench_fwdbwd_$name.json" \
    "$LLMTRAIN" bench train "$ROOT/$cfg" --fwd-bwd-only --steps 10 --warmup 3 "$@"
}
bench_full() {  # the trainer's full step (needs the trainer's device optimizer path and data)
  local name="$1" cfg="$2"
  shift 2
  STAGE_TIMEOUT=120 stage "bench train (full step) $name" "$OUT/bench_train_$name.txt" \
    "$LLMTRAIN" bench train "$ROOT/$cfg" --steps 10 --warmup 3 --set 'run.backend="cuda"' "$@"
}

# Tiny GPT-2-shaped model with head size 64 (the tiny presets have head size 32, which the CUDA
# attention kernels do not take): quick, works on any GPU.
bench_fb gpt2-tiny-hs64 configs/demo-gpt2-tiny.json --set model.n_head=1  # n_embd 64 / 1 head = HS 64
if [[ $QUICK -eq 0 ]]; then
  # GPT-2 124M at T=1024 up to the largest micro-batch that fits (B=64 is llm.c's anchor; by the
  # computed table of docs/perf.md B=128 needs ~53 GiB at recompute 0), then B=64 with recompute.
  for mb in 16 32 64 128; do
    bench_fb "gpt2-124m-B$mb" configs/paper/gpt2-small-owt-adamw.json --set "data.micro_batch=$mb"
  done
  for rc in 1 2; do
    bench_fb "gpt2-124m-B64-recompute$rc" configs/paper/gpt2-small-owt-adamw.json --set data.micro_batch=64 \
      --set "run.recompute=$rc"
  done
  bench_fb llama-130m-B64 configs/paper/llama-130m-c4-adamw.json
  bench_fb gpt2-medium-B16 configs/paper/gpt2-medium-owt-adamw.json --set data.micro_batch=16
  # Full training step through the trainer (data loading, device optimizers, logging), on the
  # bundled demo corpus (GPT-2 tokens), one micro-batch per step.
  bench_full gpt2-124m-B64 configs/paper/gpt2-small-owt-adamw.json --set data.micro_batch=64 \
    --set 'data.train="data/demo/demo_train_*.bin"' --set data.batch_tokens=65536
fi


if [[ ${#FAILED[@]} -gt 0 ]]; then
  log "failed stages: ${FAILED[*]}"
  exit 1
fi
log "all stages passed"
exit 0
