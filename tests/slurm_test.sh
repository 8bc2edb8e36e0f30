#!/bin/bash
# cluster/train.sbatch and cluster/sweep.sbatch on a real scheduler: a private
# SLURM (cluster/emulated/slurm.sh) with one slurmd in each of two emulated
# hosts, so the jobs are real 2-node jobs.
#   1. -N 2 --ntasks-per-node 2 through srun: the hierarchical sum over 2
#      nodes, 2 epochs, numbered checkpoints in --checkpoint-dir;
#   2. the same through mpirun (NN_LAUNCHER=mpirun) with --epochs 4: it
#      continues from job 1's newest checkpoint (--resume auto);
#   3. a job requeued while it runs continues from its newest checkpoint;
#      a 4-task job on one node: shared memory;
#   4. preemption: a job signalled mid-epoch (scancel --signal=USR1, or
#      --batch to the script) checkpoints, exits 75, requeues itself, resumes,
#      and ends with the bits of an uninterrupted job; with --reproducible, a
#      2-node job preempted and resubmitted on 1 node ends with the 2-node bits;
#   5. a job with a bad flag: state FAILED, exit code 2, one error line;
#   6. sweep.sbatch (scripts/scale.py through srun): weak at 1, 2 and 4 ranks
#      with nn_dist's arguments only, strong at 2 and 4 with scale.py's
#      options: runs.csv rows with profiles, and the plots.
# Each job is waited for by polling scontrol (COMPLETED and ExitCode 0:0).
# Every daemon is stopped by PID and every namespace removed on exit.
# Usage: slurm_test.sh BUILD_DIR. Exit 77 only without root or namespaces.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SLURM="$ROOT/cluster/emulated/slurm.sh"
export NN_HOSTS_PREFIX=nns NN_HOSTS_SUBNET=10.231.11
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 NN_DIST="$BUILD/nn_dist"

if [[ $(id -u) -ne 0 ]]; then echo "SKIPPED: a private SLURM on emulated hosts needs root"; exit 77; fi
for tool in ip unshare nsenter slurmctld slurmd sbatch munged; do
  command -v "$tool" >/dev/null || { echo "FAILED: $tool is missing (scripts/install_deps.sh installs it)"; exit 1; }
