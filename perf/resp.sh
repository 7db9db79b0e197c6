#!/usr/bin/env bash
# redis-benchmark against Synod's RESP gateway and against redis-server, in
# one run on one machine, back to back.
#
#   Synod: synod playground --groups 1 --resp-port P (3 nodes, one KV group
#          of all 3, fsync always); redis-benchmark talks to node 0's
#          gateway, which reaches the group leader over the binary protocol.
#   Redis: one redis-server, persistence off (--save '' --appendonly no).
#
# Both get the same command, RESP_RUNS times (median taken per column):
#   redis-benchmark -p PORT -c 50 -P 16 -t set,get -n RESP_REQUESTS -r RESP_KEYSPACE -q
#
# Then once per system, redis-benchmark's default test list where Synod
# supports the commands (RESP_SUITE_REQUESTS, default 100000, requests each):
#   redis-benchmark -p PORT -c 50 -P 16 -t set,get,incr,mset -n N -r RESP_KEYSPACE -q
#
# RESP_BEFORE_BIN_DIR=DIR also measures the binaries in DIR (synod,
# synod-server of an older build) first, so a change is compared in the
# same session. Load averages are recorded with every run: the 2 cores of
# the development VM are often shared with other builds.
#
# Knobs: RESP_RUNS (3), RESP_REQUESTS (500000), RESP_KEYSPACE (100000),
# RESP_CLIENTS (50), RESP_PIPELINE (16), RESP_BASE_PORT (17500; RESP on
# +100), RESP_REDIS_PORT (17999), RESP_OUT (perf/results/resp-<date>.md),
# RESP_NO_BUILD=1 (use target/release as it is).
# Installs redis-server and redis-tools if missing. Stops everything it
# started on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

RUNS=${RESP_RUNS:-3}
REQUESTS=${RESP_REQUESTS:-500000}
KEYSPACE=${RESP_KEYSPACE:-100000}
CLIENTS=${RESP_CLIENTS:-50}
PIPELINE=${RESP_PIPELINE:-16}
PORT=${RESP_BASE_PORT:-17500}
REDIS_PORT=${RESP_REDIS_PORT:-17999}
OUT=${RESP_OUT:-$ROOT/perf/results/resp-$(date +%Y-%m-%d).md}

