#!/usr/bin/env bash
# Does throughput spread over more groups or shrink? Issue 15: "measure 1,
# 3 and 6 groups with the same node count" (targets: 3 groups at least
# 0.95x the writes/s of 1 group, 6 groups at least 0.9x).
#
# For each run and each group count (interleaved: 1 3 6 1 3 6 ..., so drift
# in the machine's load hits every count alike): a fresh `synod playground
# --groups G` (3 nodes, every group on all three, fsync always, default
# --cores), then synod-bench puts (64 shards spread over the G groups by the
# master's balancer). Reports ops/s and the servers' CPU per acknowledged
# put (user+system ticks of the three synod-server processes during the
# measured run, over its puts), medians of the runs, to
# perf/results/groups-<date>.md (also printed).
#
# Knobs: GROUPS_COUNTS ("1 3 6"), GROUPS_RUNS (3), GROUPS_DURATION (10),
# GROUPS_SETTING (clients x pipeline, 64x16), GROUPS_KEYS (10000),
# GROUPS_PORT (17300), GROUPS_OUT, BIN_DIR (binaries to use; default: build
# target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

COUNTS=${GROUPS_COUNTS:-1 3 6}
put_compare_setup GROUPS groups 17300

for run in $(seq 1 "$RUNS"); do
    for g in $COUNTS; do
        SYNOD_GROUPS=$g measure_puts "$WORK" "$PORT" ||
            { echo "groups: playground with $g groups did not start" >&2; exit 1; }
        echo "groups: run $run, $g group(s): $PUT_OPS puts/s, $PUT_US us of server CPU per put (load before $PUT_LOAD)" >&2
        put_tally "$g" "$run"
    done
done

{
    echo "# Writes with 1, 3 and 6 groups on the same 3 nodes, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/groups.sh\` (GROUPS_RUNS=$RUNS, ${DURATION} s per run, ${CLIENTS}x${PIPELINE}, $KEYS keys, 64-byte values; a fresh \`synod playground --groups G\` per run, 3 nodes, fsync always). Medians of $RUNS runs, interleaved by group count. Commit $(git -C "$ROOT" rev-parse --short HEAD)."
    echo
    echo "| groups | puts/s (median) | vs 1 group | server CPU per put, µs (3 nodes, median) | runs (puts/s) |"
    echo "|---:|---:|---:|---:|---|"
    # shellcheck disable=SC2086
    put_table $COUNTS
    echo
    echo "Targets (issue 15): 3 groups at least 0.95x, 6 groups at least 0.9x the writes/s of 1 group."
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
