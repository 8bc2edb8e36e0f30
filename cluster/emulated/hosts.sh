#!/bin/bash
# Emulated hosts on one machine, for tests and experiments. Each host is a
# set of namespaces that live as long as the host: its own network (address,
# /etc/hosts, a private bridge in a "switch" namespace; no route leaves them
# and nothing is added to the root namespace), its own hostname (UTS) and its
# own mounts, with a private /tmp and /dev/shm as a real node has. The rest
# of the file system (the checkout, the build, the data: a cluster's shared
# file system) is the machine's, and so is a checkout under /tmp. Needs root.
#
#   hosts.sh up N            create hosts nnh1 .. nnhN (10.231.7.1 .. N)
#   hosts.sh down            kill what runs in them (by PID) and delete them
#   hosts.sh run HOST CMD..  run CMD on HOST (its hostname, network and mounts)
#   hosts.sh mpirun ARGS..   Open MPI's mpirun on nnh1, launching through
#                            netns-rsh; give --host nnh1:2,nnh2:2 or a hostfile
#   hosts.sh shape HOST RATE limit HOST's link to RATE (tc tbf, e.g. 1gbit)
#   hosts.sh unshape HOST    take the limit off again
#
# NN_HOSTS_PREFIX and NN_HOSTS_SUBNET change the names and the /24 used.
# NN_HOSTS_SHARED_TMP=1 at `up` leaves /tmp and /dev/shm shared by all hosts
# (the emulation before they were private; kept to reproduce what that did).
set -euo pipefail
PREFIX=${NN_HOSTS_PREFIX:-nnh}
SUBNET=${NN_HOSTS_SUBNET:-10.231.7}
SWITCH=${PREFIX}sw
# Each host's mount and UTS namespaces are held by a process that sleeps in
# them (and in the host's network namespace); its PID is kept here.
HOLDERS=/run/nn-hosts
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"  # the checkout, which every host sees

hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}[0-9]+$" || true; }

# The host's mount and UTS namespaces: its hostname, its /etc/hosts, and a
# private /tmp and /dev/shm (tmpfs, as on a node). Mounts made on the machine
# later still reach the host (slave propagation); the host's do not leave it.
make_host_namespaces() {
  local ns=$1
  mkdir -p "$HOLDERS" "$HOLDERS/$ns.tmp"
  nsenter --net="/run/netns/$ns" unshare --mount --uts --propagation slave /bin/sh -ec '
    hostname "$1"
    mount --bind "/etc/netns/$1/hosts" /etc/hosts
    if [ "$2" != 1 ]; then
      # A checkout under /tmp (git clone . /tmp/fresh) stays in sight: the
      # machine'"'"'s /tmp is kept at $4 and the checkout bound back in place.
      case "$3" in /tmp/?*) mount --bind /tmp "$4" ;; esac
      mount -t tmpfs -o mode=1777 "tmp-$1" /tmp
      case "$3" in /tmp/?*) mkdir -p "$3"; mount --bind "$4${3#/tmp}" "$3" ;; esac
      mount -t tmpfs -o mode=1777,nosuid,nodev "shm-$1" /dev/shm
    fi
    exec sleep infinity' host "$ns" "${NN_HOSTS_SHARED_TMP:-0}" "$ROOT" "$HOLDERS/$ns.tmp" </dev/null >/dev/null 2>&1 &
  echo $! >"$HOLDERS/$ns.pid"
  # Ready when the holder sleeps with the host's hostname.
  local deadline=$((SECONDS + 10))
  until [[ $(cat "/proc/$!/comm" 2>/dev/null) == sleep ]]; do
    if ((SECONDS > deadline)) || ! kill -0 $! 2>/dev/null; then
      echo "hosts.sh: could not make the mount namespace of $ns" >&2
      return 1
    fi
    sleep 0.01
  done
}

up() {
  local n=$1
  ip netns add "$SWITCH"
  ip -n "$SWITCH" link set lo up
  ip -n "$SWITCH" link add br0 type bridge
  ip -n "$SWITCH" link set br0 up
  for i in $(seq 1 "$n"); do
    local ns=$PREFIX$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name p$i netns "$SWITCH"
    ip -n "$SWITCH" link set p$i master br0
    ip -n "$SWITCH" link set p$i up
    ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    # A host that vanishes while mpirun is sending to it (e.g. killing the
    # job) is given up after ~13 s of retransmissions, not the default ~15 min.
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2=5
    mkdir -p "/etc/netns/$ns"
    { echo "127.0.0.1 localhost"; for j in $(seq 1 "$n"); do echo "$SUBNET.$j $PREFIX$j"; done; } >"/etc/netns/$ns/hosts"
    make_host_namespaces "$ns"
  done
}

down() {
  for ns in $(hosts) "$SWITCH"; do
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  # The holders were killed with the rest: their namespaces (and tmpfs) are gone.
  rm -f "$HOLDERS/$PREFIX"[0-9]*.pid
  rmdir "$HOLDERS/$PREFIX"[0-9]*.tmp 2>/dev/null || true
  rmdir /etc/netns 2>/dev/null || true
}

# Runs a command on a host: in its network, mount and UTS namespaces. Not
# `ip netns exec`, which would give every command a mount namespace of its own
# (and a /sys in which slurmd finds no cgroup file system).
run() {
  local host=$1
  shift
  local holder
  holder=$(cat "$HOLDERS/$host.pid" 2>/dev/null) && [[ -r /proc/$holder/ns/mnt ]] ||
    { echo "hosts.sh: no host $host (hosts.sh up first)" >&2; exit 2; }
  exec nsenter --target "$holder" --net --mount --uts "$@"
}

# tbf's bucket: 0.5 ms of the rate, at least 32 KB. Both directions of a link
# reach the rate only when the bucket outlasts the kernel's wakeups: at 2 Gbit/s
# a 32 KB bucket (128 us) gave 2 MiB each way at once in 19.1 ms, the time of
# one way and back, and 125 KB gave 8.8 ms; a bucket near a message's size
# lets it pass faster than the rate (1 MB: one way and back 13.8 ms, not 17).
tbf_burst() {
  local r=${1,,} n unit
  [[ $r =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || { echo "hosts.sh shape: rate $1: want e.g. 300mbit or 2gbit" >&2; exit 2; }
  n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
  case $unit in kbit) n=$((n * 1000)) ;; mbit) n=$((n * 1000000)) ;; gbit) n=$((n * 1000000000)) ;; esac
  local bytes=$((n / 8 / 2000))
  echo $((bytes > 32768 ? bytes : 32768))b
}

case "${1:-}" in
  up) up "${2:?hosts.sh up N}" ;;
  down) down ;;
  run) shift; run "$@" ;;
  mpirun)
    shift
    # Keepalive: a cut link ends the job in about 10 s instead of minutes.
    NETNS_RSH_CLEAN_ENV=1 run "${PREFIX}1" mpirun --allow-run-as-root --mca plm rsh \
      --mca plm_rsh_agent "$HERE/netns-rsh" --mca btl tcp,vader,self \
      --mca btl_tcp_if_include "$SUBNET.0/24" --mca oob_tcp_if_include "$SUBNET.0/24" \
      --mca mpi_yield_when_idle 1 --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 \
      --mca oob_tcp_keepalive_probes 3 "$@" ;;
  shape)
    burst=$(tbf_burst "${3:?hosts.sh shape HOST RATE}") || exit 2
    ip netns exec "$2" tc qdisc replace dev eth0 root tbf rate "$3" burst "$burst" latency 50ms ;;
  unshape) ip netns exec "$2" tc qdisc del dev eth0 root 2>/dev/null || true ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
