#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py and for trying
# profiles/slurm without a real cluster. Needs root; installs Debian's slurm-wlm and
# munge when they are missing. One node that has all CPUs, most of the memory and two
# fake GPUs (gres gpu:fakegpu:2 on /dev/null and /dev/zero) in two partitions, `debug`
# (the default) and `gpu`, no accounting database (so `squeue` is the status command:
# tests/slurm/profile).
#
#   tests/slurm/start-cluster.sh          # idempotent: a running cluster is left as is
#   sinfo; sbatch --gpus=1 --wrap 'echo $CUDA_VISIBLE_DEVICES'
#   tests/slurm/stop-cluster.sh           # ends exactly the daemons this script started
#
# State (config, spool, logs, pids) lives in $DLTH_SLURM_STATE (default
# /tmp/deepfake-lth-slurm). /etc/slurm/slurm.conf becomes a link to its slurm.conf, as
# commands inside a job (srun of the Snakemake job step, which drops SLURM_CONF) read the
# default path; a slurm.conf there that is not such a link is left alone and the script
# stops. Exit status: 0 running, 1 failed, 2 not possible here (not root, slurm missing
# and no apt-get, or another cluster's /etc/slurm/slurm.conf).
set -euo pipefail

STATE=${DLTH_SLURM_STATE:-/tmp/deepfake-lth-slurm}
CONF_DIR=$STATE/etc
CONF=$CONF_DIR/slurm.conf
RUN=$STATE/run
LOG=$STATE/log
CTLD_PORT=${DLTH_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${DLTH_SLURM_SLURMD_PORT:-6818}
MUNGE_SOCKET=$RUN/munge.socket
WAIT_S=${DLTH_SLURM_WAIT_S:-90}
GPU_TYPE=fakegpu  # the GPU model a job can ask for: sbatch --gpus=fakegpu:1
# fake GPUs on the node (1-5), each backed by a harmless character device; two let two
# training jobs share the two CPUs of a small CI machine
GPUS=${DLTH_SLURM_GPUS:-2}

SYSTEM_CONF=/etc/slurm/slurm.conf

say() { echo "start-cluster: $*" >&2; }

alive() {  # alive NAME: the pid in $RUN/NAME.pid runs the program NAME
    local pidfile=$RUN/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -d /proc/$pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

node_state() {
    SLURM_CONF=$CONF sinfo --noheader --Node --format=%T 2>/dev/null | head -n1 || true
}

if [[ $(id -u) -ne 0 ]]; then
    say "needs root (to install slurm and run slurmd as root)"
    exit 2
fi

# ---- packages ----------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if ((${#need[@]})); then
    if ! command -v apt-get >/dev/null; then
        say "slurm is not installed (${need[*]} missing) and there is no apt-get to install it"
        exit 2
    fi
    say "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"${TMPDIR:-/tmp}/dlth-slurm-apt.log" 2>&1 || {
        say "apt-get update failed: $(tail -n 3 "${TMPDIR:-/tmp}/dlth-slurm-apt.log")"
        exit 2
    }
    # policy-rc.d 101: the packages' postinst must not start the system's own daemons
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    installed=0
    apt-get install -y -qq --no-install-recommends slurm-wlm munge \
        >>"${TMPDIR:-/tmp}/dlth-slurm-apt.log" 2>&1 && installed=1
    if ((made_policy)); then rm -f "$policy"; fi
    if ((!installed)); then
        say "apt-get install slurm-wlm munge failed: $(tail -n 5 "${TMPDIR:-/tmp}/dlth-slurm-apt.log")"
        exit 2
    fi
fi

if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]] && [[ $(readlink "$SYSTEM_CONF" 2>/dev/null) != "$CONF" ]]; then
    say "$SYSTEM_CONF exists and is not this test cluster's; not touching it"
    exit 2
fi
mkdir -p "$CONF_DIR" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/munge"
mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -sfn "$CONF" "$SYSTEM_CONF"

# ---- already up? -------------------------------------------------------------------
up_state=$(node_state)
if alive munged && alive slurmctld && alive slurmd && [[ $up_state =~ ^(idle|mix|alloc) ]]; then
    say "already running ($SYSTEM_CONF -> $CONF)"
    exit 0
fi

# ---- configuration -----------------------------------------------------------------
devices=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
if ! [[ $GPUS =~ ^[1-5]$ ]]; then
    say "DLTH_SLURM_GPUS=$GPUS: give 1 to 5 fake GPUs"
    exit 1
fi
gpu_files=$(IFS=,; echo "${devices[*]:0:GPUS}")
host=$(hostname -s)
cpus=$(nproc)
mem_total=$(free -m | awk '/^Mem:/ {print $2}')
real_mem=$((mem_total - mem_total / 16))  # a bit below what the kernel reports

cat >"$CONF" <<EOF
# Written by tests/slurm/start-cluster.sh: a one-node test cluster, no accounting.
ClusterName=dlth-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.daemon.pid
SlurmdPidFile=$RUN/slurmd.daemon.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# finished jobs stay visible to squeue for an hour (the status command without sacct)
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
# the same node again, for the GPU jobs: a test sees which partition each job asked for
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF

cat >"$CONF_DIR/gres.conf" <<EOF
# Fake GPUs: enough for the scheduler to grant --gpus; nothing uses the devices.
NodeName=$host Name=gpu Type=$GPU_TYPE File=$gpu_files
EOF

# ---- munge -------------------------------------------------------------------------
key=$STATE/munge/munge.key
if [[ ! -s $key ]]; then
    dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
fi
chmod 0400 "$key"
if ! alive munged; then
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    nohup munged --foreground --force --key-file="$key" --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN/munged.daemon.pid" --log-file="$LOG/munged.log" \
        --seed-file="$STATE/munge/munged.seed" >>"$LOG/munged.out" 2>&1 </dev/null &
    echo $! >"$RUN/munged.pid"
    for _ in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
    [[ -S $MUNGE_SOCKET ]] || { say "munged did not start: $(tail -n 5 "$LOG/munged.log" "$LOG/munged.out" 2>/dev/null)"; exit 1; }
fi

# ---- slurmctld, slurmd -------------------------------------------------------------
export SLURM_CONF=$CONF
if ! alive slurmctld; then
    nohup slurmctld -D -f "$CONF" >>"$LOG/slurmctld.out" 2>&1 </dev/null &
    echo $! >"$RUN/slurmctld.pid"
fi
for _ in $(seq 100); do
    alive slurmctld || break
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
if ! scontrol ping 2>/dev/null | grep -q UP; then
    say "slurmctld does not answer: $(tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmctld.out" 2>/dev/null)"
    exit 1
fi
if ! alive slurmd; then
    nohup slurmd -D -f "$CONF" -N "$host" >>"$LOG/slurmd.out" 2>&1 </dev/null &
    echo $! >"$RUN/slurmd.pid"
fi

# ---- wait for the node -------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
state=""
while ((SECONDS < deadline)); do
    state=$(node_state)
    case $state in
    idle* | mix* | alloc*) break ;;
    down* | drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
case $state in
idle* | mix* | alloc*) ;;
*)
    say "node $host is '${state:-unknown}' after ${WAIT_S}s"
    say "slurmd log: $(tail -n 20 "$LOG/slurmd.log" "$LOG/slurmd.out" 2>/dev/null)"
    exit 1
    ;;
esac
say "up: node $host ($cpus CPUs, ${real_mem} MB, gpu:$GPU_TYPE:$GPUS) is $state ($SYSTEM_CONF -> $CONF)"