done
# Beside the build (the cluster's shared file system), not in /tmp: each emulated
# host has a /tmp and /dev/shm of its own, as a node does.
WORK=$(mktemp -d "$BUILD/slurm-test.XXXXXX")
chmod 755 "$WORK"  # munged wants every folder above its socket searchable
source "$ROOT/tests/cores.sh"
cores_begin "$WORK/cores"  # before SLURM starts: the jobs inherit the core size limit
cleanup() {
  local rc=$?
  "$SLURM" down "$WORK/slurm" >/dev/null 2>&1
  if ! cores_end; then echo "FAILED: a process dumped core (backtraces above)"; rc=1; fi
  "$ROOT/cluster/emulated/hosts.sh" down >/dev/null 2>&1
  if [[ -n ${NN_KEEP_WORK:-} ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
"$ROOT/cluster/emulated/hosts.sh" down >/dev/null 2>&1
mkdir -p "$WORK/slurm"
if ! "$ROOT/cluster/emulated/hosts.sh" up 2 >"$WORK/up.log" 2>&1; then
  echo "SKIPPED: cannot create network namespaces here: $(head -c 300 "$WORK/up.log")"; exit 77
fi
start=$SECONDS
if ! "$SLURM" up "$WORK/slurm" 2; then
  echo "FAILED: SLURM did not start"; tail -20 "$WORK"/slurm/log/*; exit 1
fi
echo "SLURM up: 2 nodes idle after $((SECONDS - start)) s"

failures=0
check() {
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failures=$((failures + 1)); fi
}
# The end of a preemption under srun, replayed deterministically: nn_dist has written its
# checkpoint and task 1 exited 75, then --kill-on-bad-exit terminated task 0 before it exited, so
# srun returned 143 (seen in a CI run). A stand-in srun replays that; train.sbatch must take it
# as 75 (resume), and must not when rank 0 never said its checkpoint was written.
mkdir -p "$WORK/fake-srun"
cat >"$WORK/fake-srun/srun" <<'SH'
#!/bin/bash
[[ -n ${FAKE_STOP_LINE:-} ]] && echo "nn_dist: SIGUSR1 reached 1 of 2 rank(s); stopped after step 9 (step 9 of 10 in epoch 1); checkpoint c/ckpt-0000000009.h5 written; exiting 0.01 s after the signal with code 75 (resume me: --resume auto or --resume FILE)"
echo "srun: error: n2: task 1: Exited with exit code 75" >&2
echo "srun: error: n1: task 0: Terminated" >&2
exit 143
SH
chmod +x "$WORK/fake-srun/srun"
replay() {  # replay [stop line shown]: train.sbatch's exit code outside SLURM (no requeue)
  (unset SLURM_JOB_ID; PATH="$WORK/fake-srun:$PATH" FAKE_STOP_LINE=${1:-} NN_DIST=/bin/true NN_DIST_SITE=/dev/null \
     bash "$ROOT/cluster/train.sbatch" --data x.h5 >"$WORK/replay.out" 2>&1)
  echo $?
}
check "srun ended the tasks after nn_dist's checkpointed stop: the job exits 75" test "$(replay shown)" = 75
check "srun ended the tasks with no checkpointed stop: the job exits 143" test "$(replay)" = 143

submit() {  # submit SBATCH-ARGS... -- SCRIPT ARGS...; sets $jid
  jid=$("$SLURM" client "$WORK/slurm" sbatch --parsable --output="$WORK/job-%j.out" "$@")
}
wait_job() {  # wait_job ID: sets $state and $exitcode
  local deadline=$((SECONDS + 240)) line began=$SECONDS
  while true; do
    line=$("$SLURM" client "$WORK/slurm" scontrol -o show job "$1" 2>/dev/null)
    state=$(grep -o 'JobState=[A-Z_]*' <<<"$line" | cut -d= -f2)
    exitcode=$(grep -o ' ExitCode=[0-9:]*' <<<"$line" | cut -d= -f2)
    case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    if ((SECONDS > deadline)); then state=STUCK; break; fi
    sleep 0.3
  done
  echo "job $1: $state, exit code $exitcode ($(grep -o ' NodeList=[^ ]*' <<<"$line" | head -1 | cut -c2-)," \
       "waited $((SECONDS - began)) s)"
}
out() { cat "$WORK/job-$jid.out"; }

"$BUILD/nn_datagen" --kind spirals --samples 2000 --out "$WORK/d.h5" >/dev/null
train=(--data "$WORK/d.h5" --hidden 16 --batch-size 25)

submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 2 --checkpoint-dir "$WORK/ck"
wait_job "$jid"
check "srun 2 x 2: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "srun 2 x 2: hierarchical over 2 nodes" grep -q "gradient sum: hierarchical (2 nodes x 2 rank(s)" <(out)
check "srun 2 x 2: 2 epochs" grep -q "epoch 2/2" <(out)
check "srun 2 x 2: numbered checkpoints" test -f "$WORK/ck/ckpt-0000000040.h5"
[[ $state == COMPLETED ]] || out

NN_LAUNCHER=mpirun submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 4 \
  --checkpoint-dir "$WORK/ck"
wait_job "$jid"
check "mpirun 2 x 2: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "mpirun 2 x 2: resumed from job 1's newest checkpoint" grep -q "resuming from .*ckpt-0000000040.h5" <(out)
check "mpirun 2 x 2: epochs 3 and 4 only" bash -c "grep -q 'epoch 4/4' '$WORK/job-$jid.out' && ! grep -q 'epoch 1/4' '$WORK/job-$jid.out'"
check "mpirun 2 x 2: hierarchical" grep -q "gradient sum: hierarchical (2 nodes x 2 rank(s)" <(out)
[[ $state == COMPLETED ]] || out

# A requeued job waits 120 s (its BeginTime) before SLURM starts it again, so
# that its first run has ended on every node. The tests start it at once, but
# only after that event: no step daemon of the job is left on any node (each
# slurmstepd keeps a socket <node>_<job>.<step> in its node's spool folder, and
# the PMIx plugin one named stepd.slurm.pmix.<job>.<step>). Started while they
# lived, the second run's steps could not start (their PMIx sockets were taken).
first_run_gone() {  # first_run_gone JOB: waits up to 60 s; 1 (naming what is left) if it did not end
  local deadline=$((SECONDS + 60)) left
  while true; do
    left=$(cd "$WORK/slurm/state" && ls -d d-*/*_"$1".* d-*/stepd.slurm.pmix."$1".* 2>/dev/null | tr '\n' ' ')
    if [[ -z $left ]]; then
      # slurmd refuses a job whose credential is not newer than the kill of its
      # first run ("already killed, do not launch"), in whole seconds: start it
      # in a later second than the one that saw the first run gone.
      local now
      now=$(date +%s)
      while (($(date +%s) <= now)); do sleep 0.05; done
      return 0
    fi
    if ((SECONDS > deadline)); then
      echo "job $1: its first run's step daemons did not end within 60 s: $left"
      return 1
    fi
    sleep 0.1
  done
}
start_requeued_now() {  # start_requeued_now JOB: once it is PENDING after its requeue and its first run is gone
  local deadline=$((SECONDS + 90)) line
  while ((SECONDS < deadline)); do
    line=$("$SLURM" client "$WORK/slurm" scontrol -o show job "$1")
    if grep -q ' Restarts=[1-9]' <<<"$line"; then
      case $(grep -o 'JobState=[A-Z_]*' <<<"$line") in
        JobState=PENDING)
          first_run_gone "$1" || return 1
          "$SLURM" client "$WORK/slurm" scontrol update JobId="$1" StartTime=now
          return ;;
        JobState=RUNNING|JobState=COMPLETED|JobState=FAILED) return ;;
      esac
    elif grep -q 'JobState=\(COMPLETED\|FAILED\|CANCELLED\)' <<<"$line"; then
      return  # it ended without requeueing: the checks below say so
    fi
    sleep 0.1
  done
  echo "job $1: not requeued within 90 s"
}

