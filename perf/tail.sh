#!/usr/bin/env bash
# The put tail of two builds at one fixed open-loop rate, runs alternating:
# an A/B for changes aimed at stalls (issue 15), where perf/latency.sh's
# peak-relative rate would differ between builds and its 10 s runs often
# miss the event (a WAL segment deletion comes every 64 MiB of log).
#
# For each run and each build: a fresh `synod playground --groups 1` (3
# nodes, fsync always), 10,000 keys prefilled, 3 s of closed-loop puts to
# warm up, then `synod-bench --rate TAIL_RATE` for TAIL_SECS; one line per
# run with ops/s, p50/p99/p99.9/max, the generator's send lag p99 and the
# servers' own mean put latency over the run (from every node's
# synod_request_duration_seconds sum and count: request read in to reply
# queued, without the load generator's queueing) and every node's mean WAL
# group commit (synod_wal_sync_duration_seconds: write + fdatasync), and
# the medians per build. No build step: give two directories of release binaries.
#
# Usage: perf/tail.sh DIR_A DIR_B
# Knobs (environment):
#   TAIL_RATE   puts/s offered, default 36000 (half of this VM's put peak)
#   TAIL_SECS   measured seconds per run, default 30
#   TAIL_RUNS   runs per build, default 3
#   TAIL_PORT   first cluster port, default 18700
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

RATE=${TAIL_RATE:-36000}
SECS=${TAIL_SECS:-30}
RUNS=${TAIL_RUNS:-3}
PORT=${TAIL_PORT:-18700}
[[ $# -eq 2 ]] || { echo "usage: perf/tail.sh DIR_A DIR_B" >&2; exit 2; }

WORK=$(mktemp -d /tmp/synod-tail.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A P99 MAX P50 SRV SYNC

# seconds NAME [LABELS]: histogram NAME's sum and count over every node,
# "SUM COUNT" (LABELS as exposed, e.g. '{kind="put"}').
seconds() {
    local u text s c sum=0 count=0
    for u in ${SYNOD_METRICS//,/ }; do
        text=$(curl -s --max-time 2 "$u" || true)
        s=$(grep -F "${1}_sum${2:-} " <<<"$text" | head -1 | cut -d' ' -f2)
        c=$(grep -F "${1}_count${2:-} " <<<"$text" | head -1 | cut -d' ' -f2)
        sum=$(echo "$sum + ${s:-0}" | bc)
        count=$((count + ${c:-0}))
    done
    echo "$sum $count"
}

for r in $(seq 1 "$RUNS"); do
    for d in "$1" "$2"; do
        export BIN_DIR=$d
        rm -rf "$WORK/cluster" "$WORK"/playground.*
        start_playground "$WORK" "$PORT"
        bench="$d/synod-bench"
        "$bench" --workload get --prefill yes --ops 1 --keys 10000 --quiet >/dev/null 2>&1
        "$bench" --workload put --clients 64 --pipeline 16 --duration 3 --keys 10000 \
            --prefill no --quiet >/dev/null 2>&1
        SYNOD_METRICS=$(sed -n 's/^SYNOD_METRICS=//p' "$WORK/playground.out" | head -1)
        read -r s0 c0 <<<"$(seconds synod_request_duration_seconds '{kind="put"}')"
        read -r w0 n0 <<<"$(seconds synod_wal_sync_duration_seconds)"
        line=$("$bench" --workload put --rate "$RATE" --clients 64 --pipeline 16 \
            --duration "$SECS" --warmup 1 --keys 10000 --prefill no --quiet 2>/dev/null | tail -1)
        read -r s1 c1 <<<"$(seconds synod_request_duration_seconds '{kind="put"}')"
        read -r w1 n1 <<<"$(seconds synod_wal_sync_duration_seconds)"
        srv=$(echo "1000000 * ($s1 - $s0) / ($c1 - $c0 + 1)" | bc)
        sync=$(echo "1000000 * ($w1 - $w0) / ($n1 - $n0 + 1)" | bc)
        stop_playground
        echo "$d run $r: ops/s $(kv ops_per_sec "$line") p50 $(kv p50_us "$line") us," \
            "p99 $(kv p99_us "$line") us, p99.9 $(kv p999_us "$line") us," \
            "max $(kv max_us "$line") us, send lag p99 $(kv lag_p99_us "$line") us," \
            "server mean $srv us, WAL sync mean $sync us, load $(cut -d' ' -f1-3 /proc/loadavg)"
        P50[$d]="${P50[$d]:-} $(kv p50_us "$line")"
        SRV[$d]="${SRV[$d]:-} $srv"
        SYNC[$d]="${SYNC[$d]:-} $sync"
        P99[$d]="${P99[$d]:-} $(kv p99_us "$line")"
        MAX[$d]="${MAX[$d]:-} $(kv max_us "$line")"
    done
done
for d in "$1" "$2"; do
    # shellcheck disable=SC2086
    echo "$d: median p50 $(median ${P50[$d]}) us, p99 $(median ${P99[$d]}) us," \
        "max $(median ${MAX[$d]}) us, server mean $(median ${SRV[$d]}) us," \
        "WAL sync mean $(median ${SYNC[$d]}) us"
done
