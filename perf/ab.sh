#!/usr/bin/env bash
# Two builds of Synod side by side, in one run on one machine: did a change
# move throughput?
#
#   AB_BEFORE_BIN_DIR=DIR (required): synod, synod-server and synod-bench of
#   the older build (build it into its own target dir, e.g.
#     git archive OLD | tar -x -C /tmp/old && (cd /tmp/old && cargo build --release --bins)
#   and pass /tmp/old/target/release). The new build is target/release, or
#   AB_AFTER_BIN_DIR (then nothing is built), to compare two old commits.
#
# Each run starts a fresh playground (3 nodes, one KV group, fsync always,
# RESP on node 0) from one build and measures, with that build's own
# synod-bench and gateway:
#   synod-bench --workload put|get --clients AB_CLIENTS --pipeline AB_PIPELINE
#   redis-benchmark -c 50 -P 16 -t set,get against the RESP port
# Runs alternate between the builds (before, after, before, ...), AB_RUNS
# (3) of each, so drift in the machine's load hits both alike; medians are
# reported with the 1-min load average before each measurement, and the
# CPU time per operation of the three servers (user+system ticks over the
# whole bench run, warm-up included, over ops/s x (duration + warm-up)) and
# of the load generator (bash's `time`): CPU per operation moves less than
# ops/s when other work shares the cores.
#
# Knobs: AB_RUNS (3), AB_DURATION (10), AB_CLIENTS (64), AB_PIPELINE (16),
# AB_REQUESTS (500000), AB_KEYSPACE (100000), AB_PORT (17700; RESP on +100),
# AB_OUT (perf/results/ab-<date>.md), AB_NO_BUILD=1 (use target/release as
# it is). Installs redis-tools if missing. Stops everything it started on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

BEFORE=${AB_BEFORE_BIN_DIR:?set AB_BEFORE_BIN_DIR to the target/release of the older build}
RUNS=${AB_RUNS:-3}
DURATION=${AB_DURATION:-10}
CLIENTS=${AB_CLIENTS:-64}
PIPELINE=${AB_PIPELINE:-16}
REQUESTS=${AB_REQUESTS:-500000}
KEYSPACE=${AB_KEYSPACE:-100000}
PORT=${AB_PORT:-17700}
OUT=${AB_OUT:-$ROOT/perf/results/ab-$(date +%Y-%m-%d).md}

WORK=$(mktemp -d /tmp/synod-ab.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v redis-benchmark >/dev/null 2>&1 || {
    echo "ab: installing redis-tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
}
if [[ -z ${AB_NO_BUILD:-} && -z ${AB_AFTER_BIN_DIR:-} ]]; then
    (cd "$ROOT" && cargo build --release --bins --quiet)
fi
AFTER=${AB_AFTER_BIN_DIR:-$ROOT/target/release}

BENCH_ARGS=(--clients "$CLIENTS" --pipeline "$PIPELINE" --warmup 1 --duration "$DURATION" --quiet)
REDIS_ARGS=(-c 50 -P 16 -n "$REQUESTS" -r "$KEYSPACE" -q)
RAW=$WORK/raw.txt
: >"$RAW"

# bench DIR ARGS...: one synod-bench run; prints its last line followed by
# "server_us=... bench_us=..." (CPU per operation of the servers and of
# the bench itself).
bench() {
    local dir=$1 line t0 t1 ops user sys
    shift
    t0=$(cpu_ticks "${NODES[@]}")
    local TIMEFORMAT='%U %S'
    { time "$dir/synod-bench" "$@" "${BENCH_ARGS[@]}" >"$WORK/bench.out" 2>/dev/null; } 2>"$WORK/bench.time"
    t1=$(cpu_ticks "${NODES[@]}")
    line=$(tail -1 "$WORK/bench.out")
    read -r user sys <"$WORK/bench.time"
    ops=$(awk -v r="$(kv ops_per_sec "$line")" -v d="$DURATION" 'BEGIN {printf "%d", r * (d + 1)}')
    echo "$line server_us=$(per_op $((t1 - t0)) "$ops") bench_us=$(awk -v u="$user" -v s="$sys" -v n="$ops" 'BEGIN {if (n > 0) printf "%.2f", (u + s) * 1e6 / n; else print "NA"}')"
}

# measure LABEL RUN BIN_DIR: one playground from BIN_DIR, put, get, RESP.
measure() {
    local label=$1 run=$2 dir=$3 put get out set rget lp lg lr t0 t1 set_us
    BIN_DIR=$dir start_playground "$WORK/$label-$run" "$PORT" --resp-port $((PORT + 100))
    local resp_port=${SYNOD_RESP%%,*}
    resp_port=${resp_port##*:}
    mapfile -t NODES < <(node_pids)
    lp=$(cut -d' ' -f1 /proc/loadavg)
    put=$(bench "$dir" --workload put)
    lg=$(cut -d' ' -f1 /proc/loadavg)
    get=$(bench "$dir" --workload get)
    lr=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(cpu_ticks "${NODES[@]}")
    out=$(redis-benchmark -p "$resp_port" -t set "${REDIS_ARGS[@]}" 2>&1 | tr '\r' '\n')
    t1=$(cpu_ticks "${NODES[@]}")
    set=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -1)
    set_us=$(per_op $((t1 - t0)) "$REQUESTS")
    out=$(redis-benchmark -p "$resp_port" -t get "${REDIS_ARGS[@]}" 2>&1 | tr '\r' '\n')
    rget=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -1)
    echo "$label $run $(kv ops_per_sec "$put") $(kv ops_per_sec "$get") ${set:-NA} ${rget:-NA} $lp $lg $lr $(kv errors "$put") $(kv errors "$get") $(kv server_us "$put") $(kv bench_us "$put") $(kv server_us "$get") $(kv bench_us "$get") $set_us" |
        tee -a "$RAW" >&2
    stop_playground
}

