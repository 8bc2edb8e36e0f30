#!/bin/bash
# Faults on one host: nn_dist must end every one of them in a clean
# continuation or a prompt, clear failure, never a hang or lost work.
#   1. mid-epoch checkpoints (--checkpoint-every-steps): resuming from one
#      gives the same final bits as the run that never stopped (2 and 3 ranks);
#      a mid-epoch checkpoint on another rank count is refused in one line;
#   2. a stop signal (SIGUSR1 to mpirun, SIGTERM to one rank, SIGUSR1 to every
#      rank) -> checkpoint at the next step, exit 75; --resume auto -> the same
#      final bits as an uninterrupted run; the time from signal to exit;
#   3. SIGSTOP of one rank -> the job aborts through --collective-timeout (exit
#      3, one line naming the wait and, in shared memory, the stopped rank),
#      for each way of summing;
#   4. SIGKILL of one rank at 3 ranks -> the job ends naming the rank;
#      --resume auto finishes;
#   5. SIGKILL of rank 0 at random moments of a run that writes a checkpoint
#      every step (20 trials), and once inside a write for certain (the
#      test-only pause, see include/nn_dist/io/files.hpp): the newest valid
#      checkpoint always loads and the run continues;
#   6. a damaged or truncated newest checkpoint: --resume auto warns, names
#      it and takes the previous one; --resume of it is an error;
#   7. a disk that fills up under --checkpoint-dir (a small tmpfs): one error
#      line, exit 2, the checkpoints already written intact.
# Every wait is for an event (a file, a line, a process ending), polled, with
# a generous deadline that fails naming the event; nothing asserts how fast
# the machine is. Times are printed (TIME lines) for the record.
# Usage: fault_test.sh BUILD_DIR. Exit 77 (skipped) only for the parts that
# need root (the tmpfs), reported per part.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
NN="$BUILD/nn_dist"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
DEADLINE=300  # seconds: far beyond any event here, short of ctest's 900
WORK=$(mktemp -d)
# Kills process $1 and everything under it (mpirun, timeout's mpirun, ranks), by process id.
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -KILL "$1" 2>/dev/null
}
cleanup() {
  local child
  for child in $(pgrep -P $$); do kill_tree "$child"; done
  mountpoint -q "$WORK/small" 2>/dev/null && umount -l "$WORK/small"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

failures=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failures=$((failures + 1)); fi
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# Whether two checkpoints hold the same bits in /model and /optimizer.
same_bits() { /usr/bin/python3 "$(dirname "$0")/same_bits.py" "$1" "$2"; }

# ---- waiting for events
# wait_until WHAT COMMAND...: polls COMMAND every 20 ms until it succeeds (0);
# after DEADLINE seconds, one FAILED line naming WHAT (1).
wait_until() {
  local what=$1 end=$((SECONDS + DEADLINE))
  shift
  until "$@"; do
    if ((SECONDS >= end)); then
      echo "FAILED: $what: not within $DEADLINE s"
      failures=$((failures + 1))
      return 1
    fi
    sleep 0.02
  done
}
# mpirun in the foreground, under the same deadline.
mpi() {
  timeout -k 10 "$DEADLINE" "${MPIRUN[@]}" "$@"
  local code=$?
  if ((code == 124)); then echo "FAILED: mpirun $*: did not end within $DEADLINE s"; failures=$((failures + 1)); fi
  return $code
}
RANKS=()
# Sets RANKS to the rank PIDs of the job whose mpirun is $1, in rank order; true once all $2 have started.
have_ranks() {
  local pid r
  RANKS=($(for pid in $(pgrep -P "$1" -x nn_dist); do
    r=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [[ -n $r ]] && echo "$r $pid"
  done | sort -n | cut -d' ' -f2))
  ((${#RANKS[@]} == $2))
}
wait_ranks() { wait_until "the $2 ranks of mpirun $1 starting" have_ranks "$1" "$2"; }
# Whether background process $1 has ended (a zombie until `wait` reaps it).
ended() { [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z || ! -e /proc/$1 ]]; }
# Waits for background job (mpirun) $1 to end; past the deadline it and its
# ranks are killed and WHAT ($2) fails. Sets rc to its exit code.
wait_job() {
  wait_until "$2" ended "$1" || kill_tree "$1"
  wait "$1"
  rc=$?
}
# Whether a checkpoint is in folder $1.
has_checkpoint() { ls "$1"/ckpt-*.h5 >/dev/null 2>&1; }

"$BUILD/nn_datagen" --kind teacher --samples 24000 --features 64 --classes 10 --out "$WORK/d.h5" >/dev/null
common=(--data "$WORK/d.h5" --batch-size 16 --seed 3 --optimizer adam --lr 0.001)
train=("${common[@]}" --hidden 256,128)
slow=("${common[@]}" --hidden 1024,512)  # ~1 s epochs

# ---- 1. mid-epoch checkpoints
# Epoch 2's loss line of a run's output (not anchored: a terminal's progress
# line, "\r\e[K", may precede it), and equal lines that are not both missing.
loss_line() { grep -ao 'epoch 2/2  loss [0-9.]*  acc [0-9.]*' "$1"; }
same_text() { [[ -n $1 && $1 == "$2" ]]; }
for np in 2 3; do
  mpi -np $np "$NN" "${train[@]}" --epochs 2 --checkpoint-every-steps 100 --keep-checkpoints 1000 \
    --checkpoint-dir "$WORK/ref$np" >"$WORK/ref$np.out" 2>&1
  final=$(ls "$WORK/ref$np"/ckpt-*.h5 | tail -1)
  # A checkpoint in the middle of epoch 2: not a multiple of the steps per epoch.
  per_epoch=$(grep -o '[0-9]* steps/epoch' "$WORK/ref$np.out" | cut -d' ' -f1)
  mid=$(ls "$WORK/ref$np"/ckpt-*.h5 | awk -F'ckpt-|.h5' -v e="$per_epoch" '{s=$2+0} s>e && s%e {print; exit}')
  mkdir -p "$WORK/mid$np"
  cp "$mid" "$WORK/mid$np/"
  mpi -np $np "$NN" "${train[@]}" --epochs 2 --resume "$WORK/mid$np/$(basename "$mid")" \
    --checkpoint "$WORK/mid$np/final.h5" >"$WORK/mid$np.out" 2>&1
  check "$np ranks: resumed from $(basename "$mid") (mid-epoch 2 of $per_epoch steps): exit 0" test $? -eq 0
  check "$np ranks: mid-epoch resume gives the uninterrupted run's bits" same_bits "$final" "$WORK/mid$np/final.h5"
  check "$np ranks: the resumed epoch's loss line is the uninterrupted one" \
    same_text "$(loss_line "$WORK/mid$np.out")" "$(loss_line "$WORK/ref$np.out")"
done
mpi -np 2 "$NN" "${train[@]}" --epochs 2 --resume "$WORK/mid3/$(basename "$mid")" >"$WORK/other.out" 2>&1
rc=$?
check "mid-epoch checkpoint of 3 ranks on 2: exit 2 with one line" \
  test "$rc $(grep -c 'nn_dist: error: --resume .*middle of epoch 2.*3 ranks.*this run has 2 ranks' "$WORK/other.out")" = "2 1"

# ---- 2. stop signals
# Progress lines say where a run is: a signal sent after the first one of
# epoch 2 lands in that epoch, some steps in.
progress=(--progress lines --log-every-seconds 0.02)
# Each case: ranks, who is signalled (mpirun | rank:R | all), the signal.
stop_case() {
  local np=$1 target=$2 sig=$3 name="$1 ranks, SIG$3 to $2"
  local dir="$WORK/stop-$np-$target-$sig" ref="$WORK/stopref$np" job t0 took
  if [[ ! -d $ref ]]; then
    mpi -np $np "$NN" "${slow[@]}" --epochs 3 --checkpoint-dir "$ref" >/dev/null 2>&1
  fi
  "${MPIRUN[@]}" -np $np "$NN" "${slow[@]}" "${progress[@]}" --epochs 3 --checkpoint-dir "$dir" >"$dir.out" 2>&1 &
  job=$!
  if wait_until "$name: a progress line in epoch 2" grep -qs "^progress: epoch 2/3 " "$dir.out" &&
     wait_ranks "$job" "$np"; then
    t0=$(now)
    case $target in
      mpirun) kill -"$sig" "$job" ;;
      all) kill -"$sig" "${RANKS[@]}" ;;
      rank:*) kill -"$sig" "${RANKS[${target#rank:}]}" ;;
    esac
  else
    kill_tree "$job"
  fi
  wait_job "$job" "$name: the job's exit after the signal"
  took=$(since "${t0:-$(now)}")
  echo "TIME signal -> exit ($name): $took s; nn_dist says: $(grep -o 'exiting [0-9.]* s after the signal' "$dir.out")"
  check "$name: exit code 75" test "$rc" -eq 75
  check "$name: a mid-epoch checkpoint, named" grep -q "SIG$sig reached .* in epoch .*checkpoint .*ckpt-.* written" "$dir.out"
  [[ $rc -eq 75 ]] || tail -5 "$dir.out"
  mpi -np $np "$NN" "${slow[@]}" --epochs 3 --checkpoint-dir "$dir" --resume auto >"$dir.resumed" 2>&1
  check "$name: --resume auto finished" grep -q "epoch 3/3" "$dir.resumed"
  check "$name: final bits equal the uninterrupted run's" \
    same_bits "$(ls "$ref"/ckpt-*.h5 | tail -1)" "$(ls "$dir"/ckpt-*.h5 | tail -1)"
}
stop_case 2 mpirun USR1
stop_case 2 rank:1 TERM
stop_case 3 rank:1 TERM
stop_case 3 all USR1
stop_case 3 rank:2 INT

