#!/usr/bin/env bash
# `llmtrain launch` as a supervisor: the rank variables and "[rank N]" prefixes; a worker exiting
# with code 3 brings the group down within seconds (a worker that ignores SIGTERM gets SIGKILL after
# the grace period) and the launcher exits 3 naming the rank; --max-restarts 1 restarts the group
# after a worker is killed and the training resumes to bitwise the uninterrupted weights; SIGINT to
# the launcher leaves no worker running; kill -9 of one rank fails the job, and relaunching with
# --resume auto (with sharded ZeRO-1 state and Muon) finishes with bitwise the uninterrupted
# weights; two launchers as two "nodes" on loopback, and ranks started by hand with srun's and
# mpirun's variables, train exactly like one launcher with two workers.
source "$(dirname "$0")/common.sh"
D="$WORK/data"; tiny_shards "$D" t 256
C="$WORK/base.json"; tiny_config "$C" "$D" "$WORK/unused"
COMMON=(--set run.threads=1 --set data.micro_batch=2 --set run.steps=40 --set run.eval_every=0)
FINAL=ckpt/step_00000040

# pids of every process whose parent is $1 (the launcher's workers).
children() { pgrep -P "$1" || true; }
# wait_lines FILE N PID: until FILE has N lines (fails if PID exits first).
wait_lines() {
  for _ in $(seq 1 1200); do
    if [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ]; then return 0; fi
    kill -0 "$3" 2>/dev/null || fail "process $3 ended before $1 had $2 lines"
    sleep 0.05
  done
  fail "timed out waiting for $2 lines in $1"
}
# all_gone PIDS...: none of them is alive (zombies of a dead parent are reaped by init quickly).
all_gone() {
  local p
  for _ in $(seq 1 50); do
    local alive=""
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  ps -o pid,pgid,stat,cmd -p "${alive// /,}" || true
  return 1
}

# ---- 1. environment, prefixes, and a worker that exits with code 3 ----
cat > "$WORK/worker.sh" <<'SH'
echo "env RANK=$RANK LOCAL_RANK=$LOCAL_RANK WORLD_SIZE=$WORLD_SIZE LOCAL_WORLD_SIZE=$LOCAL_WORLD_SIZE MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT"
echo $$ > "$PIDDIR/$RANK"
echo "to stderr from $RANK" >&2
if [ "$RANK" = 1 ]; then sleep 1; exit 3; fi
if [ "$RANK" = 2 ]; then trap '' TERM; fi  # ignores SIGTERM: only the SIGKILL after the grace period stops it
while true; do sleep 0.2; done
SH
export PIDDIR="$WORK/pids"; mkdir -p "$PIDDIR"
t0=$(date +%s.%N)
rc=0
"$LLMTRAIN" launch --standalone --nproc-per-node 3 --grace-period 2 --exec -- bash "$WORK/worker.sh" \
  > "$WORK/exit3.out" 2> "$WORK/exit3.err" || rc=$?
elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ "$rc" -eq 3 ] || { cat "$WORK/exit3.out" "$WORK/exit3.err"; fail "launcher exited $rc, expected the worker's 3"; }
grep -q "rank 1 exited with code 3" "$WORK/exit3.err" || { cat "$WORK/exit3.err"; fail "launcher did not name rank 1 and code 3"; }
for r in 0 1 2; do
  grep -qE "^\[rank $r\] env RANK=$r LOCAL_RANK=$r WORLD_SIZE=3 LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=[0-9]+$" \
    "$WORK/exit3.out" || { cat "$WORK/exit3.out"; fail "rank $r's variables or prefix are wrong"; }
  grep -q "^\[rank $r\] to stderr from $r$" "$WORK/exit3.err" || fail "rank $r's stderr is not prefixed"