# Requeued while it runs: SLURM stops it (SIGTERM) and starts it again, and it
# continues from its newest checkpoint (the output file is appended to).
submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 40 --checkpoint-dir "$WORK/rq"
deadline=$((SECONDS + 60))
until ls "$WORK"/rq/ckpt-*.h5 >/dev/null 2>&1 || ((SECONDS > deadline)); do sleep 0.1; done
"$SLURM" client "$WORK/slurm" scontrol requeue "$jid"
start_requeued_now "$jid"
wait_job "$jid"
check "requeued: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "requeued: restarted once and resumed from a checkpoint" \
  bash -c "grep -q 'restart 1' '$WORK/job-$jid.out' && grep -q 'resuming from' '$WORK/job-$jid.out'"
check "requeued: finished all 40 epochs" grep -q "epoch 40/40" <(out)
[[ $state == COMPLETED ]] || out

# Preemption: a running job is signalled mid-epoch (USR1), checkpoints, exits
# 75, requeues itself and continues; its final bits equal an uninterrupted job's.
#   srun:   scancel --signal=USR1 (the job's steps: every rank gets it);
#   mpirun: scancel --batch --signal=USR1 (the batch script, as --signal=B:USR1@120
#           does before a time limit; the script passes it to mpirun, which forwards it).
last_checkpoint() { ls "$1"/ckpt-*.h5 | tail -1; }
"$BUILD/nn_datagen" --kind teacher --samples 24000 --features 64 --classes 10 --out "$WORK/t.h5" >/dev/null
# 1500 steps per epoch at 2 ranks; a numbered checkpoint every 250 steps says how far a job is.
slow=(--data "$WORK/t.h5" --hidden 256,128 --batch-size 8 --optimizer adam --lr 0.001 --epochs 3
      --checkpoint-every-steps 250)
