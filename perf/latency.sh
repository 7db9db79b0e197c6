#!/usr/bin/env bash
# Latency at a fixed share of peak throughput: the check behind "p99 latency
# at half of peak throughput: at most 2 ms".
#
# Builds release binaries, starts a local 3-node cluster (synod playground:
# replication 3, fsync always), and for each workload:
#   1. measures peak throughput closed-loop (PEAK_RUNS runs, the median);
#   2. runs synod-bench --rate at LAT_FRACTION of that peak, open-loop, RUNS
#      times, latency measured from each request's intended send time.
# Writes a markdown table (medians of the runs, and every run's line with
# the load average before it) to perf/results/latency-<date>.md, also
# printed.
#
# Knobs (environment):
#   LAT_WORKLOADS       default "put get" (gets by the servers' --reads, lease
#                       unless SYNOD_SERVER_ARGS says "--reads index")
#   LAT_FRACTION        share of the peak to offer, default 0.5
#   LAT_TARGET_US       p99 the project promises at that rate, default 2000
#   LAT_PEAK_SETTING    clients x pipeline of the peak runs, default 64x16
#   LAT_PEAK_DURATION   measured seconds per peak run (default 5)
#   LAT_PEAK_RUNS       peak runs per workload, median taken (default 3)
#   LAT_SETTING         clients x pipeline of the --rate runs, default 64x16
#                       (the pipeline only caps what may be in flight)
#   LAT_DURATION        measured seconds per --rate run (default 10)
#   LAT_RUNS            --rate runs per workload (default 3)
#   LAT_WARMUP          warmup seconds per run (default 1)
#   LAT_KEYS            default 10000
#   LAT_VALUE_SIZE      default 64
#   LAT_PORT            first cluster port (default 18400; when unset, a busy
#                       port moves the cluster up, staying within 17000-19999)
#   LAT_OUT             output file (default perf/results/latency-<date>.md)
#   LAT_DISK_SYNCS      fdatasync probes before and after the runs (default 2000)
#
# The disk's own sync latency (synod-disk-probe: 4 KiB append + fdatasync,
# on the cluster's disk) is measured before and after the runs, and each
# p99 is also given as a multiple of the disk's p99 (the mean of the two
# probes), so the result reads the same on a faster or slower disk.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