done
all_gone $(cat "$PIDDIR"/*) || fail "workers still running after the launcher exited"
awk -v e="$elapsed" 'BEGIN { exit !(e < 8) }' || fail "the group took ${elapsed}s to go down (grace period 2s)"
echo "ok: exit code 3 of rank 1 -> launcher exit 3 in ${elapsed}s: $(grep 'rank 1 exited' "$WORK/exit3.err" | tail -1)"

# ---- 2. the uninterrupted 2-rank reference runs ----
REF="$WORK/ref"
"$LLMTRAIN" launch --standalone --nproc-per-node 2 -- train "$C" "${COMMON[@]}" --set run.dir=\"$REF\" \
  > "$REF.log" 2>&1 || { cat "$REF.log"; fail "2-rank reference run"; }
MUONZ=(--set 'optimizer.matrix={"type": "muon", "lr": 0.02}' --set run.zero=1)
REFZ="$WORK/refz"
"$LLMTRAIN" launch --standalone --nproc-per-node 2 -- train "$C" "${COMMON[@]}" "${MUONZ[@]}" \
  --set run.dir=\"$REFZ\" > "$REFZ.log" 2>&1 || { cat "$REFZ.log"; fail "2-rank ZeRO-1 Muon reference run"; }

# ---- 3. --max-restarts 1: rank 1 killed mid-run, the group restarts and resumes ----
R="$WORK/restart"
# (LLMTRAIN_FAULT: rank 1 SIGKILLs itself after step 10, in the first attempt only, so the kill
# lands mid-run however fast the machine is.)
rc=0
LLMTRAIN_FAULT=after_step:10:1 "$LLMTRAIN" launch --standalone --nproc-per-node 2 --max-restarts 1 -- train "$C" \
  "${COMMON[@]}" --set run.dir=\"$R\" > "$R.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$R.log"; fail "restarted job exited $rc"; }
grep -q "rank 1 was killed by SIGKILL" "$R.log" || { cat "$R.log"; fail "the launcher did not report the kill"; }
grep -q "restarting all workers (restart 1 of 1)" "$R.log" || { cat "$R.log"; fail "no restart"; }
grep -q "^\[rank 0\].*resumed from" "$R.log" || { cat "$R.log"; fail "the restarted workers did not resume"; }
"$PY" "$SRC/tests/e2e/st_compare.py" "$REF/$FINAL/model.safetensors" "$R/$FINAL/model.safetensors" 0 > /dev/null \
  || fail "weights after a restart differ from the uninterrupted run"
echo "ok: --max-restarts 1 resumed after rank 1 was killed at step >= 10; final weights bitwise equal"

# ---- 4. SIGINT to the launcher stops every worker ----
R="$WORK/sigint"
"$LLMTRAIN" launch --standalone --nproc-per-node 2 -- train "$C" "${COMMON[@]}" --set run.steps=100000 \
  --set run.dir=\"$R\" > "$R.log" 2>&1 &
lp=$!
wait_lines "$R/metrics.jsonl" 2 $lp
workers=$(children $lp)
[ "$(echo $workers | wc -w)" -eq 2 ] || fail "expected 2 workers, found: $workers"
t0=$(date +%s.%N)
kill -INT $lp
rc=0; wait $lp || rc=$?
elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ "$rc" -eq 130 ] || { cat "$R.log"; fail "launcher exited $rc after SIGINT, expected 130"; }
all_gone $workers || fail "workers still running after SIGINT to the launcher"
for p in $workers; do
  [ -z "$(pgrep -g "$p" || true)" ] || fail "processes left in worker group $p"
done
grep -q "received SIGINT" "$R.log" || fail "launcher did not report SIGINT"
echo "ok: SIGINT stopped the launcher (exit 130) and both workers in ${elapsed}s"

# ---- 5. kill -9 of one rank, no restarts: the job fails naming it; a relaunch resumes exactly ----
R="$WORK/relaunch"
rc=0
LLMTRAIN_FAULT=after_step:$(( (RANDOM % 20) + 6 )):1 "$LLMTRAIN" launch --standalone --nproc-per-node 2 -- train "$C" \
  "${COMMON[@]}" "${MUONZ[@]}" --set run.dir=\"$R\" > "$R.log" 2>&1 || rc=$?
[ "$rc" -eq 137 ] || { cat "$R.log"; fail "launcher exited $rc after kill -9 of rank 1, expected 137"; }
grep -q "llmtrain launch: rank 1 was killed by SIGKILL (exit code 137)" "$R.log" || { cat "$R.log"; fail "failure not named"; }
killed_at=$(wc -l < "$R/metrics.jsonl")
"$LLMTRAIN" launch --standalone --nproc-per-node 2 -- train "$C" "${COMMON[@]}" "${MUONZ[@]}" \
  --set run.dir=\"$R\" --resume auto > "$R.2.log" 2>&1 || { cat "$R.2.log"; fail "relaunch"; }
grep -q "resumed from" "$R.2.log" || fail "the relaunch did not resume"
"$PY" "$SRC/tests/e2e/st_compare.py" "$REFZ/$FINAL/model.safetensors" "$R/$FINAL/model.safetensors" 0 > /dev/null \
  || fail "weights after kill -9 at step ~$killed_at and relaunch differ from the uninterrupted run"
for r in 0 1; do
  "$PY" "$SRC/tests/e2e/st_compare.py" "$REFZ/$FINAL/optimizer_rank$r.safetensors" "$R/$FINAL/optimizer_rank$r.safetensors" 0 > /dev/null \
    || fail "rank $r's optimizer shard differs after the relaunch"
done
echo "ok: kill -9 of rank 1 at step ~$killed_at (ZeRO-1, Muon) -> exit 137; relaunch resumed, bitwise equal"

# ---- 6. two launchers as two nodes on loopback ----
R="$WORK/nodes"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for n in 0 1; do
  "$LLMTRAIN" launch --nnodes 2 --node-rank $n --master-addr 127.0.0.1 --master-port "$port" \
    --nproc-per-node 1 -- train "$C" "${COMMON[@]}" --set run.dir=\"$R\" > "$R.$n.log" 2>&1 &
  eval "node$n=$!"
done
rc0=0; wait $node0 || rc0=$?
rc1=0; wait $node1 || rc1=$?
[ "$rc0$rc1" = 00 ] || { cat "$R.0.log" "$R.1.log"; fail "two-node job exited $rc0/$rc1"; }
grep -q "^\[rank 1\]" "$R.1.log" || fail "node 1 did not run rank 1"
"$PY" "$SRC/tests/e2e/st_compare.py" "$REF/$FINAL/model.safetensors" "$R/$FINAL/model.safetensors" 0 > /dev/null || fail "two nodes x 1 differs from one node x 2"
echo "ok: --nnodes 2 on loopback equals --nproc-per-node 2 bitwise"

# ---- 7. ranks from srun's and mpirun's variables, no launcher ----
for kind in slurm ompi; do
  R="$WORK/$kind"
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pids=()
  for r in 0 1; do
    if [ $kind = slurm ]; then
      vars=(SLURM_PROCID=$r SLURM_STEP_NUM_TASKS=2 SLURM_LOCALID=$r SLURM_NODEID=0 SLURM_STEP_TASKS_PER_NODE=2
            SLURM_STEP_NODELIST=localhost MASTER_ADDR=127.0.0.1 MASTER_PORT=$port)
    else
      vars=(OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_RANK=$r
            OMPI_COMM_WORLD_LOCAL_SIZE=2 MASTER_PORT=$port)
    fi
    env -u RANK -u WORLD_SIZE -u LLMTRAIN_STORE "${vars[@]}" "$LLMTRAIN" train "$C" "${COMMON[@]}" \
      --set run.dir=\"$R\" > "$R.$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$R".*.log; fail "$kind: a rank failed"; }; done
  grep -q "rank 1/2 (gloo)" "$R.1.log" || { cat "$R.1.log"; fail "$kind: rank 1 did not join a world of 2"; }
  "$PY" "$SRC/tests/e2e/st_compare.py" "$REF/$FINAL/model.safetensors" "$R/$FINAL/model.safetensors" 0 > /dev/null || fail "$kind: weights differ from the launcher's run"
  echo "ok: ranks from $kind variables train bitwise like the launcher's"
done
echo "launch: all cases passed"
