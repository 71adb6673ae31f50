#!/usr/bin/env bash
# `make test-slurm`: run the tiny study through a real (one-node) SLURM with the project's SLURM
# profile and check it against a local run. Needs root (it installs and starts SLURM).
#
#   bash tests/slurm/run.sh          # full test (6 to 7 minutes on 2 shared cores):
#       1. start the test cluster (tests/slurm/cluster-up.sh)
#       2. time limit: a throwaway job (tests/slurm/mini) with a 1-minute limit sleeps longer;
#          Snakemake must report "SLURM status is: 'TIMEOUT'" and the SLURM log "DUE TO TIME LIMIT"
#          (runs in the background, during step 3)
#       3. the tiny study (config/studies/tiny.yaml) locally, with workflow/profiles/local, in a pool of
#          2 workers as `make study` runs it
#       4. the same study with workflow/profiles/slurm, started inside a pool on the login node
#          that no SLURM job may use; the first training job is cancelled (scancel) once it has
#          started training, and must be retried
#       5. every training job ran as a SLURM job
#       6. one training run with workflow/profiles/slurm-gpu gets the node's pretend GPU
#       7. the results equal the local ones (tests/slurm/compare_runs.py)
#   bash tests/slurm/run.sh mini     # the cluster and profile only (about 4 minutes): the mini
#                                    # workflow through SLURM, a cancelled job retried, a time limit
#
# Outputs in results/test-slurm/ (kept for inspection). Last line: "test-slurm: PASS ..." or
# "test-slurm: FAIL ..."; exit status 0 only on PASS. The daemons are stopped on exit (trap).
# Environment: KEEP_CLUSTER=1 leaves the cluster running; PROMPTWORTH_DATA as for `make study`.
# For development: TEST_SLURM_CONFIG="key=value ..." adds --config overrides to both study runs;
# TEST_SLURM_UNTIL=train stops both runs after training and compares the run records only.
set -uo pipefail