# ---- 3. a stopped rank
for mode in shared hierarchical mpi; do
  out="$WORK/stopped-$mode.out"
  "${MPIRUN[@]}" -np 3 "$NN" "${slow[@]}" "${progress[@]}" --epochs 1000 --allreduce "$mode" \
    --collective-timeout 4 >"$out" 2>&1 &
  job=$!
  # Training under way on every rank: rank 0's progress line needs every rank's sums.
  t0=
  if wait_until "SIGSTOP, $mode: a progress line" grep -qs "^progress: epoch 1/" "$out" && wait_ranks "$job" 3; then
    t0=$(now)
    kill -STOP "${RANKS[1]}"
  else
    kill_tree "$job"
  fi
  wait_job "$job" "SIGSTOP, $mode: the job's abort after rank 1 stopped (--collective-timeout 4)"
  took=$(since "${t0:-$(now)}")
  for pid in "${RANKS[@]}"; do  # the stopped rank, had mpirun left it (a reused id is not ours)
    grep -qF "$WORK/" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid"
  done
  echo "TIME SIGSTOP of rank 1 -> abort ($mode, --collective-timeout 4): $took s"
  check "SIGSTOP, $mode: exit code 3" test "$rc" -eq 3
  check "SIGSTOP, $mode: the line names the wait and the step" \
    grep -q "nn_dist: error: rank [02]: summing the gradients at step [0-9]*: .*--collective-timeout 4): aborting the job" \
    "$out"
  if [[ $mode != mpi ]]; then  # both spin on the node's shared memory, where the missing rank is seen
    check "SIGSTOP, $mode: the line names rank 1" grep -q "rank(s) 1 on this node" "$out"
  fi
  [[ $rc -eq 3 ]] || grep -v "^progress: " "$out"
