#!/usr/bin/env bash
# Get latency under a mixed load, two server configurations of the same
# build, runs alternating: for changes aimed at the get tail (issue 15),
# where the client's percentiles of a mixed run are mostly the puts'.
#
# For each run and configuration: a fresh `synod playground --groups 1`
# (3 nodes, fsync always) with the configuration's server arguments,
# 10,000 keys prefilled, 3 s of closed-loop mixed load to warm up, then
# `synod-bench --workload mixed --read-ratio 0.9 --rate READTAIL_RATE`
# for READTAIL_SECS. One line per run: the client's ops/s and
# percentiles (gets and puts together) and its send lag, then for gets
# and for puts the servers' own count, mean and cumulative share of
# requests answered within 50 µs, 250 µs, 1 ms and 2.5 ms (every node's
# synod_request_duration_seconds{kind=...}: request read in to reply
# queued, without the load generator's queueing).
#
# Usage: perf/readtail.sh
# Knobs (environment):
#   READTAIL_A, READTAIL_B  server arguments (words) of the two
#                           configurations, default "--sync-on loop" and
#                           "--sync-on thread"
#   READTAIL_RATE   ops/s offered, default 50000
#   READTAIL_SECS   measured seconds per run, default 15
#   READTAIL_RUNS   runs per configuration, default 3
#   READTAIL_PORT   first cluster port, default 18950
#   BIN_DIR         release binaries, default target/release
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

A=${READTAIL_A:---sync-on loop}
B=${READTAIL_B:---sync-on thread}
RATE=${READTAIL_RATE:-50000}
SECS=${READTAIL_SECS:-15}
RUNS=${READTAIL_RUNS:-3}
PORT=${READTAIL_PORT:-18950}
BENCH=${BIN_DIR:-$ROOT/target/release}/synod-bench

WORK=$(mktemp -d /tmp/synod-readtail.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# scrape FILE: every node's metrics, concatenated.
scrape() {
    local u
    for u in ${SYNOD_METRICS//,/ }; do curl -s --max-time 2 "$u" || true; done >"$1"
}
# series FILE SUFFIX KIND [LE]: the request histogram's SUFFIX (count,
# sum, bucket) for KIND summed over the nodes.
series() {
    local sel="synod_request_duration_seconds_$2{kind=\"$3\"}"
    [[ -n ${4:-} ]] && sel="synod_request_duration_seconds_$2{kind=\"$3\",le=\"$4\"}"
    grep -F "$sel " "$1" | awk '{s += $2} END {printf "%.6f", s + 0}'
}
# delta KIND SUFFIX [LE]: the series' growth over the measured run.
delta() { echo "$(series "$WORK/m1" "$2" "$1" "${3:-}") - $(series "$WORK/m0" "$2" "$1" "${3:-}")" | bc; }

for r in $(seq 1 "$RUNS"); do
    for args in "$A" "$B"; do
        export SYNOD_SERVER_ARGS=$args
        rm -rf "$WORK/cluster" "$WORK"/playground.*
        start_playground "$WORK" "$PORT"
        "$BENCH" --workload get --prefill yes --ops 1 --keys 10000 --quiet >/dev/null 2>&1
        "$BENCH" --workload mixed --read-ratio 0.9 --clients 64 --pipeline 16 --duration 3 \
            --keys 10000 --prefill no --quiet >/dev/null 2>&1
        SYNOD_METRICS=$(sed -n 's/^SYNOD_METRICS=//p' "$WORK/playground.out" | head -1)
        scrape "$WORK/m0"
        line=$("$BENCH" --workload mixed --read-ratio 0.9 --rate "$RATE" --clients 64 \
            --pipeline 16 --duration "$SECS" --warmup 1 --keys 10000 --prefill no --quiet \
            2>/dev/null | tail -1)
        scrape "$WORK/m1"
        stop_playground
        out="[$args] run $r: ops/s $(kv ops_per_sec "$line"), p50 $(kv p50_us "$line") us,"
        out+=" p99 $(kv p99_us "$line") us, max $(kv max_us "$line") us,"
        out+=" send lag p99 $(kv lag_p99_us "$line") us |"
        for k in get put; do
            n=$(delta "$k" count)
            out+=" servers' $k: n $(printf '%.0f' "$n"), mean"
            out+=" $(echo "scale=0; 1000000 * $(delta "$k" sum) / ($n + 1)" | bc) us,"
            for le in 0.00005 0.00025 0.001 0.0025; do
                out+=" <=${le}s $(echo "scale=1; 100 * $(delta "$k" bucket "$le") / ($n + 1)" | bc)%"
            done
            out+=";"
        done
        echo "$out"
    done
done
