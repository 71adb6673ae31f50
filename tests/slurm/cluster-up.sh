#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 for tests: installs Debian's slurm-wlm and munge
# when missing, writes /etc/slurm/slurm.conf from tests/slurm/slurm.conf.in, starts munged,
# slurmctld and slurmd directly (no systemd needed), waits until the node is idle and runs
# `sbatch --wrap hostname` as a smoke test. Needs root. Stop it with tests/slurm/cluster-down.sh.
#
#   bash tests/slurm/cluster-up.sh            # start (idempotent: a running test cluster is reused)
#   SLURM_TEST_SKIP_SMOKE=1 bash ...          # skip the sbatch smoke test
#
# It refuses to touch an /etc/slurm/slurm.conf that it did not write itself.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CONF=/etc/slurm/slurm.conf
MARKER="# One-node SLURM test cluster for promptworth"
LOG=/var/log/slurm
say() { printf '[cluster-up] %s\n' "$*"; }
die() { printf '[cluster-up] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (apt-get, /etc/slurm, daemons)"

# 1. Packages: one apt-get update, one install, only when something is missing.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# 2. Already up? (a previous run that was not stopped): reuse it.
if [[ -f $CONF ]] && grep -qF "$MARKER" "$CONF" && sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    say "test cluster already running: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    exit 0
fi

# 3. slurm.conf at the default path (so srun inside a job finds it without SLURM_CONF).
if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's config"
fi
NODE="$(hostname -s)"
# slurmd -C: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
HARDWARE="$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')"
[[ $HARDWARE == *CPUs=* && $HARDWARE == *RealMemory=* ]] || die "could not read the hardware from 'slurmd -C'"
mkdir -p /etc/slurm
sed -e "s/@NODE@/$NODE/g" -e "s/@HARDWARE@/$HARDWARE/" "$HERE/slurm.conf.in" > "$CONF"
printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$MARKER (pretend GPU: /dev/null stands in for a device file)" "$NODE" > /etc/slurm/gres.conf
say "wrote $CONF: node $NODE ($HARDWARE)"

# 4. Directories (SlurmUser=root, so root owns the spool and log folders).
mkdir -p /var/spool/slurmctld /var/spool/slurmd /run/slurm "$LOG"
chown root:root /var/spool/slurmctld /var/spool/slurmd /run/slurm "$LOG"
chmod 755 /var/spool/slurmctld /var/spool/slurmd /run/slurm "$LOG"

# 5. munge: a key (the package usually made one), then the daemon as the munge user.
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n </dev/null | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# 6. slurmctld, then slurmd (both fork into the background and write pid files under /run/slurm).
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! pid_alive /run/slurm/slurmctld.pid; then
    say "starting slurmctld"
    # -c: clear saved state (jobs and node states from an earlier run), -i: ignore state file errors.
    /usr/sbin/slurmctld -c -i || die "slurmctld failed to start: $(tail -5 $LOG/slurmctld.log 2>/dev/null)"
fi
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || die "slurmctld is not up: $(tail -5 $LOG/slurmctld.log)"
if ! pid_alive /run/slurm/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd -N "$NODE" || die "slurmd failed to start: $(tail -5 $LOG/slurmd.log 2>/dev/null)"
fi

# 7. Wait for the node to be idle (a node left DOWN by an earlier run is resumed).
state=""
for i in $(seq 60); do
    state="$(sinfo -h -N -o %T 2>/dev/null | head -1)"
    [[ $state == idle ]] && break
    if [[ $state == down* || $state == drain* ]] && (( i % 5 == 0 )); then
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    fi
    sleep 1
done
[[ $state == idle ]] || die "node $NODE is '$state', not idle, after 60 s: $(tail -5 $LOG/slurmd.log)"
say "node up: $(sinfo -h -N -o '%N %P %T, %c CPUs, %m MB')"

# 8. Smoke test: one batch job that runs `hostname` (and srun inside it).
if [[ -z ${SLURM_TEST_SKIP_SMOKE:-} ]]; then
    out="$(mktemp /tmp/slurm-smoke.XXXXXX)"
    jobid="$(sbatch --parsable --output "$out" --time 1 --mem 100 --wrap 'hostname && srun hostname')"
    for _ in $(seq 60); do
        st="$(squeue -h -t all -j "$jobid" -o %T 2>/dev/null || true)"
        [[ $st == COMPLETED || $st == FAILED || $st == CANCELLED || $st == TIMEOUT ]] && break
        sleep 0.5
    done
    [[ $st == COMPLETED ]] || die "smoke job $jobid ended '$st': $(cat "$out" 2>/dev/null)"
    say "smoke job $jobid COMPLETED: $(tr '\n' ' ' < "$out")"
    rm -f "$out"
fi