WORK=$(mktemp -d /tmp/synod-resp.XXXXXX)
REDIS_PID=""
cleanup() {
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
if ((${#missing[@]} > 0)); then
    echo "resp: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ -z ${RESP_NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release --bins --quiet)
fi

BENCH_ARGS=(-c "$CLIENTS" -P "$PIPELINE" -t set,get -n "$REQUESTS" -r "$KEYSPACE" -q)
RAW=$WORK/raw.txt
: >"$RAW"
SUITE_REQUESTS=${RESP_SUITE_REQUESTS:-100000}
SUITE_ARGS=(-c "$CLIENTS" -P "$PIPELINE" -t set,get,incr,mset -n "$SUITE_REQUESTS" -r "$KEYSPACE" -q)
SUITE=$WORK/suite.txt
: >"$SUITE"

# suite LABEL PORT: one run of the default-list subset; appends
# "LABEL|TEST|requests per second" lines to $SUITE.
suite() {
    local label=$1 port=$2
    redis-benchmark -p "$port" "${SUITE_ARGS[@]}" 2>&1 | tr '\r' '\n' |
        sed -n 's/^\([A-Z][A-Za-z0-9 ()]*\): \([0-9.]*\) requests per second.*/\1|\2/p' |
        awk -F'|' -v l="$label" '{last[$1] = $2; if (!($1 in seen)) {seen[$1] = 1; order[++n] = $1}}
            END {for (i = 1; i <= n; i++) print l "|" order[i] "|" last[order[i]]}' |
        tee -a "$SUITE" >&2
}

# bench LABEL PORT [PIDS...]: RUNS runs of redis-benchmark; appends
# "LABEL run SET GET load cpu_us_per_op" lines to $RAW. CPU per op is the
# user+system time of PIDS (the servers) over the run, divided by its
# requests (SET and GET together).
bench() {
    local label=$1 port=$2 run out set get load t0 t1 cpu
    shift 2
    for run in $(seq 1 "$RUNS"); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(cpu_ticks "$@")
        out=$(redis-benchmark -p "$port" "${BENCH_ARGS[@]}" 2>&1 | tr '\r' '\n')
        t1=$(cpu_ticks "$@")
        set=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -1)
        get=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -1)
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n=$((2 * REQUESTS)) \
            'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
        echo "$label $run ${set:-NA} ${get:-NA} $load $cpu" | tee -a "$RAW" >&2
    done
}

# synod LABEL BIN_DIR: a fresh playground from BIN_DIR, measured.
synod() {
    local label=$1 dir=$2
    BIN_DIR=$dir start_playground "$WORK/$label" "$PORT" --resp-port $((PORT + 100))
    [[ -n ${SYNOD_RESP:-} ]] || {
        echo "resp: the playground printed no SYNOD_RESP line" >&2
        exit 1
    }
    mapfile -t pids < <(node_pids)
    local resp_port=${SYNOD_RESP%%,*}
    resp_port=${resp_port##*:}
    echo "resp: $label up (RESP on $SYNOD_RESP, pids ${pids[*]})" >&2
    bench "$label" "$resp_port" "${pids[@]}"
    suite "$label" "$resp_port"
    stop_playground
}

if [[ -n ${RESP_BEFORE_BIN_DIR:-} ]]; then
    synod before "$RESP_BEFORE_BIN_DIR"
fi
synod synod "$ROOT/target/release"

redis-server --port "$REDIS_PORT" --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
bench redis "$REDIS_PORT" "$REDIS_PID"
suite redis "$REDIS_PORT"

col() { awk -v l="$1" -v c="$2" '$1 == l {print $c}' "$RAW"; }
med() { median $(col "$1" "$2"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "NA" && b != "NA" && b > 0) printf "%.1f%%", 100 * a / b; else print "NA"}'; }

{
    echo "# redis-benchmark: Synod's RESP gateway vs redis-server, $(date +%Y-%m-%d)"
    echo
    echo "One session, one machine, back to back; servers and redis-benchmark share the cores."
    echo "Medians of $RUNS runs. CPU per op: user+system time of the server processes"
    echo "(for Synod: the 3 nodes, gateway included) over a run, divided by its $((2 * REQUESTS)) requests."
    echo
    echo "| system | SET/s | GET/s | SET vs Redis | GET vs Redis | server CPU per op (us) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for label in before synod redis; do
        [[ -n $(col "$label" 2) ]] || continue
        echo "| $label | $(med "$label" 3) | $(med "$label" 4) | $(ratio "$(med "$label" 3)" "$(med redis 3)") | $(ratio "$(med "$label" 4)" "$(med redis 4)") | $(med "$label" 6) |"
    done
    echo
    echo "## Default test list where supported (-t set,get,incr,mset), one run each"
    echo
    echo "| test | $(for l in before synod redis; do grep -q "^$l|" "$SUITE" && printf '%s/s | ' "$l"; done)"
    echo "|---|$(for l in before synod redis; do grep -q "^$l|" "$SUITE" && printf -- '---:|'; done)"
    for t in $(cut -d'|' -f2 "$SUITE" | awk '!seen[$0]++' | tr ' ' '_'); do
        name=${t//_/ }
        printf '| %s |' "$name"
        for l in before synod redis; do
            grep -q "^$l|" "$SUITE" || continue
            printf ' %s |' "$(awk -F'|' -v l="$l" -v t="$name" '$1 == l && $2 == t {print $3}' "$SUITE")"
        done
        echo
    done
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "synod playground --groups 1 --base-port $PORT --resp-port $((PORT + 100))   # 3 nodes, fsync always"
    echo "redis-benchmark -p $((PORT + 100)) ${BENCH_ARGS[*]}"
    echo "redis-server --port $REDIS_PORT --save '' --appendonly no"
    echo "redis-benchmark -p $REDIS_PORT ${BENCH_ARGS[*]}"
    echo "redis-benchmark -p PORT ${SUITE_ARGS[*]}   # each system, once"
    echo '```'
    echo
    echo "## Raw (label, run, SET/s, GET/s, 1-min load average before the run, server CPU us/op)"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
echo "resp: wrote $OUT" >&2
grep '^|' "$OUT" >&2
