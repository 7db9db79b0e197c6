#!/usr/bin/env bash
# Synod's standard benchmark matrix.
#
# Builds release binaries, starts a local 3-node cluster (synod playground:
# replication 3, fsync always), runs synod-bench over workloads x
# (clients x pipeline) settings, RUNS times each, and writes a markdown
# table of medians to perf/results/bench-<date>.md (also printed).
#
# Knobs (environment):
#   BENCH_DURATION   measured seconds per run (default 5)
#   BENCH_WARMUP     warmup seconds per run (default 1)
#   BENCH_RUNS       runs per cell, the median is reported (default 3)
#   BENCH_WORKLOADS  default "put get mixed"
#   BENCH_SETTINGS   clients x pipeline, default "1x1 16x16 64x16"
#   BENCH_KEYS       default 10000
#   BENCH_VALUE_SIZE default 64
#   BENCH_PORT       first cluster port (default 7400)
#   BENCH_OUT        output file (default perf/results/bench-<date>.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
RUNS=${BENCH_RUNS:-3}
WORKLOADS=${BENCH_WORKLOADS:-put get mixed}
SETTINGS=${BENCH_SETTINGS:-1x1 16x16 64x16}
KEYS=${BENCH_KEYS:-10000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
PORT=${BENCH_PORT:-7400}
OUT=${BENCH_OUT:-$ROOT/perf/results/bench-$(date +%Y-%m-%d).md}

WORK=$(mktemp -d /tmp/synod-bench.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building release binaries" >&2
(cd "$ROOT" && cargo build --release --bins --quiet)
BENCH="$ROOT/target/release/synod-bench"

start_playground "$WORK" "$PORT"
echo "bench: cluster up, SYNOD_MASTERS=$SYNOD_MASTERS" >&2

COMMON="--duration $DURATION --warmup $WARMUP --keys $KEYS --value-size $VALUE_SIZE --quiet"

# Gets must hit: write every key once, then no run prefills again.
prefill() {
    "$BENCH" --workload get --prefill yes --ops 1 --keys "$KEYS" --value-size "$VALUE_SIZE" --quiet >/dev/null
}
prefill

# The cores are shared: if the cluster dies under a run (a crash, or another
# process's doing), keep its logs, start a fresh one and redo that run once,
# and say so in the results rather than report a broken run.
NOTES=()
restart_cluster() {
    local kept
    kept=$(keep_cluster_logs "$WORK")
    stop_playground
    rm -rf "$WORK/cluster" "$WORK"/playground.*
    start_playground "$WORK" "$PORT"
    prefill
    NOTES+=("- the cluster was lost during $1 and restarted (old logs: $kept); that run was redone")
}

ROWS=()
CMDS=()
RAW=()
for workload in $WORKLOADS; do
    for setting in $SETTINGS; do
        clients=${setting%x*}
        pipeline=${setting#*x}
        extra=""
        [[ $workload == mixed ]] && extra="--read-ratio 0.5"
        cmd="synod-bench --workload $workload $extra --clients $clients --pipeline $pipeline $COMMON --prefill no"
        rates=() p50s=() p99s=() p999s=() errors=0
        for run in $(seq 1 "$RUNS"); do
            for attempt in 1 2; do
                # shellcheck disable=SC2086
                line=$("$BENCH" --workload "$workload" $extra --clients "$clients" --pipeline "$pipeline" \
                    $COMMON --prefill no | tail -1) || true
                if cluster_ok && [[ $line == ops=* ]]; then
                    break
                fi
                ((attempt == 1)) || { echo "bench: cluster lost twice in one run; giving up" >&2; exit 1; }
                echo "bench: cluster lost during $workload ${clients}x${pipeline} run $run; restarting it" >&2
                restart_cluster "$workload ${clients}x${pipeline} run $run"
            done
            echo "bench: $workload ${clients}x${pipeline} run $run: $line" >&2
            RAW+=("$workload ${clients}x${pipeline} #$run: $line")
            rates+=("$(kv ops_per_sec "$line")")
            p50s+=("$(kv p50_us "$line")")
            p99s+=("$(kv p99_us "$line")")
            p999s+=("$(kv p999_us "$line")")
            errors=$((errors + $(kv errors "$line")))
        done
        ROWS+=("| $workload | $clients | $pipeline | $(median "${rates[@]}") | $(median "${p50s[@]}") | $(median "${p99s[@]}") | $(median "${p999s[@]}") | $errors | ${rates[*]} |")
        CMDS+=("$cmd")
    done
done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Synod benchmark, $(date +%Y-%m-%d)"
    echo
    echo "Local cluster: \`synod playground\` = 3 synod-server nodes on loopback, one KV"
    echo "group of all 3 (replication 3), \`--fsync always\`, default \`--cores\`; the"
    echo "load generator runs on the same machine. $KEYS keys, uniform, $VALUE_SIZE-byte values,"
    echo "${WARMUP}s warmup then ${DURATION}s measured per run. Each cell is the median of"
    echo "$RUNS runs (each column's median taken separately); errors are summed."
    echo
    echo "| workload | clients | pipeline | ops/s (median) | p50 us | p99 us | p99.9 us | errors | ops/s of each run |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "cargo build --release --bins"
    echo "target/release/synod playground --dir DIR --base-port $PORT &   # prints SYNOD_MASTERS=..."
    echo "export SYNOD_MASTERS=$SYNOD_MASTERS"
    echo "synod-bench --workload get --prefill yes --ops 1 --keys $KEYS --value-size $VALUE_SIZE --quiet   # prefill"
    printf '%s\n' "${CMDS[@]}"
    echo '```'
    echo
    echo "(mixed = 50% get, 50% put.) Reproduce the whole file with \`perf/bench.sh\`."
    if ((${#NOTES[@]} > 0)); then
        echo
        echo "## Incidents"
        echo
        printf '%s\n' "${NOTES[@]}"
    fi
    echo
    echo "## Machine"
    echo
    machine_info
    echo
    echo "- disk sync cost, 500 appending 4 KiB O_DSYNC writes (dd oflag=dsync; appends also sync metadata, so an upper bound for a WAL sync): $(fsync_probe "$WORK")"
    echo
    echo "## Raw last lines"
    echo
    echo '```'
    printf '%s\n' "${RAW[@]}"
    echo '```'
} >"$OUT"
cat "$OUT"
echo "bench: wrote $OUT" >&2
