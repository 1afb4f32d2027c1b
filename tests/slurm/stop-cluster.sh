#!/usr/bin/env bash
# Stop the test cluster of tests/slurm/start-cluster.sh: ends exactly the daemons it
# started (the pids in $DLTH_SLURM_STATE/run), slurmd first, munged last. Jobs still
# running on the node are cancelled first. The state folder stays (logs); pass --purge
# to remove it as well.
set -uo pipefail

STATE=${DLTH_SLURM_STATE:-/tmp/deepfake-lth-slurm}
RUN=$STATE/run

say() { echo "stop-cluster: $*" >&2; }

stop() {  # stop NAME: TERM the pid in $RUN/NAME.pid if it still runs NAME, then KILL
    local pidfile=$RUN/$1.pid pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        if [[ -d /proc/$pid ]]; then
            say "$1 ($pid) ignored TERM; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped $1 ($pid)"
    fi
    rm -f "$pidfile"
}

if [[ -s $STATE/etc/slurm.conf && -s $RUN/slurmctld.pid ]] && command -v scancel >/dev/null; then
    SLURM_CONF=$STATE/etc/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi
stop slurmd
stop slurmctld
stop munged

# the link start-cluster.sh made, and only that
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$STATE/etc/slurm.conf" ]]; then
    rm -f /etc/slurm/slurm.conf
fi

if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    say "removed $STATE"
fi
