#!/usr/bin/env bash
# CPU time per operation of the RESP gateway and of the server cores, which
# a busy shared machine distorts much less than throughput.
#
#   perf/resp-cpu.sh LABEL BIN_DIR [LABEL BIN_DIR ...]
#
# For each build, in turn, RESP_CPU_ROUNDS (2) times: a fresh playground
# (3 nodes, one KV group, fsync always, RESP on node 0) from BIN_DIR, then
#   redis-benchmark -p PORT -c 50 -P 16 -t set -n N -r 100000 -q
#   redis-benchmark -p PORT -c 50 -P 16 -t get -n N -r 100000 -q
# and, for each, the user+system time (/proc/PID/task/*/stat) of the
# gateway's resp-loop-* threads and of the core-* threads of all 3 nodes
# over the run, divided by N, in microseconds; one line per build, round and
# command, with the 1-min load before it. Knobs: RESP_CPU_REQUESTS (N,
# 600000), RESP_CPU_ROUNDS (2), RESP_CPU_PORT (17900; RESP on +100).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

N=${RESP_CPU_REQUESTS:-600000}
ROUNDS=${RESP_CPU_ROUNDS:-2}
PORT=${RESP_CPU_PORT:-17900}
(($# >= 2 && $# % 2 == 0)) || {
    echo "usage: perf/resp-cpu.sh LABEL BIN_DIR [LABEL BIN_DIR ...]" >&2
    exit 2
}
WORK=$(mktemp -d /tmp/synod-resp-cpu.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ticks PID...: "gateway core" clock ticks used so far by these processes'
# resp-loop-* and core-* threads.
ticks() {
    local r=0 c=0 pid f name t
    for pid in "$@"; do
        for f in /proc/"$pid"/task/*; do
            name=$(cat "$f/comm" 2>/dev/null) || continue
            t=$(sed 's/^.*) //' "$f/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
            case $name in
            resp-loop*) r=$((r + ${t:-0})) ;;
            core-*) c=$((c + ${t:-0})) ;;
            esac
        done
    done
    echo "$r $c"
}

hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i += 2)); do
        label=${args[i]} dir=${args[i + 1]}
        BIN_DIR=$dir start_playground "$WORK/$label-$round" "$PORT" --resp-port $((PORT + 100))
        mapfile -t pids < <(node_pids)
        for t in set get; do
            read -r r0 c0 < <(ticks "${pids[@]}")
            load=$(cut -d' ' -f1 /proc/loadavg)
            out=$(redis-benchmark -p $((PORT + 100)) -c 50 -P 16 -t "$t" -n "$N" -r 100000 -q 2>&1 |
                tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | tail -1)
            read -r r1 c1 < <(ticks "${pids[@]}")
            awk -v l="$label" -v round="$round" -v t="$t" -v n="$N" -v hz="$hz" \
                -v r=$((r1 - r0)) -v c=$((c1 - c0)) -v load="$load" -v out="$out" \
                'BEGIN {printf "%s round %s %s: gateway %.2f us/op, cores %.2f us/op, load %s | %s\n",
                    l, round, t, r / hz * 1e6 / n, c / hz * 1e6 / n, load, out}'
        done
        stop_playground
    done
done