WORKLOADS=${LAT_WORKLOADS:-put get}
FRACTION=${LAT_FRACTION:-0.5}
TARGET_US=${LAT_TARGET_US:-2000}
PEAK_SETTING=${LAT_PEAK_SETTING:-64x16}
PEAK_DURATION=${LAT_PEAK_DURATION:-5}
PEAK_RUNS=${LAT_PEAK_RUNS:-3}
SETTING=${LAT_SETTING:-64x16}
DURATION=${LAT_DURATION:-10}
RUNS=${LAT_RUNS:-3}
WARMUP=${LAT_WARMUP:-1}
KEYS=${LAT_KEYS:-10000}
VALUE_SIZE=${LAT_VALUE_SIZE:-64}
PORT=${LAT_PORT:-18400}
OUT=${LAT_OUT:-$ROOT/perf/results/latency-$(date +%Y-%m-%d).md}
DISK_SYNCS=${LAT_DISK_SYNCS:-2000}
# The servers' read path, for the report: --reads from SYNOD_SERVER_ARGS.
READS_MODE=lease
# shellcheck disable=SC2086
set -- ${SYNOD_SERVER_ARGS:-}
while [ $# -gt 0 ]; do
    case $1 in
    --reads) READS_MODE=${2:-lease}; shift ;;
    --reads=*) READS_MODE=${1#--reads=} ;;
    esac
    shift
done

PEAK_CLIENTS=${PEAK_SETTING%x*}
PEAK_PIPELINE=${PEAK_SETTING#*x}
CLIENTS=${SETTING%x*}
PIPELINE=${SETTING#*x}

WORK=$(mktemp -d /tmp/synod-latency.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "latency: building release binaries" >&2
(cd "$ROOT" && cargo build --release --bins --quiet)
BENCH="$ROOT/target/release/synod-bench"

# Other clusters may share the machine: if LAT_PORT was not given and the
# base port is busy, move up (staying in 17000-19999) a few times.
start_cluster() {
    local attempt
    for attempt in 1 2 3 4 5; do
        rm -rf "$WORK/cluster" "$WORK"/playground.*
        if start_playground "$WORK" "$PORT"; then
            return 0
        fi
        stop_playground
        if [[ -n ${LAT_PORT:-} ]] || ! grep -q 'is busy' "$WORK/playground.err"; then
            return 1
        fi
        PORT=$((17000 + (PORT - 17000 + 137) % 2990))
        echo "latency: base port busy, trying $PORT" >&2
    done
    return 1
}
start_cluster || { echo "latency: could not start the playground" >&2; exit 1; }
echo "latency: cluster up, SYNOD_MASTERS=$SYNOD_MASTERS" >&2

COMMON="--warmup $WARMUP --keys $KEYS --value-size $VALUE_SIZE --quiet --prefill no"

# Gets must hit: write every key once, then no run prefills again.
prefill() {
    "$BENCH" --workload get --prefill yes --ops 1 --keys "$KEYS" --value-size "$VALUE_SIZE" --quiet >/dev/null
}
prefill

NOTES=()
restart_cluster() {
    local kept
    kept=$(keep_cluster_logs "$WORK")
    stop_playground
    start_cluster
    prefill
    NOTES+=("- the cluster was lost during $1 and restarted (old logs: $kept); that run was redone")
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# bench WHAT ARGS...: one synod-bench run; sets LINE to its last line and
# LAST_LOAD to the load average before it. Redone once on a fresh cluster if
# the cluster died under it. (Not run in a subshell: a restart must update
# this shell's PLAYGROUND_PID and NOTES.)
LINE=
LAST_LOAD=
bench() {
    local what=$1 attempt
    shift
    for attempt in 1 2; do
        LAST_LOAD=$(loadavg)
        # shellcheck disable=SC2086
        LINE=$("$BENCH" "$@" $COMMON | tail -1) || true
        if cluster_ok && [[ $LINE == ops=* ]]; then
            return 0
        fi
        ((attempt == 1)) || { echo "latency: cluster lost twice in one run; giving up" >&2; exit 1; }
        echo "latency: cluster lost during $what; restarting it" >&2
        restart_cluster "$what"
    done
}

ROWS=()
CMDS=()
RAW=()
disk_probe() {
    "$ROOT/target/release/synod-disk-probe" "$WORK" --syncs "$DISK_SYNCS"
}
DISK_BEFORE=$(disk_probe)
echo "latency: disk before: $DISK_BEFORE" >&2

for workload in $WORKLOADS; do
    peaks=()
    for run in $(seq 1 "$PEAK_RUNS"); do
        bench "$workload peak run $run" --workload "$workload" \
            --clients "$PEAK_CLIENTS" --pipeline "$PEAK_PIPELINE" --duration "$PEAK_DURATION"
        line=$LINE
        echo "latency: $workload peak run $run (load $LAST_LOAD): $line" >&2
        RAW+=("$workload peak #$run (load before: $LAST_LOAD): $line")
        peaks+=("$(kv ops_per_sec "$line")")
    done
    peak=$(median "${peaks[@]}")
    rate=$(awk -v p="$peak" -v f="$FRACTION" 'BEGIN {printf "%.0f", p * f}')
    CMDS+=("synod-bench --workload $workload --clients $PEAK_CLIENTS --pipeline $PEAK_PIPELINE --duration $PEAK_DURATION $COMMON   # peak, x$PEAK_RUNS")

    achieved=() p50s=() p99s=() p999s=() lag50s=() lag99s=() delayed=0 unsent=0 errors=0
    for run in $(seq 1 "$RUNS"); do
        bench "$workload --rate run $run" --workload "$workload" --rate "$rate" \
            --clients "$CLIENTS" --pipeline "$PIPELINE" --duration "$DURATION"
        line=$LINE
        echo "latency: $workload --rate $rate run $run (load $LAST_LOAD): $line" >&2
        RAW+=("$workload rate #$run (load before: $LAST_LOAD): $line")
        achieved+=("$(kv ops_per_sec "$line")")
        p50s+=("$(kv p50_us "$line")")
        p99s+=("$(kv p99_us "$line")")
        p999s+=("$(kv p999_us "$line")")
        lag50s+=("$(kv lag_p50_us "$line")")
        lag99s+=("$(kv lag_p99_us "$line")")
        delayed=$((delayed + $(kv delayed "$line")))
        unsent=$((unsent + $(kv unsent "$line")))
        errors=$((errors + $(kv errors "$line")))
    done
    CMDS+=("synod-bench --workload $workload --rate $rate --clients $CLIENTS --pipeline $PIPELINE --duration $DURATION $COMMON   # x$RUNS")
    p99=$(median "${p99s[@]}")
    # Little's law: with every slot taken at the target rate, requests
    # spend this long in flight; a latency above it fills the pipeline.
    cap_ms=$(awk -v s="$((CLIENTS * PIPELINE))" -v r="$rate" 'BEGIN {printf "%.1f", (r > 0 ? 1000 * s / r : 0)}')
    verdict=no
    if [[ $p99 != NA ]] && ((p99 <= TARGET_US)); then verdict=yes; fi
    ROWS+=("| $workload | $peak | $rate | $(median "${achieved[@]}") | $(median "${p50s[@]}") | $p99 | $(median "${p999s[@]}") | $(median "${lag50s[@]}") / $(median "${lag99s[@]}") | $cap_ms | $delayed | $unsent | $errors | $verdict |")
done

DISK_AFTER=$(disk_probe)
echo "latency: disk after: $DISK_AFTER" >&2
DISK_P50=$(awk -v a="$(kv p50_us "$DISK_BEFORE")" -v b="$(kv p50_us "$DISK_AFTER")" 'BEGIN {printf "%.0f", (a + b) / 2}')
DISK_P99=$(awk -v a="$(kv p99_us "$DISK_BEFORE")" -v b="$(kv p99_us "$DISK_AFTER")" 'BEGIN {printf "%.0f", (a + b) / 2}')
# Each row's p99 as a multiple of the disk's p99 and of the row's p50.
for i in "${!ROWS[@]}"; do
    row=${ROWS[$i]}
    p50=$(awk -F'|' '{gsub(/ /, "", $6); print $6}' <<<"$row")
    p99=$(awk -F'|' '{gsub(/ /, "", $7); print $7}' <<<"$row")
    ratios=$(awk -v p="$p99" -v d="$DISK_P99" -v m="$p50" 'BEGIN {
        if (p == "NA" || d == 0 || m == 0 || m == "NA") { print "NA | NA"; exit }
        printf "%.1f | %.1f", p / d, p / m }')
    ROWS[$i]="$row $ratios |"
done

target_ms=$(awk -v t="$TARGET_US" 'BEGIN {printf "%g", t / 1000}')
mkdir -p "$(dirname "$OUT")"
{
    echo "# Synod latency at $FRACTION of peak throughput, $(date +%Y-%m-%d)"
    echo
    echo "Local cluster: \`synod playground\` = 3 synod-server nodes on loopback, one KV"
    echo "group of all 3 (replication 3), \`--fsync always\`, default \`--cores\`; gets by"
    echo "\`--reads ${READS_MODE}\`. The load generator runs on the same machine. $KEYS keys, uniform,"
    echo "$VALUE_SIZE-byte values, ${WARMUP}s warmup per run."
    echo
    echo "Peak: closed loop, $PEAK_CLIENTS clients x pipeline $PEAK_PIPELINE, ${PEAK_DURATION}s, median of"
    echo "$PEAK_RUNS runs. Then open loop (\`--rate\`) at $FRACTION of that peak, $CLIENTS clients, at most"
    echo "$PIPELINE in flight per client, ${DURATION}s measured, $RUNS runs: latency runs from each"
    echo "request's intended send time, so waiting for a full pipeline or a stalled"
    echo "server counts. Latency and achieved-rate cells are medians of the runs (each"
    echo "column's median taken separately); delayed, unsent and errors are summed."
    echo "The promise checked: p99 at most $target_ms ms."
    echo
    echo "Disk (synod-disk-probe, $DISK_SYNCS appends of 4 KiB + fdatasync in the cluster's directory):"
    echo "before the runs \`$DISK_BEFORE\`; after \`$DISK_AFTER\`. Disk p50 $DISK_P50 us, p99 $DISK_P99 us"
    echo "(means of the two probes); issue 15's targets: put p99 at most 5x the disk's p99, get p99 at most 2x its p50."
    echo
    echo "| workload | peak ops/s | target ops/s | achieved ops/s | p50 us | p99 us | p99.9 us | send lag p50 / p99 us | slots at target, ms | delayed | unsent | errors | p99 <= $target_ms ms | p99 / disk p99 | p99 / p50 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "send lag: first send minus intended time (a full pipeline, or the load"
    echo "generator waking late on busy cores); slots at target: the $((CLIENTS * PIPELINE)) requests that"
    echo "may be in flight, in milliseconds of the target rate (Little's law: a"
    echo "latency above it fills every slot); delayed: requests that fell due while"
    echo "every slot of their worker was taken; unsent: intended but never sent."
    echo "Delayed, unsent and the send lag should be near 0 when the target rate"
    echo "is really sustained."
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
    echo "Reproduce the whole file with \`perf/latency.sh\`."
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
    echo "## Every run (load average before it: 1, 5, 15 min)"
    echo
    echo '```'
    printf '%s\n' "${RAW[@]}"
    echo '```'
} >"$OUT"
cat "$OUT"
echo "latency: wrote $OUT" >&2