newest_step() {  # the global step of DIR's newest checkpoint (0 if none)
  local f
  f=$(ls "$1"/ckpt-*.h5 2>/dev/null | tail -1)
  [[ -n $f ]] && echo $((10#$(basename "$f" .h5 | cut -d- -f2))) || echo 0
}
submit -N 2 --ntasks-per-node 1 "$ROOT/cluster/train.sbatch" "${slow[@]}" --checkpoint-dir "$WORK/pre-ref"
wait_job "$jid"
check "preemption reference: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
for launcher in srun mpirun; do
  dir="$WORK/pre-$launcher"
  # Emulated hosts share this machine's cores: binding each host's rank to "its" core 0 would stack them.
  NN_LAUNCHER=$launcher NN_MPIRUN_BIND="--bind-to none" submit -N 2 --ntasks-per-node 1 "$ROOT/cluster/train.sbatch" \
    "${slow[@]}" --checkpoint-dir "$dir"
  # Signalled once it is past step 1750: mid-epoch 2, with 2750 steps left.
  deadline=$((SECONDS + 120))
  until (($(newest_step "$dir") >= 1750)) || ((SECONDS > deadline)); do sleep 0.05; done
  (($(newest_step "$dir") >= 1750)) || echo "job $jid: no checkpoint past step 1750 within 120 s"
  if [[ $launcher == srun ]]; then
    "$SLURM" client "$WORK/slurm" scancel --signal=USR1 "$jid"
  else
    "$SLURM" client "$WORK/slurm" scancel --batch --signal=USR1 "$jid"
  fi
  start_requeued_now "$jid"
  wait_job "$jid"
  check "preempted ($launcher): COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
  check "preempted ($launcher): checkpointed mid-epoch on SIGUSR1 and exited 75" \
    grep -q "nn_dist: SIGUSR1 reached .* in epoch .* written; exiting .* with code 75" <(out)
  check "preempted ($launcher): requeued itself" grep -q "requeueing job $jid" <(out)
  check "preempted ($launcher): restarted and resumed from the checkpoint" \
    bash -c "grep -q 'restart 1' '$WORK/job-$jid.out' && grep -q 'resuming from' '$WORK/job-$jid.out'"
  check "preempted ($launcher): finished" grep -q "epoch 3/3" <(out)
  check "preempted ($launcher): final bits equal the uninterrupted job's" \
    /usr/bin/python3 "$ROOT/tests/same_bits.py" "$(last_checkpoint "$WORK/pre-ref")" "$(last_checkpoint "$dir")"
  [[ $state == COMPLETED ]] || out
done

# --reproducible: a 2-node job preempted mid-epoch (USR1, NN_REQUEUE=0: it checkpoints and ends with
# 75) and resubmitted on 1 node continues through --resume auto, and ends with the bits of an
# uninterrupted 2-node job.
repro=(--data "$WORK/t.h5" --hidden 256,128 --global-batch-size 16 --block-size 8 --reproducible --optimizer adam
       --lr 0.001 --epochs 2 --checkpoint-every-steps 250)
submit -N 2 --ntasks-per-node 1 "$ROOT/cluster/train.sbatch" "${repro[@]}" --checkpoint-dir "$WORK/repro-ref"
wait_job "$jid"
check "--reproducible reference (2 nodes): COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
NN_REQUEUE=0 submit -N 2 --ntasks-per-node 1 "$ROOT/cluster/train.sbatch" "${repro[@]}" --checkpoint-dir "$WORK/repro"
deadline=$((SECONDS + 120))
until (($(newest_step "$WORK/repro") >= 500)) || ((SECONDS > deadline)); do sleep 0.05; done
(($(newest_step "$WORK/repro") >= 500)) || echo "job $jid: no checkpoint past step 500 within 120 s"
"$SLURM" client "$WORK/slurm" scancel --signal=USR1 "$jid"
wait_job "$jid"
check "--reproducible on 2 nodes: checkpointed mid-epoch on SIGUSR1 and ended with 75" \
  bash -c "[[ '$exitcode' == 75:0 ]] && grep -q 'nn_dist: SIGUSR1 reached .* in epoch [12]).* written' '$WORK/job-$jid.out'"
submit -N 1 -n 1 "$ROOT/cluster/train.sbatch" "${repro[@]}" --checkpoint-dir "$WORK/repro"
wait_job "$jid"
check "--reproducible resubmitted on 1 node: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "--reproducible resubmitted on 1 node: resumed mid-epoch, at 1 rank" \
  bash -c "grep -q 'resuming from' '$WORK/job-$jid.out' && grep -q 'nn_dist: 1 rank(s)' '$WORK/job-$jid.out'"
check "--reproducible: 2 nodes preempted, then 1 node = 2 nodes uninterrupted, bit for bit" \
  /usr/bin/python3 "$ROOT/tests/same_bits.py" "$(last_checkpoint "$WORK/repro-ref")" "$(last_checkpoint "$WORK/repro")"
[[ $state == COMPLETED ]] || out

submit -N 1 -n 4 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 1
wait_job "$jid"
check "4 tasks on one node: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "4 tasks on one node: shared memory" grep -q "gradient sum: shared (1 node" <(out)

# MPI_Init is a barrier across nodes only if SLURM's PMIx fence is one. The
# probe's ranks on node 1 enter MPI_Init a second late; no rank may leave it
# before they entered. train.sbatch fences on the ring; the tree (the default
# for fences without data) is node-local in Slurm 22.05 when a step has fewer
# nodes than TreeWidth, which let a rank be sent a message before it could
# take one: the segmentation fault at start-up on the second node.
NN_DIST="$BUILD/tests/mpi_init_barrier" submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/train.sbatch"
wait_job "$jid"
check "MPI_Init barrier across 2 nodes under train.sbatch: held" grep -q "mpi_init_barrier: barrier held" <(out)
[[ $state == COMPLETED ]] || out
# The same probe with the tree fence shows what the ring avoids (a note, not a
# check: a Slurm whose tree spans the nodes holds the barrier there too).
NN_DIST="$BUILD/tests/mpi_init_barrier" SLURM_PMIX_FENCE=tree submit -N 2 --ntasks-per-node 2 \
  "$ROOT/cluster/train.sbatch"
wait_job "$jid"
echo "note: with SLURM_PMIX_FENCE=tree: $(grep -o 'mpi_init_barrier: barrier [a-z]*' <(out) || echo 'no result')"

# A step that cannot start on a node: srun exits 0 (Slurm 22.05), so
# train.sbatch itself must fail the job. The PMIx plugin's socket for the job's
# first step is taken on node 2 before the job starts.
submit --hold -N 2 --ntasks-per-node 1 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 1
touch "$WORK/slurm/state/d-nns2/stepd.slurm.pmix.$jid.0"
"$SLURM" client "$WORK/slurm" scontrol release "$jid"
wait_job "$jid"
# srun's own exit code is 0 or that of the task it then killed (137), as the race goes.
check "launch failure: FAILED, exit code not 0" bash -c "[[ $state == FAILED && $exitcode != 0:0 ]]"
check "launch failure: train.sbatch says nn_dist did not start" \
  grep -q "train.sbatch: srun could not start nn_dist on every node" <(out)
rm -f "$WORK/slurm/state/d-nns2/stepd.slurm.pmix.$jid.0"

# mpirun binds what SLURM allocated. The nodes declare 4 CPUs on this machine's
# 2 cores (as an SMT node counts hardware threads): 4 ranks on one node do not
# fit on cores or threads, so they run unbound (mpirun refused to bind them).
NN_LAUNCHER=mpirun submit -N 1 -n 4 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 1
wait_job "$jid"
check "mpirun, 4 ranks on a node of 2 cores that declares 4 CPUs: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "mpirun, 4 ranks on 2 cores: not bound, and says why" \
  grep -q "train.sbatch: mpirun --bind-to none: no binding: 4 rank(s) on 2 CPU(s) of 2 core(s)" <(out)
[[ $state == COMPLETED ]] || out
# 2 ranks on a node whose 2 CPUs are the hardware threads of one core (a fake
# topology, read where train.sbatch reads sysfs): one rank per thread.
fake="$WORK/sysfs-cpu"
for cpu in 0 1; do
  mkdir -p "$fake/cpu$cpu/topology"
  echo 0 >"$fake/cpu$cpu/topology/physical_package_id"
  echo 0 >"$fake/cpu$cpu/topology/core_id"
done
NN_SYSFS_CPU=$fake NN_LAUNCHER=mpirun submit -N 1 -n 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 1
wait_job "$jid"
check "mpirun, 2 ranks on 2 threads of 1 core: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "mpirun, 2 ranks on 2 threads of 1 core: one rank per hardware thread" \
  grep -q "train.sbatch: mpirun --map-by hwthread --bind-to hwthread: one rank per hardware thread" <(out)
[[ $state == COMPLETED ]] || out
NN_LAUNCHER=mpirun submit -N 1 -n 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 1
wait_job "$jid"
check "mpirun, 2 ranks on 2 cores: one rank per core" \
  grep -q "train.sbatch: mpirun --map-by core --bind-to core: one rank per core" <(out)

submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/train.sbatch" "${train[@]}" --epochs 0
wait_job "$jid"
check "bad flag: FAILED with exit code 2" test "$state $exitcode" = "FAILED 2:0"
check "bad flag: one error line" test "$(grep -c 'nn_dist: error: --epochs' "$WORK/job-$jid.out")" -eq 1

# runs.csv as "mode ranks global_batch batch_per_rank exit_code launcher has_profile" lines, one per row.
runs_csv() {
  /usr/bin/python3 -c 'import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    print(r["mode"], r["ranks"], r["global_batch"], r["batch_per_rank"], r["exit_code"], r["launcher"],
          int(bool(r["step_ms"])))' "$1" 2>&1
}
# Only nn_dist's arguments (no --): weak scaling at their --batch-size, with NN_SWEEP_RANKS and NN_SWEEP_OUT.
NN_SWEEP_RANKS="1 2 4" NN_SWEEP_OUT="$WORK/sweep" submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/sweep.sbatch" \
  "${train[@]}" --epochs 1 --max-steps 30 --warmup-steps 5
wait_job "$jid"
check "sweep: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "sweep: runs.csv, weak at 1, 2 and 4 ranks through srun, with profiles" \
  test "$(runs_csv "$WORK/sweep/runs.csv")" = $'weak 1 25 25 0 srun 1\nweak 2 50 25 0 srun 1\nweak 4 100 25 0 srun 1'
check "sweep: the plots" test -s "$WORK/sweep/throughput.png" -a -s "$WORK/sweep/efficiency.png" \
  -a -s "$WORK/sweep/breakdown.png" -a -s "$WORK/sweep/loss.png"
[[ $state == COMPLETED ]] || { out; cat "$WORK"/sweep/runs/*.log; }
# scale.py's options before --: strong scaling.
submit -N 2 --ntasks-per-node 2 "$ROOT/cluster/sweep.sbatch" --mode strong --ranks 2,4 --global-batch 100 \
  --out "$WORK/strong" -- --data "$WORK/d.h5" --hidden 16 --epochs 1 --max-steps 30 --warmup-steps 5
wait_job "$jid"
check "strong sweep: COMPLETED 0:0" test "$state $exitcode" = "COMPLETED 0:0"
check "strong sweep: global batch 100 at 2 and 4 ranks" \
  test "$(runs_csv "$WORK/strong/runs.csv")" = $'strong 2 100 50 0 srun 1\nstrong 4 100 25 0 srun 1'
[[ $state == COMPLETED ]] || { out; cat "$WORK"/strong/runs/*.log; }

echo "$failures failed ($((SECONDS - start)) s)"
[[ $failures -eq 0 ]]