done

# ---- 4. a dead rank
"${MPIRUN[@]}" -np 3 "$NN" "${slow[@]}" --epochs 4 --checkpoint-dir "$WORK/dead" >"$WORK/dead.out" 2>&1 &
job=$!
t0=
if wait_until "SIGKILL of rank 1: the first checkpoint" has_checkpoint "$WORK/dead" && wait_ranks "$job" 3; then
  t0=$(now)
  kill -KILL "${RANKS[1]}"
else
  kill_tree "$job"
fi
wait_job "$job" "SIGKILL of rank 1: the job's end"
took=$(since "${t0:-$(now)}")
echo "TIME SIGKILL of rank 1 -> job ends: $took s"
check "SIGKILL of rank 1: non-zero exit" test "$rc" -ne 0
check "SIGKILL of rank 1: the message names rank 1" grep -q "rank 1 .*exited on signal 9" "$WORK/dead.out"
mpi -np 3 "$NN" "${slow[@]}" --epochs 4 --checkpoint-dir "$WORK/dead" --resume auto >"$WORK/dead.resumed" 2>&1
check "SIGKILL of rank 1: --resume auto finished" \
  bash -c "grep -q 'resuming from' '$WORK/dead.resumed' && grep -q 'epoch 4/4' '$WORK/dead.resumed'"