MODE="${1:-full}"
[[ $MODE == full || $MODE == mini ]] || { echo "usage: $0 [full|mini]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/slurm"
OUT="$ROOT/results/test-slurm"
START=$(date +%s)

[[ -x .venv/bin/snakemake ]] && export PATH="$ROOT/.venv/bin:$PATH"   # jobs inherit it (--export=ALL)
if [[ -z ${PROMPTWORTH_DATA:-} && -d ../shared/data ]]; then
    export PROMPTWORTH_DATA="$(cd ../shared/data && pwd)"
fi

PASSED=() FAILED=() BG_PIDS=()
say() { printf '[test-slurm %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
pass() { PASSED+=("$1"); say "ok   $1"; }
fail() { FAILED+=("$1"); say "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }

summary() {
    local secs=$(( $(date +%s) - START ))
    echo
    for c in "${PASSED[@]}"; do echo "  pass: $c"; done
    for c in "${FAILED[@]}"; do echo "  FAIL: $c"; done
    if (( ${#FAILED[@]} == 0 && ${#PASSED[@]} > 0 )); then
        echo "test-slurm: PASS ($MODE: ${#PASSED[@]} checks passed in ${secs} s; outputs in results/test-slurm)"
        return 0
    fi
    echo "test-slurm: FAIL ($MODE: ${#FAILED[@]} of $(( ${#PASSED[@]} + ${#FAILED[@]} )) checks failed in ${secs} s; logs in results/test-slurm)"
    return 1
}

cleanup() {
    local rc=$?
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    cp /var/log/slurm/slurmctld.log "$OUT/slurmctld.log" 2>/dev/null
    cp /var/log/slurm/slurmd.log "$OUT/slurmd.log" 2>/dev/null
    if [[ -z ${KEEP_CLUSTER:-} ]]; then bash "$HERE/cluster-down.sh" >"$OUT/cluster-down.log" 2>&1; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"

# Snakemake against the test cluster: the project's profile as users run it, plus what this cluster
# needs (no accounting database -> squeue for job states) and quick status checks for a short test.
SLURM_ARGS=(
    --workflow-profile workflow/profiles/slurm
    --slurm-status-command squeue
    --slurm-init-seconds-before-status-checks 2
    --seconds-between-status-checks 2
    --slurm-keep-successful-logs
)

# --- 1. cluster ------------------------------------------------------------------------------
say "starting the one-node SLURM cluster"
# A fresh cluster each time: stop one left running by an earlier run (only one this script wrote).
bash "$HERE/cluster-down.sh" >"$OUT/cluster-down-before.log" 2>&1
if ! bash "$HERE/cluster-up.sh" >"$OUT/cluster-up.log" 2>&1; then
    cat "$OUT/cluster-up.log"
    fail "cluster starts (sinfo idle, sbatch smoke job)"
    summary; exit 1
fi
pass "cluster starts: $(grep -o 'node up: .*' "$OUT/cluster-up.log")"

# The SLURM jobs of one Snakemake run: "id|comment|state" lines (comment = rule_<rule>_wildcards_<w>).
# MinJobAge in slurm.conf keeps finished jobs visible to squeue for the whole test.
run_id() { grep -o 'SLURM run ID: [^ ]*' "$1" | head -1 | awk '{print $4}'; }
slurm_jobs() { squeue -h -t all --name "$1" -o '%i|%k|%T' 2>/dev/null; }

# Cancel the first running SLURM job whose comment starts with $1 (once $2, a function name, says
# it is far enough along); write "jobid comment" to $3.
cancel_first() {
    local prefix=$1 ready=$2 record=$3 id comment
    for _ in $(seq 1200); do
        while IFS='|' read -r id comment; do
            [[ $comment == "$prefix"* ]] || continue
            "$ready" "$comment" || continue
            scancel "$id" && echo "$id $comment" > "$record"
            return 0
        done < <(squeue -h -t running -o '%i|%k' 2>/dev/null)
        sleep 0.5
    done
    return 1
}

# --- time limit (mini workflow) ----------------------------------------------------------------
timeout_run() {  # a job that sleeps 5 minutes under a 1-minute limit; no retries, so it fails once
    mkdir -p "$OUT/mini-timeout"
    snakemake -s tests/slurm/mini/Snakefile -d "$OUT/mini-timeout" "${SLURM_ARGS[@]}" \
        --retries 0 --config items=1 sleep=300 runtime=1 >"$OUT/mini-timeout.log" 2>&1
    echo $? > "$OUT/mini-timeout.rc"
}
timeout_checks() {
    local rc; rc="$(cat "$OUT/mini-timeout.rc" 2>/dev/null || echo missing)"
    check "time limit: Snakemake fails the job (exit $rc, not 0)" test "$rc" != 0 -a "$rc" != missing
    check "time limit: Snakemake says \"SLURM status is: 'TIMEOUT'\"" \
        grep -q "SLURM status is: 'TIMEOUT'" "$OUT/mini-timeout.log"
    check "time limit: the job's SLURM log says \"CANCELLED ... DUE TO TIME LIMIT\"" \
        grep -rq "CANCELLED AT .* DUE TO TIME LIMIT" "$OUT/mini-timeout/logs/slurm"
}

if [[ $MODE == mini ]]; then
    # --- mini: two rules, `work` through SLURM ------------------------------------------------
    say "mini workflow: 3 local 'prepare' jobs, 3 'work' jobs through SLURM"
    mkdir -p "$OUT/mini"
    snakemake -s tests/slurm/mini/Snakefile -d "$OUT/mini" "${SLURM_ARGS[@]}" --config items=3 \
        >"$OUT/mini.log" 2>&1
    check "mini: workflow completes" test $? -eq 0
    check "mini: every 'work' output was written inside a SLURM job" \
        test "$(grep -l 'slurm_job=[0-9]' "$OUT"/mini/out/*.txt 2>/dev/null | wc -l)" -eq 3
    check "mini: 3 'work' SLURM jobs COMPLETED, 'prepare' ran locally" \
        test "$(slurm_jobs "$(run_id "$OUT/mini.log")" | grep -c '|rule_work_.*|COMPLETED$')" -eq 3 \
        -a "$(grep -c '^localrule prepare:' "$OUT/mini.log")" -eq 3

    say "mini workflow: a 'work' job cancelled (scancel) while running must be retried"
    mkdir -p "$OUT/mini-cancel"
    running_3s() { :; }
    ( sleep 4; cancel_first rule_work running_3s "$OUT/mini-cancel.cancelled" ) & BG_PIDS+=($!)
    snakemake -s tests/slurm/mini/Snakefile -d "$OUT/mini-cancel" "${SLURM_ARGS[@]}" \
        --config items=1 sleep=15 >"$OUT/mini-cancel.log" 2>&1
    rc=$?
    check "cancel: a running job was cancelled ($(cat "$OUT/mini-cancel.cancelled" 2>/dev/null))" \
        test -s "$OUT/mini-cancel.cancelled"
    check "cancel: Snakemake saw the cancellation and retried; the workflow completes" \
        test $rc -eq 0 -a -n "$(grep "SLURM status is: 'CANCELLED'" "$OUT/mini-cancel.log")"

    say "time limit: a job that sleeps past its 1-minute limit (about 2 minutes)"
    timeout_run
    timeout_checks
    summary
    exit $?
fi

# --- full: the tiny study, locally and through SLURM ---------------------------------------------
STUDY_ARGS=(--configfile config/studies/tiny.yaml)
LOCAL="$OUT/local" SLURM="$OUT/slurm"
read -r -a EXTRA_CONFIG <<< "${TEST_SLURM_CONFIG:-}"
COMPARE_ARGS=()
if [[ -n ${TEST_SLURM_UNTIL:-} ]]; then
    STUDY_ARGS+=(--until "$TEST_SLURM_UNTIL")
    COMPARE_ARGS+=(--runs-only)
fi

say "dry run of the tiny study"
if ! snakemake -n "${STUDY_ARGS[@]}" --config results_dir="$SLURM" "${EXTRA_CONFIG[@]}" >"$OUT/dryrun.log" 2>&1; then
    tail -20 "$OUT/dryrun.log"
    fail "the tiny study plans (snakemake -n --configfile config/studies/tiny.yaml)"
    summary; exit 1
fi
N_TRAIN="$(awk '$1 == "train" {print $2}' "$OUT/dryrun.log" | head -1)"
check "the tiny study plans ${N_TRAIN:-no} training runs" test "${N_TRAIN:-0}" -gt 0

say "time limit check starts in the background (about 2 minutes)"
timeout_run & BG_PIDS+=($!)
TIMEOUT_PID=$!

say "tiny study, locally as make study runs it (a pool of 2 workers) into $LOCAL"
promptworth pool --size 2 -- snakemake "${STUDY_ARGS[@]}" --workflow-profile workflow/profiles/local \
    --set-threads train=1 --config results_dir="$LOCAL" "${EXTRA_CONFIG[@]}" >"$OUT/local.log" 2>&1
check "local run completes" test $? -eq 0
check "local runs were served by the pool (no run trained in its own process)" \
    test -z "$(grep -l 'training in this process' "$LOCAL"/logs/train/*/*/*/*.log 2>/dev/null)"

wait "$TIMEOUT_PID"
timeout_checks

say "tiny study through SLURM (workflow/profiles/slurm) into $SLURM; one training job gets cancelled"
# The train log of a run exists once its `promptworth train` has started: cancel then (mid-run).
train_started() {  # comment rule_train_wildcards_<model>_<task>_<method>_<size>_<data_seed>_<train_seed>
    local log rel model task method run
    for log in "$SLURM"/logs/train/*/*/*/*.log; do  # logs/train/<model>/<task>/<method>/<run>.log
        [[ -f $log ]] || continue
        rel="${log#"$SLURM"/logs/train/}"
        model="${rel%%/*}"; rel="${rel#*/}"
        task="${rel%%/*}"; rel="${rel#*/}"
        method="${rel%%/*}"; run="${rel#*/}"; run="${run%.log}"
        [[ $1 == "rule_train_wildcards_${model}_${task}_${method}_${run//-/_}" ]] && return 0
    done
    return 1
}
cancel_first rule_train train_started "$OUT/slurm.cancelled" & BG_PIDS+=($!)
# inside a pool on the login node: a SLURM job must never hand its run to it (it trains in its job)
promptworth pool --size 1 -- snakemake "${STUDY_ARGS[@]}" "${SLURM_ARGS[@]}" --slurm-logdir "$OUT/slurm-logs" \
    --config results_dir="$SLURM" "${EXTRA_CONFIG[@]}" >"$OUT/slurm.log" 2>&1
check "SLURM run completes" test $? -eq 0
n_here="$(grep -l 'training in this process' "$SLURM"/logs/train/*/*/*/*.log 2>/dev/null | wc -l)"
check "no SLURM job used the login node's pool: $n_here of ${N_TRAIN:-?} train logs say they trained in their job" \
    test "$n_here" -eq "${N_TRAIN:-0}"

RUN_ID="$(run_id "$OUT/slurm.log")"
slurm_jobs "$RUN_ID" | sort -t'|' -k1,1n > "$OUT/slurm-jobs.txt"
n_done="$(grep '|rule_train_wildcards_.*|COMPLETED$' "$OUT/slurm-jobs.txt" | cut -d'|' -f2 | sort -u | wc -l)"
n_sub="$(grep -c '|rule_train_wildcards_' "$OUT/slurm-jobs.txt")"
check "every training run was a SLURM job: $n_done of ${N_TRAIN:-?} runs COMPLETED in SLURM ($n_sub submissions)" \
    test "$n_done" -eq "${N_TRAIN:-0}"
check "no training run ran outside SLURM (no 'localrule train')" \
    test "$(grep -c '^localrule train:' "$OUT/slurm.log")" -eq 0
read -r CANCELLED_ID CANCELLED_COMMENT < "$OUT/slurm.cancelled" 2>/dev/null || CANCELLED_ID=""
check "cancel: training job ${CANCELLED_ID:-?} was cancelled mid-run (scancel)" test -n "$CANCELLED_ID"
check "cancel: Snakemake saw it ('CANCELLED') and retried it: $n_sub submissions = ${N_TRAIN:-?} runs + 1" \
    test -n "$(grep "SLURM status is: 'CANCELLED'" "$OUT/slurm.log")" -a "$n_sub" -eq $(( ${N_TRAIN:-0} + 1 )) \
    -a -n "$(grep "|${CANCELLED_COMMENT:-none}|COMPLETED$" "$OUT/slurm-jobs.txt")"

say "GPU profile (workflow/profiles/slurm-gpu): one training run on the test node's pretend GPU"
GPU_RUN="$(cd "$LOCAL" && ls runs/*/*/*/*.json 2>/dev/null | head -1)"
if [[ -n $GPU_RUN ]]; then
    # SLURM_ARGS without its first two words (--workflow-profile workflow/profiles/slurm)
    snakemake "$OUT/gpu/$GPU_RUN" "${STUDY_ARGS[@]}" --workflow-profile workflow/profiles/slurm-gpu \
        "${SLURM_ARGS[@]:2}" --slurm-logdir "$OUT/slurm-logs-gpu" --config results_dir="$OUT/gpu" \
        "${EXTRA_CONFIG[@]}" >"$OUT/gpu.log" 2>&1
    rc=$?
    GPU_JOB="$(slurm_jobs "$(run_id "$OUT/gpu.log")" | grep '|rule_train_' | cut -d'|' -f1 | head -1)"
    GPU_TRES="$(scontrol show job "${GPU_JOB:-none}" 2>/dev/null | grep -o 'TresPerJob=[^ ]*')"
    check "GPU profile: training job ${GPU_JOB:-?} asked SLURM for a GPU (${GPU_TRES:-none}) and completed" \
        test $rc -eq 0 -a "$GPU_TRES" = "TresPerJob=gres:gpu:1"
    python3 "$HERE/compare_runs.py" "$OUT/gpu" "$LOCAL" --subset --expect 1 >"$OUT/compare-gpu.log" 2>&1
    check "GPU profile: its result equals the local one ($GPU_RUN)" test $? -eq 0
else
    fail "GPU profile: no local run record to repeat"
fi

say "comparing SLURM and local results"
python3 "$HERE/compare_runs.py" "$SLURM" "$LOCAL" --expect "${N_TRAIN:-0}" "${COMPARE_ARGS[@]}" >"$OUT/compare.log" 2>&1
rc=$?
tail -5 "$OUT/compare.log"
check "SLURM results equal local results ($(tail -1 "$OUT/compare.log"))" test $rc -eq 0

summary
