#!/usr/bin/env bash
# Snapshot stalls at volume (issue 15): does taking a snapshot of a large
# store stall the event loop? One fresh `synod playground --groups 1`
# (3 nodes, fsync always) per build, KEYS keys of VALUE_SIZE bytes put
# first, then synod-bench puts at a fixed RATE (open loop) for DURATION
# seconds with a snapshot every SLOTS slots, so the run crosses several
# snapshots of the whole store. Prints one line per run: the bench's
# latency figures (p50/p99/p99.9/max) and how many snapshots the leader
# took during it (its `synod_snapshots_total`).
#
# A/B: SNAP_BINS="DIR_A DIR_B" runs each build's release binaries in turn,
# RUNS times, interleaved (A B A B ...), so both see the same machine.
#
# Usage: perf/snapstall.sh            (this checkout's target/release)
#        SNAP_BINS="/old/target/release /new/target/release" perf/snapstall.sh
# Knobs: SNAP_KEYS (1000000), SNAP_VALUE_SIZE (64), SNAP_RATE (5000),
#        SNAP_DURATION (60), SNAP_SLOTS (4096), SNAP_RUNS (3), SNAP_PORT (18700),
#        SNAP_SERVER_ARGS (more synod-server flags, e.g.
#        "--snapshot-log-percent 0" to snapshot on slots alone; every build
#        in SNAP_BINS must know them)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

BINS=${SNAP_BINS:-$ROOT/target/release}
KEYS=${SNAP_KEYS:-1000000}
VALUE_SIZE=${SNAP_VALUE_SIZE:-64}
RATE=${SNAP_RATE:-5000}
DURATION=${SNAP_DURATION:-60}
SLOTS=${SNAP_SLOTS:-4096}
RUNS=${SNAP_RUNS:-3}
PORT=${SNAP_PORT:-18700}
export PLAYGROUND_WAIT_SECS=300

if [[ -z ${SNAP_BINS:-} ]]; then
    (cd "$ROOT" && cargo build --release --bins --quiet)
fi

WORK=$(mktemp -d /tmp/synod-snapstall.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sum of synod_snapshots_total over the three nodes' /metrics.
snapshots() {
    local total=0 i n
    for i in 0 1 2; do
        n=$(curl -s "http://127.0.0.1:$((PORT + 200 + i))/metrics" |
            awk '/^synod_snapshots_total/ {s += $2} END {printf "%d", s}')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

echo "snapstall: $KEYS keys of $VALUE_SIZE B, puts at $RATE/s for $DURATION s, snapshot every $SLOTS slots, $(nproc) cores"
for run in $(seq 1 "$RUNS"); do
    for bin in $BINS; do
        rm -rf "$WORK/cluster" "$WORK"/playground.*
        export BIN_DIR=$bin
        SYNOD_SERVER_ARGS="--snapshot-log-slots $SLOTS ${SNAP_SERVER_ARGS:-}" start_playground "$WORK" "$PORT"
        "$bin/synod-bench" --masters "$SYNOD_MASTERS" --cluster-key-file "$SYNOD_CLUSTER_KEY_FILE" \
            --workload put --prefill yes --ops 1 --keys "$KEYS" --value-size "$VALUE_SIZE" \
            --clients 32 --pipeline 8 --quiet >/dev/null
        before=$(snapshots)
        line=$("$bin/synod-bench" --masters "$SYNOD_MASTERS" --cluster-key-file "$SYNOD_CLUSTER_KEY_FILE" \
            --workload put --prefill no --keys "$KEYS" --value-size "$VALUE_SIZE" \
            --rate "$RATE" --clients 64 --pipeline 16 --duration "$DURATION" --warmup 1 --quiet | tail -1)
        after=$(snapshots)
        echo "run $run $bin: snapshots_during=$((after - before)) $line"
        stop_playground
    done
done
