#!/usr/bin/env bash
# Writes to one primary/backup group of 2 replicas against one Paxos group
# of 3 replicas, on the same 3 playground nodes with the same settings
# (issue 12's throughput target: pb at least 1.3x the Paxos group's
# writes/s, and less server CPU per write). Interleaved runs, medians.
#
#   perf/pb.sh                      # 3 runs per mode, 10 s each, 64x16
#   PB_RUNS=5 PB_DURATION=20 perf/pb.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

RUNS=${PB_RUNS:-3}
DURATION=${PB_DURATION:-10}
SETTING=${PB_SETTING:-64x16}
KEYS=${PB_KEYS:-10000}
PORT=${PB_PORT:-17500}
OUT=${PB_OUT:-$ROOT/perf/results/pb-$(date +%Y-%m-%d).md}
CLIENTS=${SETTING%x*}
PIPELINE=${SETTING#*x}

WORK=$(mktemp -d /tmp/synod-pb.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${BIN_DIR:-} ]]; then
    (cd "$ROOT" && cargo build --release --bins --quiet)
fi
BENCH=${BIN_DIR:-$ROOT/target/release}/synod-bench

declare -A OPS CPU
RAW=()
for run in $(seq 1 "$RUNS"); do
    for mode in paxos pb; do
        SYNOD_GROUPS=1 measure_puts "$WORK" "$PORT" --mode "$mode" --pb-replicas 2 ||
            { echo "pb: playground --mode $mode did not start" >&2; exit 1; }
        ops=$PUT_OPS us=$PUT_US load=$PUT_LOAD line=$PUT_LINE
        echo "pb: run $run, $mode: $ops puts/s, $us us of server CPU per put (load before $load)" >&2
        OPS[$mode]+="$ops "
        CPU[$mode]+="$us "
        RAW+=("run $run mode $mode load $load cpu_us_per_put $us: $line")
    done
done

{
    echo "# Writes: a 2-replica primary/backup group vs a 3-replica Paxos group, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/pb.sh\` (PB_RUNS=$RUNS, ${DURATION} s per run, ${CLIENTS}x${PIPELINE}, $KEYS keys, 64-byte values; a fresh \`synod playground --groups 1 --mode paxos|pb --pb-replicas 2\` per run: 3 nodes, all masters; the Paxos group on all 3, the pb group on 2; fsync always). Medians of $RUNS runs, interleaved. Commit $(git -C "$ROOT" rev-parse --short HEAD)."
    echo
    echo "| mode | puts/s (median) | vs Paxos | server CPU per put, µs (3 nodes, median) | runs (puts/s) |"
    echo "|---|---|---|---|---|"
    base=""
    for mode in paxos pb; do
        # shellcheck disable=SC2086
        m=$(median ${OPS[$mode]})
        # shellcheck disable=SC2086
        c=$(median ${CPU[$mode]})
        [[ -n $base ]] || base=$m
        ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
        echo "| $mode | $m | ${ratio}x | $c | ${OPS[$mode]}|"
    done
    echo
    echo "Target (issue 12): pb at least 1.3x the Paxos group's writes/s, with less server CPU per write."
    echo
    echo "## Machine"
    echo
    machine_info
    echo
    echo "## Raw"
    echo
    echo '```'
    printf '%s\n' "${RAW[@]}"
    echo '```'
} >"$OUT"
cat "$OUT"