# ---- 5. rank 0 killed while it writes checkpoints
# A big model and a checkpoint after every step: most of the time goes to
# writing. The kills come at random moments (a search for a moment that
# breaks a checkpoint), and once more inside a write for certain.
heavy=(--data "$WORK/d.h5" --hidden 1024,1024 --batch-size 4 --epochs 100000 --checkpoint-every-steps 1
       --keep-checkpoints 2 --checkpoint-dir "$WORK/kills")
trials=20 resumed=0 started=0
# Once rank 0 is dead, mpirun ends rank 1 (which writes nothing) at once
# rather than after its default second's grace (odls_base_sigkill_timeout).
for ((i = 1; i <= trials; i++)); do
  OMPI_MCA_odls_base_sigkill_timeout=0 "${MPIRUN[@]}" -np 2 "$NN" "${heavy[@]}" --resume auto >"$WORK/kill-$i.out" 2>&1 &
  job=$!
  if wait_until "kill trial $i: the run's start" grep -qs "resuming from\|no checkpoint yet" "$WORK/kill-$i.out" &&
     wait_until "kill trial $i: a checkpoint" has_checkpoint "$WORK/kills" && wait_ranks "$job" 2; then
    sleep "0.$((RANDOM % 90 + 10))"  # the random moment is the point of these trials
    kill -KILL "${RANKS[0]}" 2>/dev/null
  else
    kill_tree "$job"
  fi
  wait_job "$job" "kill trial $i: the job's end after rank 0 was killed"
  grep -q "resuming from" "$WORK/kill-$i.out" && resumed=$((resumed + 1))
  grep -q "no checkpoint yet" "$WORK/kill-$i.out" && started=$((started + 1))
done
newest() { ls "$WORK/kills"/ckpt-*.h5 | tail -1; }
# Inside a write: rank 0 pauses with the new checkpoint complete under its
# temporary name (NN_DIST_TEST_PAUSE_IN_WRITE); SIGKILL cannot be caught, so
# that file stays until the next run removes it, and the newest checkpoint is
# still the one before.
marker="$WORK/paused" tmp=
NN_DIST_TEST_PAUSE_IN_WRITE=$marker "${MPIRUN[@]}" -np 2 "$NN" "${heavy[@]}" --resume auto >"$WORK/kill-paused.out" 2>&1 &
job=$!
if wait_until "kill inside a write: rank 0 pausing in a checkpoint write" test -e "$marker" && wait_ranks "$job" 2; then
  tmp=$(head -1 "$marker") before=$(newest)
  check "kill inside a write: the temporary file is there while rank 0 writes" test -e "$tmp"
  kill -KILL "${RANKS[0]}"
else
  kill_tree "$job"
fi
wait_job "$job" "kill inside a write: the job's end after rank 0 was killed"
check "kill inside a write: the temporary file stays (SIGKILL cannot be caught)" test -n "$tmp" -a -e "$tmp"
check "kill inside a write: the newest checkpoint is the one before the write" test "$(newest)" = "${before:-}"
last=$(newest | sed 's/.*ckpt-0*\([0-9]*\)\.h5/\1/')
mpi -np 2 "$NN" "${heavy[@]}" --resume auto --max-steps $((last + 3)) >"$WORK/kill-final.out" 2>&1
rc=$?
echo "TIME $trials kills of rank 0 while writing: $resumed runs resumed from the newest checkpoint, $started started fresh;" \
  "the final run resumed at step $last"
check "kills during writes: every run after the first resumed" test "$resumed $started" = "$((trials - 1)) 1"
check "kills during writes: the last checkpoint loads and the run goes on (exit 0)" test "$rc" -eq 0
check "kills during writes: the run after the kill inside a write resumed from the one before" \
  grep -q "resuming from ${before:-?}" "$WORK/kill-final.out"
