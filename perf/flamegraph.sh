#!/usr/bin/env bash
# CPU flamegraph of the busiest synod-server (the KV leader) under load.
#
# usage: perf/flamegraph.sh [NAME]
#
# Starts a local playground cluster (3 nodes, fsync on), drives it with
# synod-bench, records `perf record -F 999 -g` of the busiest node for
# FLAME_SECONDS, and writes perf/results/flame-NAME.svg plus
# perf/results/flame-NAME-top.txt (the hottest functions by self time).
# Installs perf (Debian: linux-perf) and inferno (cargo) if missing.
# Exits non-zero, saying why, if perf cannot sample on this machine.
#
# Knobs: FLAME_SECONDS (10), FLAME_WORKLOAD (put), FLAME_CLIENTS (32),
# FLAME_PIPELINE (16), FLAME_CALLGRAPH (dwarf | fp; default dwarf, because
# release builds do not keep frame pointers), FLAME_PORT (7500),
# FLAME_FOLDED (also copy the folded stacks there, to ask who calls what),
# BIN_DIR (profile the synod, synod-server and synod-bench found there, e.g.
# an older build's, instead of building target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

NAME=${1:-$(date +%Y-%m-%d)-${FLAME_WORKLOAD:-put}}
SECONDS_TO_RECORD=${FLAME_SECONDS:-10}
WORKLOAD=${FLAME_WORKLOAD:-put}
CLIENTS=${FLAME_CLIENTS:-32}
PIPELINE=${FLAME_PIPELINE:-16}
CALLGRAPH=${FLAME_CALLGRAPH:-dwarf}
PORT=${FLAME_PORT:-7500}
RESULTS=$ROOT/perf/results
SVG=$RESULTS/flame-$NAME.svg
TOP=$RESULTS/flame-$NAME-top.txt

die() {
    echo "flamegraph: $*" >&2
    exit 1
}

# --- tools -----------------------------------------------------------------
if ! command -v perf >/dev/null 2>&1; then
    echo "flamegraph: installing linux-perf" >&2
    apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null ||
        die "cannot install linux-perf (need root and Debian's package lists)"
fi
command -v perf >/dev/null 2>&1 || die "perf is not on PATH after installing linux-perf"
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "flamegraph: installing inferno (cargo install inferno)" >&2
    cargo install --locked --quiet inferno || die "cannot install inferno"
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# --- can perf sample here? -------------------------------------------------
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown)
if [[ $paranoid != unknown && $paranoid -gt 1 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        echo "flamegraph: kernel.perf_event_paranoid=$paranoid; setting it to -1 (root)" >&2
        sysctl -q kernel.perf_event_paranoid=-1 || true
    else
        echo "flamegraph: kernel.perf_event_paranoid=$paranoid and not root: sampling another process may be refused" >&2
    fi
fi
# Virtual machines often expose no hardware counters: fall back to the
# kernel's cpu-clock timer, which samples just as well for a CPU profile.
EVENT=()
if perf stat -e instructions true 2>&1 | grep -q 'not supported'; then
    echo "flamegraph: no hardware counters here (instructions <not supported>); sampling cpu-clock" >&2
    EVENT=(-e cpu-clock)
fi
probe=$(mktemp /tmp/perf-probe.XXXXXX)
if ! perf record "${EVENT[@]}" -F 999 -g -o "$probe" -- sleep 0.1 >/dev/null 2>&1; then
    rm -f "$probe"
    die "perf cannot record on this machine (perf_event_paranoid=$paranoid; try as root: sysctl kernel.perf_event_paranoid=-1)"
fi
rm -f "$probe"

# --- cluster and load ------------------------------------------------------
WORK=$(mktemp -d /tmp/synod-flame.XXXXXX)
BENCH_PID=""
cleanup() {
    if [[ -n $BENCH_PID ]]; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${BIN_DIR:-} ]]; then
    (cd "$ROOT" && cargo build --release --bins --quiet)
fi
start_playground "$WORK" "$PORT"
echo "flamegraph: cluster up, SYNOD_MASTERS=$SYNOD_MASTERS" >&2

# Load for longer than the recording: warmup, leader detection, slack.
"${BIN_DIR:-$ROOT/target/release}/synod-bench" --workload "$WORKLOAD" --clients "$CLIENTS" \
    --pipeline "$PIPELINE" --warmup 1 --duration $((SECONDS_TO_RECORD + 4)) --quiet \
    >"$WORK/bench.out" 2>"$WORK/bench.err" &
BENCH_PID=$!
sleep 2
mapfile -t NODES < <(node_pids)
((${#NODES[@]} > 0)) || die "no synod-server processes found under the playground"
TARGET=$(busiest "${NODES[@]}")
echo "flamegraph: recording synod-server pid $TARGET (the busiest of ${NODES[*]}) for ${SECONDS_TO_RECORD}s" >&2

perf record "${EVENT[@]}" -F 999 -g --call-graph "$CALLGRAPH" -p "$TARGET" \
    -o "$WORK/perf.data" -- sleep "$SECONDS_TO_RECORD" 2>"$WORK/perf-record.err" ||
    die "perf record failed: $(tail -3 "$WORK/perf-record.err")"
wait "$BENCH_PID" || true
BENCH_PID=""
echo "flamegraph: load during the recording: $(tail -1 "$WORK/bench.out")" >&2

# --- outputs ---------------------------------------------------------------
mkdir -p "$RESULTS"
echo "flamegraph: folding stacks (perf script | inferno-collapse-perf)" >&2
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/folded"
if [[ -n ${FLAME_FOLDED:-} ]]; then cp "$WORK/folded" "$FLAME_FOLDED"; fi
inferno-flamegraph --title "synod-server under synod-bench $WORKLOAD ${CLIENTS}x${PIPELINE} (fsync on)" \
    --minwidth 0.2 <"$WORK/folded" >"$SVG"
{
    echo "# synod-server (pid $TARGET, busiest of 3) under: synod-bench --workload $WORKLOAD --clients $CLIENTS --pipeline $PIPELINE"
    echo "# perf record ${EVENT[*]} -F 999 -g --call-graph $CALLGRAPH -p PID -- sleep $SECONDS_TO_RECORD"
    echo "# load: $(tail -1 "$WORK/bench.out")"
    echo "# perf report --stdio --no-children -g none | head -60"
    # Through a file: `| head` would end perf with SIGPIPE, which
    # pipefail turns into a failure of the whole script.
    perf report -i "$WORK/perf.data" --stdio --no-children -g none >"$WORK/report.txt" 2>/dev/null
    head -n 60 "$WORK/report.txt"
} >"$TOP"
echo "flamegraph: wrote $SVG ($(du -h "$SVG" | cut -f1)) and $TOP" >&2
