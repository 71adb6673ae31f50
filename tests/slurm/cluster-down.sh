#!/usr/bin/env bash
# Stop the one-node test cluster of tests/slurm/cluster-up.sh: cancel its jobs, stop slurmd,
# slurmctld and munged (by their pid files), remove their state and the slurm.conf it wrote.
# Leaves the packages installed. Safe to run when nothing is running.
#   KEEP_SLURM_LOGS=1 bash tests/slurm/cluster-down.sh   # keep /var/log/slurm/*.log
set -uo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# One-node SLURM test cluster for promptworth"
say() { printf '[cluster-down] %s\n' "$*"; }

if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    say "$CONF was not written by cluster-up.sh: leaving this cluster alone"
    exit 1
fi

# Cancel whatever is still queued or running, so that no slurmstepd outlives slurmd.
if command -v squeue >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
    jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    if [[ -n ${jobs// /} ]]; then
        say "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 20); do
            [[ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
fi

stop_pidfile() {  # name pidfile
    local name=$1 pidfile=$2 pid
    [[ -f $pidfile ]] || return 0
    pid="$(cat "$pidfile")"
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}
stop_pidfile slurmd /run/slurm/slurmd.pid
stop_pidfile slurmctld /run/slurm/slurmctld.pid
# Step daemons of jobs killed above exit with their job; wait for them, then stop stragglers.
for _ in $(seq 20); do pgrep -x slurmstepd >/dev/null || break; sleep 0.5; done
for pid in $(pgrep -x slurmstepd); do say "stopping leftover slurmstepd (pid $pid)"; kill -KILL "$pid" 2>/dev/null; done
stop_pidfile munged /run/munge/munged.pid

rm -rf /var/spool/slurmctld /var/spool/slurmd /run/slurm
[[ -n ${KEEP_SLURM_LOGS:-} ]] || rm -f /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log
[[ -f $CONF ]] && rm -f "$CONF"
grep -qF "$MARKER" /etc/slurm/gres.conf 2>/dev/null && rm -f /etc/slurm/gres.conf
say "stopped"