check "kills during writes: the run after it removed the killed write's temporary file" \
  grep -q "note: removed .*$(basename "${tmp:-?}")" "$WORK/kill-final.out"
check "kills during writes: no warning about an unreadable checkpoint" \
  bash -c "! grep -q 'skipping an unreadable' '$WORK'/kill-*.out"
check "kills during writes: no temporary file left" bash -c "! ls -A '$WORK/kills' | grep -q tmp"

# ---- 6. damaged checkpoints
mkdir -p "$WORK/bad"
mpi -np 2 "$NN" "${train[@]}" --epochs 1 --checkpoint-every-steps 300 --keep-checkpoints 5 \
  --checkpoint-dir "$WORK/bad" --quiet >/dev/null 2>&1
files=($(ls "$WORK/bad"/ckpt-*.h5))
newest=${files[-1]} previous=${files[-2]}
truncate -s -1000 "$newest"
cp "$newest" "$WORK/truncated.h5"
mpi -np 2 "$NN" "${train[@]}" --epochs 1 --checkpoint-dir "$WORK/bad" --resume auto >"$WORK/bad.out" 2>&1
check "truncated newest: --resume auto warns and names it" grep -q "warning: .*$(basename "$newest"): is truncated" "$WORK/bad.out"
check "truncated newest: --resume auto takes the previous one" grep -q "resuming from .*$(basename "$previous")" "$WORK/bad.out"
mpi -np 2 "$NN" "${train[@]}" --epochs 1 --resume "$WORK/truncated.h5" >"$WORK/bad2.out" 2>&1
check "truncated checkpoint given to --resume: exit 2, one line" \
  test "$? $(grep -c 'nn_dist: error: --resume .*truncated' "$WORK/bad2.out")" = "2 1"
printf '\x42' | dd of="$previous" bs=1 seek=$(($(stat -c %s "$previous") / 2)) conv=notrunc status=none
mpi -np 2 "$NN" "${train[@]}" --epochs 1 --resume "$previous" >"$WORK/bad3.out" 2>&1
check "one changed byte given to --resume: exit 2, the checksum named" \
  test "$? $(grep -c 'nn_dist: error: --resume .*damaged.*checksum' "$WORK/bad3.out")" = "2 1"

# ---- 7. a full disk under --checkpoint-dir
mkdir -p "$WORK/small"
if [[ $(id -u) -ne 0 ]] || ! mount -t tmpfs -o size=6m tmpfs "$WORK/small" 2>/dev/null; then
  echo "SKIPPED (part 7): mounting a small tmpfs needs root"
else
  # Checkpoints of ~1.6 MB, every 50 steps, 2 kept: the third new file does not fit beside the filler.
  head -c $((6 * 1024 * 1024 - 4 * 1024 * 1024)) /dev/zero >"$WORK/small/filler"
  mpi -np 2 "$NN" "${common[@]}" --hidden 1024,256 --epochs 3 --checkpoint-every-steps 50 \
    --keep-checkpoints 2 --checkpoint-dir "$WORK/small/ck" >"$WORK/full.out" 2>&1
  rc=$?
  check "full disk: exit 2" test "$rc" -eq 2
  check "full disk: one error line naming --checkpoint-dir and the cause" \
    test "$(grep -c 'nn_dist: error: --checkpoint-dir .*No space left on device' "$WORK/full.out")" -eq 1
  kept=($(ls "$WORK/small/ck"/ckpt-*.h5 2>/dev/null))
  check "full disk: the checkpoints written before are there" test "${#kept[@]}" -ge 1
  for f in "${kept[@]}"; do
    timeout -k 10 "$DEADLINE" "$NN" "${common[@]}" --hidden 1024,256 --epochs 3 --resume "$f" --max-steps 1 --quiet \
      >/dev/null 2>&1
    check "full disk: $(basename "$f") still loads" test $? -eq 0
  done
  check "full disk: no temporary file left" bash -c "! ls -A '$WORK/small/ck' | grep -q tmp"
  [[ $rc -eq 2 ]] || cat "$WORK/full.out"
fi

echo "$failures failed"
[[ $failures -eq 0 ]]
