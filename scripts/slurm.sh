#!/usr/bin/env bash
# A private single-node Slurm for the tests: scripts/slurm.sh start|stop|env [DIR]
#
#   start  writes DIR/etc/slurm.conf (this node's CPUs and memory from `slurmd -C`; two
#          stand-in GPUs, gres gpu, whose device files are DIR/dev/gpu0 and gpu1), starts munged (as the munge user, own key, socket and pid file), slurmctld -i and
#          slurmd, and waits until sinfo shows the node idle
#   stop   stops the daemons this script started in DIR (by their pid files) and nothing else
#   env    prints `export SLURM_CONF=...` for a shell that wants to use the cluster
#
# Everything lives under DIR (default /tmp/spmd-slurm): config, state, spool, logs, pid files,
# munge's socket and key. Ports are SPMD_SLURM_PORT (slurmctld) and the next one (slurmd),
# 17817/17818 by default, not Slurm's 6817/6818, and job ids start at 7000000, so a machine
# that already runs Slurm (and munge) keeps its own. Debian's slurm-wlm and munge must be
# installed (scripts/setup.sh does it).
set -euo pipefail
action=${1:-}
DIR=$(realpath -m "${2:-${SPMD_SLURM_DIR:-/tmp/spmd-slurm}}")
PORT=${SPMD_SLURM_PORT:-17817}
MAX_ARRAY_SIZE=${SPMD_SLURM_MAX_ARRAY_SIZE:-1001}  # the tests set it small, to split arrays
# Another test cluster on the same machine shares the cgroup v1 hierarchy `slurm/`, where a
# job's cgroup is named by its id: clusters running at once need ids of their own.
FIRST_JOB_ID=${SPMD_SLURM_FIRST_JOB_ID:-7000000}
GPUS=2  # stand-in GPUs: character devices with /dev/null's numbers, under DIR/dev
CONF=$DIR/etc/slurm.conf
say() { echo "[slurm.sh] $*" >&2; }

stop_pidfile() {  # stop_pidfile FILE NAME: TERM, then KILL, the process whose pid FILE holds
    local file=$1 name=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

case "$action" in
start)
    for tool in slurmctld slurmd munged sinfo; do
        command -v "$tool" >/dev/null || { say "$tool is missing: apt-get install slurm-wlm munge"; exit 1; }
    done
    export SLURM_CONF=$CONF
    if [ -s "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null \
            && sinfo -h -o %T 2>/dev/null | grep -q idle; then
        say "already running in $DIR"
        exit 0
    fi
    mkdir -p "$DIR"/{etc,state,spool,log,run,munge,dev}
    for i in $(seq 0 $((GPUS - 1))); do  # Slurm reads a GPU's device numbers from its File=
        [ -c "$DIR/dev/gpu$i" ] || mknod -m 666 "$DIR/dev/gpu$i" c 1 3
    done
    chmod 755 "$DIR"
    node=$(hostname -s)
    read -r cpus memory < <(slurmd -C | awk '/NodeName/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["CPUs"], v["RealMemory"] }')
    # munge: a key and socket of our own, owned by the munge user, who runs munged
    mkdir -p "$DIR/munge/key"
    if [ ! -s "$DIR/munge/key/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/key/munge.key" bs=1 count=1024 status=none
    fi
    chown -R munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"  # clients reach the socket here
    chmod 700 "$DIR/munge/key"
    chmod 600 "$DIR/munge/key/munge.key"
    stop_pidfile "$DIR/munge/munged.pid" munged
    runuser -u munge -- munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/key/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    cat > "$CONF" <<EOF
# written by scripts/slurm.sh for spmd's tests
ClusterName=spmd-test
SlurmctldHost=$node
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long (+1 s) before it starts again (default 120 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
FirstJobId=$FIRST_JOB_ID
MaxArraySize=$MAX_ARRAY_SIZE
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName=$node CPUs=$cpus RealMemory=$memory Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    # ConstrainCores=no: with cgroup v1, writing a new job's cpuset.cpus fails now and then
    # (EBUSY) while another job's cgroup is being torn down on this 2-CPU node; slurmd then
    # fails the launch ("could not execve job") and drains the node, and every later job
    # waits. Cores are still allocated per task (cons_tres); only the pinning is off.
    # gres.conf sits next to slurm.conf; no AutoDetect (no NVML): the files are the GPUs.
    echo "NodeName=$node Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]" > "$DIR/etc/gres.conf"
    # ConstrainDevices=no: the stand-ins have /dev/null's numbers, so constraining devices
    # would take /dev/null from every job not given both GPUs.
    cat > "$DIR/etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainDevices=no
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
    slurmctld -i -f "$CONF"
    slurmd -f "$CONF" -N "$node"
    for _ in $(seq 1 100); do
        sinfo -h -o %T 2>/dev/null | grep -q idle && break
        sleep 0.2
    done
    if ! sinfo -h -o %T 2>/dev/null | grep -q idle; then
        say "the node did not become idle; logs in $DIR/log"
        tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        exit 1
    fi
    say "Slurm is up in $DIR (SLURM_CONF=$CONF): node $node, $cpus CPUs, $memory MB"
    ;;
stop)
    stop_pidfile "$DIR/run/slurmd.pid" slurmd
    stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
    stop_pidfile "$DIR/munge/munged.pid" munged
    say "stopped the daemons in $DIR"
    ;;
env)
    echo "export SLURM_CONF=$CONF"
    ;;
*)
    echo "usage: $0 start|stop|env [DIR]" >&2
    exit 2
    ;;
esac