for run in $(seq 1 "$RUNS"); do
    measure before "$run" "$BEFORE"
    measure after "$run" "$AFTER"
done

col() { awk -v l="$1" -v c="$2" '$1 == l {print $c}' "$RAW"; }
med() { median $(col "$1" "$2"); }
change() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "NA" && b != "NA" && a > 0) printf "%+.1f%%", 100 * (b - a) / a; else print "NA"}'; }

{
    echo "# Before/after: synod-bench and the RESP gateway, $(date +%Y-%m-%d)"
    echo
    echo "One run, one machine, builds alternating (before, after, ...); servers and load"
    echo "generators share the cores. Medians of $RUNS runs each (ops/s)."
    echo
    echo "| build | synod-bench put | synod-bench get | RESP SET | RESP GET |"
    echo "|---|---:|---:|---:|---:|"
    for label in before after; do
        echo "| $label | $(med "$label" 3) | $(med "$label" 4) | $(med "$label" 5) | $(med "$label" 6) |"
    done
    echo "| change | $(change "$(med before 3)" "$(med after 3)") | $(change "$(med before 4)" "$(med after 4)") | $(change "$(med before 5)" "$(med after 5)") | $(change "$(med before 6)" "$(med after 6)") |"
    echo
    echo "CPU per operation, µs (medians): servers (3 nodes, the RESP gateway included) and the load generator."
    echo
    echo "| build | servers per put | synod-bench per put | servers per get | synod-bench per get | servers per RESP SET |"
    echo "|---|---:|---:|---:|---:|---:|"
    for label in before after; do
        echo "| $label | $(med "$label" 12) | $(med "$label" 13) | $(med "$label" 14) | $(med "$label" 15) | $(med "$label" 16) |"
    done
    echo "| change | $(change "$(med before 12)" "$(med after 12)") | $(change "$(med before 13)" "$(med after 13)") | $(change "$(med before 14)" "$(med after 14)") | $(change "$(med before 15)" "$(med after 15)") | $(change "$(med before 16)" "$(med after 16)") |"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "synod playground --groups 1 --base-port $PORT --resp-port $((PORT + 100))   # 3 nodes, fsync always"
    echo "synod-bench --workload put ${BENCH_ARGS[*]}"
    echo "synod-bench --workload get ${BENCH_ARGS[*]}"
    echo "redis-benchmark -p $((PORT + 100)) -t set|get ${REDIS_ARGS[*]}"
    echo '```'
    echo
    echo "Before: \`$BEFORE\`; after: \`$AFTER\`."
    echo
    echo "## Raw (label, run, put/s, get/s, RESP SET/s, RESP GET/s, 1-min load before put, get, RESP; put errors, get errors; CPU µs per op: servers per put, bench per put, servers per get, bench per get, servers per RESP SET)"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
echo "ab: wrote $OUT" >&2
grep '^|' "$OUT" >&2
