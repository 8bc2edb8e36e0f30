#!/bin/bash
# A private SLURM (Debian's slurmctld/slurmd 22.05, munge) on emulated hosts
# made by hosts.sh: slurmctld and a slurmd on host 1, one slurmd on each
# further host, munged in the root namespace (its socket is a file every
# namespace sees). As root, without systemd; every daemon is stopped by PID.
#   slurm.sh up DIR N           start on hosts 1..N (created if missing); state, logs, config in DIR
#   slurm.sh down DIR           stop the daemons started in DIR
#   slurm.sh client DIR CMD...  run a client (sbatch, scontrol, sinfo, ...) on host 1
# The hosts' names and subnet follow NN_HOSTS_PREFIX and NN_HOSTS_SUBNET, as in hosts.sh.
set -euo pipefail
PREFIX=${NN_HOSTS_PREFIX:-nnh}
SUBNET=${NN_HOSTS_SUBNET:-10.231.7}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

write_conf() {  # DIR N
  local dir=$1 n=$2
  cat >"$dir/etc/slurm.conf" <<CONF
ClusterName=nndist
SlurmctldHost=${PREFIX}1($SUBNET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/d-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
PlugStackConfig=$dir/etc/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
CONF
  # CPUs=4 on 2 real cores (config_overrides): room for 2 x 2 and 4-task jobs.
  for i in $(seq 1 "$n"); do
    echo "NodeName=$PREFIX$i NodeAddr=$SUBNET.$i CPUs=4 RealMemory=2000 State=UNKNOWN" >>"$dir/etc/slurm.conf"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$dir/etc/slurm.conf"
  : >"$dir/etc/plugstack.conf"
  # Every node reads this one file, as on a cluster. Only where the emulated
  # hosts share /tmp (NN_HOSTS_SHARED_TMP=1) does each slurmd get a copy with a
  # PMIx folder of its own, or the nodes' PMIx folders would clash.
  for i in $(seq 1 "$n"); do
    mkdir -p "$dir/state/d-$PREFIX$i"
    if [[ ${NN_HOSTS_SHARED_TMP:-0} == 1 ]]; then
      mkdir -p "$dir/etc-$PREFIX$i" "$dir/pmix-$PREFIX$i"
      cp "$dir/etc/slurm.conf" "$dir/etc/plugstack.conf" "$dir/etc-$PREFIX$i/"
      echo "PMIxCliTmpDirBase=$dir/pmix-$PREFIX$i" >"$dir/etc-$PREFIX$i/mpi.conf"
    fi
  done
}

# The slurm.conf that node I's slurmd reads.
node_conf() {
  local dir=$1 i=$2
  if [[ -d $dir/etc-$PREFIX$i ]]; then echo "$dir/etc-$PREFIX$i/slurm.conf"; else echo "$dir/etc/slurm.conf"; fi
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  local dir=$1 n=$2
  mkdir -p "$dir"/{etc,state/ctld,run,log,munge}
  chmod 755 "$dir/munge"
  ip netns list | awk '{print $1}' | grep -qx "${PREFIX}$n" || "$HERE/hosts.sh" up "$n"
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  write_conf "$dir" "$n"
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  SLURM_CONF="$dir/etc/slurm.conf" "$HERE/hosts.sh" run "${PREFIX}1" slurmctld -i
  for i in $(seq 1 "$n"); do
    SLURM_CONF=$(node_conf "$dir" "$i") "$HERE/hosts.sh" run "$PREFIX$i" slurmd -N "$PREFIX$i"
  done
  local deadline=$((SECONDS + 60))
  while true; do
    local idle
    idle=$(client "$dir" timeout 3 sinfo -h -N -o %T 2>/dev/null | grep -c idle || true)
    [[ ${idle:-0} -ge $n ]] && break
    if ((SECONDS > deadline)) || ! alive "$dir/run/slurmctld.pid"; then
      echo "slurm.sh: the nodes did not become idle; see $dir/log" >&2
      return 1
    fi
    sleep 0.3
  done
}

stop_pid() {  # PIDFILE NAME: SIGTERM, up to 10 s, then SIGKILL
  local file=$1 name=$2 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$name"* ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local dir=$1
  for f in "$dir"/run/slurmd-*.pid; do stop_pid "$f" slurmd; done
  stop_pid "$dir/run/slurmctld.pid" slurmctld
  stop_pid "$dir/munge/munged.pid" munged
}

client() {
  local dir=$1
  shift
  SLURM_CONF="$dir/etc/slurm.conf" "$HERE/hosts.sh" run "${PREFIX}1" "$@"
}

case "${1:-}" in
  up) up "${2:?slurm.sh up DIR N}" "${3:?slurm.sh up DIR N}" ;;
  down) down "${2:?slurm.sh down DIR}" ;;
  client) shift; client "$@" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
