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

put_compare_setup PB pb 17500

for run in $(seq 1 "$RUNS"); do
    for mode in paxos pb; do
        SYNOD_GROUPS=1 measure_puts "$WORK" "$PORT" --mode "$mode" --pb-replicas 2 ||
            { echo "pb: playground --mode $mode did not start" >&2; exit 1; }
        echo "pb: run $run, $mode: $PUT_OPS puts/s, $PUT_US us of server CPU per put (load before $PUT_LOAD)" >&2
        put_tally "$mode" "$run"
    done
done

{
    echo "# Writes: a 2-replica primary/backup group vs a 3-replica Paxos group, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/pb.sh\` (PB_RUNS=$RUNS, ${DURATION} s per run, ${CLIENTS}x${PIPELINE}, $KEYS keys, 64-byte values; a fresh \`synod playground --groups 1 --mode paxos|pb --pb-replicas 2\` per run: 3 nodes, all masters; the Paxos group on all 3, the pb group on 2; fsync always). Medians of $RUNS runs, interleaved. Commit $(git -C "$ROOT" rev-parse --short HEAD)."
    echo
    echo "| mode | puts/s (median) | vs Paxos | server CPU per put, µs (3 nodes, median) | runs (puts/s) |"
    echo "|---|---|---|---|---|"
    put_table paxos pb
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
