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
# target/release). GROUPS_VARIANTS: server settings to compare in the same
# run, "label=server args" separated by ";" (say "per-group=--peer-conns
# per-group;shared=--peer-conns shared"), interleaved within every group
# count; default one variant, SYNOD_SERVER_ARGS as given. A variant may
# also give synod-bench arguments after a "|" ("label=server args|bench
# args", say "per-client=|--conn-per-client;shared=|"). PUT_SYSCALLS=1
# also counts the servers' socket sends and receives per put (perf stat on
# the syscall tracepoints; needs perf and root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

COUNTS=${GROUPS_COUNTS:-1 3 6}
put_compare_setup GROUPS groups 17300
IFS=';' read -r -a VARIANTS <<<"${GROUPS_VARIANTS:-=${SYNOD_SERVER_ARGS:-}}"

for run in $(seq 1 "$RUNS"); do
    for g in $COUNTS; do
        for v in "${VARIANTS[@]}"; do
            label=${v%%=*}
            args=${v#*=}
            bench_args=""
            if [[ $args == *"|"* ]]; then
                bench_args=${args#*|}
                args=${args%%|*}
            fi
            SYNOD_SERVER_ARGS=$args SYNOD_BENCH_ARGS=$bench_args SYNOD_GROUPS=$g \
                measure_puts "$WORK" "$PORT" ||
                { echo "groups: playground with $g groups did not start" >&2; exit 1; }
            echo "groups: run $run, $g group(s)${label:+ ($label)}: $PUT_OPS puts/s, $PUT_US us of server CPU per put, sends/recvs per put ${PUT_SENDS:-NA}/${PUT_RECVS:-NA} (load before $PUT_LOAD)" >&2
            put_tally "$g${label:+ $label}" "$run"
        done
    done
done

# One row per variant and group count; the ratio is to 1 group (the first
# count) of the same variant.
rows() {
    local v label key base m
    for v in "${VARIANTS[@]}"; do
        label=${v%%=*}
        base=""
        for g in $COUNTS; do
            key="$g${label:+ $label}"
            # shellcheck disable=SC2086
            m=$(median ${OPS[$key]})
            [[ -n $base ]] || base=$m
            # shellcheck disable=SC2086
            echo "| $g | ${label:--} | $m | $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')x | $(median ${CPU[$key]}) | $(median ${SENDS[$key]}) / $(median ${RECVS[$key]}) | ${OPS[$key]}|"
        done
    done
}

{
    echo "# Writes with 1, 3 and 6 groups on the same 3 nodes, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/groups.sh\` (GROUPS_RUNS=$RUNS, ${DURATION} s per run, ${CLIENTS}x${PIPELINE}, $KEYS keys, 64-byte values; a fresh \`synod playground --groups G\` per run, 3 nodes, fsync always). Medians of $RUNS runs, interleaved by group count${GROUPS_VARIANTS:+ and variant}. Commit $(git -C "$ROOT" rev-parse --short HEAD)."
    if [[ -n ${GROUPS_VARIANTS:-} ]]; then
        echo
        echo "Variants (server arguments|synod-bench arguments): \`$GROUPS_VARIANTS\`."
    fi
    echo
    echo "| groups | variant | puts/s (median) | vs 1 group | server CPU per put, µs (3 nodes, median) | socket sends / receives per put (3 nodes, median) | runs (puts/s) |"
    echo "|---:|---|---:|---:|---:|---:|---|"
    rows
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
