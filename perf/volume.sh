#!/usr/bin/env bash
# Faults at a realistic volume (issue 14): a million keys and a log of
# hundreds of MB since the last snapshot, where message sizes, recovery and
# catch-up really show. Earlier, a restart of every node with such a log
# left the cluster unable to elect a leader (a 108 MB Promise); this records
# what the same faults cost now.
#
# One fresh `synod playground --groups 1` (3 nodes, fsync always) with
# snapshots pushed out of the way (--snapshot-log-slots/-bytes huge), so the
# whole fill stays in the WAL; filled with VOL_KEYS keys of VOL_VALUE_SIZE
# bytes by synod-bench's prefill. Then:
#   1. kill-all: SIGKILL every node at once, restart them all from disk;
#      seconds until a write is acknowledged again, and a read sweep of
#      random keys that must find every one (get_misses=0).
#   2. leader kill under writes: synod-bench put for VOL_LOAD_SECS; a third
#      of the way in, SIGKILL the group's leader; the run's errors, max
#      latency and throughput; then the killed node is restarted and the
#      seconds until its lag is 0 (it replays its log and catches up on
#      everything it missed) are recorded.
#   3. kill-all during writes: the same load, every node SIGKILLed mid-run
#      and restarted; seconds to the first acknowledged write, and a read
#      sweep of the prefilled keys.
# Correctness under these faults (no acknowledged write lost, histories
# linearizable) is what tests/cluster.rs, tests/nemesis.rs and
# tests/power_loss.rs check at small volume; this run checks that recovery
# works and how long it takes at volume, and that no prefilled key is gone.
#
# Knobs: VOL_KEYS (1000000), VOL_VALUE_SIZE (200), VOL_PORT (18900),
# VOL_LOAD_SECS (30), VOL_READY_SECS (900: how long a restart may take),
# VOL_OUT (perf/results/volume-<date>.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

KEYS=${VOL_KEYS:-1000000}
VALUE_SIZE=${VOL_VALUE_SIZE:-200}
PORT=${VOL_PORT:-18900}
LOAD_SECS=${VOL_LOAD_SECS:-30}
OUT=${VOL_OUT:-$ROOT/perf/results/volume-$(date +%Y-%m-%d).md}
export SYNOD_SERVER_ARGS="--snapshot-log-slots 1000000000 --snapshot-log-bytes 8000000000 ${SYNOD_SERVER_ARGS:-}"

WORK=$(mktemp -d /tmp/synod-volume.XXXXXX)
dir=$WORK/vol
# A restart replays the whole log: give it time (the playground's own
# readiness wait, and this script's wait for the playground).
export PLAYGROUND_WAIT_SECS=${VOL_READY_SECS:-900}
STRAYS=()
cleanup() {
    local rc=$? p
    ((rc == 0)) || keep_cluster_logs "$dir" >/dev/null || true
    for p in "${STRAYS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && cargo build --release --bins --quiet)
BIN=$ROOT/target/release
BENCH=$BIN/synod-bench

# sweep: reads of random prefilled keys for 10 s; prints "ops misses errors".
sweep() {
    local line
    line=$("$BENCH" --masters "$SYNOD_MASTERS" --workload get --prefill no --keys "$KEYS" \
        --clients 16 --pipeline 8 --duration 10 --quiet | tail -1)
    echo "$(kv ops "$line") $(kv get_misses "$line") $(kv errors "$line")"
}

# status_field EXPR: evaluate a Python expression over `admin status`'s JSON `s`.
status_field() {
    "$BIN/synod" admin status 2>/dev/null |
        python3 -c "import json,sys; s=json.loads(sys.stdin.read()); print($1)"
}

# The KV group's leader (gid 0 is the master group).
leader_addr() {
    status_field "[m['addr'] for g in s['groups'] if g['gid'] != 0 for m in g['members'] if m['leader']][0]"
}

pid_of() { pgrep -f -- "synod-server --listen $1 " | head -1; }

wal_mib() { du -sm "$dir/cluster" | awk '{printf "%.0f", $1 / 3}'; }

ROWS=()
row() { ROWS+=("| $1 | $2 |"); }

# --- fill --------------------------------------------------------------------
start_playground "$dir" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
wait_write 60 >/dev/null
t0=$(now)
"$BENCH" --masters "$SYNOD_MASTERS" --workload get --prefill yes --ops 1 \
    --keys "$KEYS" --value-size "$VALUE_SIZE" --quiet >"$dir/prefill.out" 2>&1
row "fill: $KEYS keys of $VALUE_SIZE B" "$(since "$t0") s; data directory per node $(wal_mib) MiB (WAL only: no snapshot yet)"

# --- 1. kill-all, restart ----------------------------------------------------
for p in $(node_pids); do kill -KILL "$p"; done
stop_playground
t0=$(now)
start_playground "$dir" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
secs=$(wait_write 600 "$t0")
row "1. SIGKILL all 3, restart: first acknowledged write after" "$secs s (since the restart began)"
read -r ops misses errors <<<"$(sweep)"
row "1. read sweep after restart (random prefilled keys, 10 s)" "$ops reads, $misses missing, $errors errors"

# --- 2. leader killed under writes ------------------------------------------
leader=$(leader_addr)
lpid=$(pid_of "$leader")
cmdline=$(tr '\0' ' ' <"/proc/$lpid/cmdline")
"$BENCH" --masters "$SYNOD_MASTERS" --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --clients 32 --pipeline 8 --duration "$LOAD_SECS" --quiet >"$dir/load2.out" 2>&1 &
bench=$!
sleep $((LOAD_SECS / 3))
kill -KILL "$lpid"
wait "$bench" || true
line=$(tail -1 "$dir/load2.out")
row "2. SIGKILL the leader ($leader) a third into ${LOAD_SECS} s of puts" "$(kv ops "$line") puts, $(kv ops_per_sec "$line")/s, errors $(kv errors "$line"), timeouts $(kv timeouts "$line"), max latency $(kv max_us "$line") us"
t0=$(now)
# The same command line, outside the playground (which does not restart nodes).
setsid bash -c "exec $cmdline" >"$dir/restarted.log" 2>&1 &
STRAYS+=($!)
caught=
for _ in $(seq 1 2400); do
    lag=$(status_field "[m['lag'] for g in s['groups'] if g['gid'] != 0 for m in g['members'] if m['addr'] == '$leader'][0]" || echo None)
    if [[ $lag == 0 ]]; then
        caught=$(since "$t0")
        break
    fi
    sleep 0.25
done
row "2. the killed node restarted: lag 0 (replayed its log, caught up) after" "${caught:-not within 600} s; data directory per node now $(wal_mib) MiB"
kill -KILL "${STRAYS[@]}" 2>/dev/null || true
STRAYS=()

# --- 3. kill-all during writes -----------------------------------------------
stop_playground
start_playground "$dir" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
wait_write 600 >/dev/null
"$BENCH" --masters "$SYNOD_MASTERS" --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --clients 32 --pipeline 8 --duration "$LOAD_SECS" --quiet >"$dir/load3.out" 2>&1 &
bench=$!
sleep $((LOAD_SECS / 3))
for p in $(node_pids); do kill -KILL "$p"; done
kill -KILL "$bench" 2>/dev/null || true
wait "$bench" 2>/dev/null || true
stop_playground
t0=$(now)
start_playground "$dir" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
secs=$(wait_write 600 "$t0")
row "3. SIGKILL all 3 during puts, restart: first acknowledged write after" "$secs s; data directory per node $(wal_mib) MiB"
read -r ops misses errors <<<"$(sweep)"
row "3. read sweep after restart" "$ops reads, $misses missing, $errors errors"
stop_playground

mkdir -p "$(dirname "$OUT")"
{
    echo "# Faults at volume, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/volume.sh\`: \`synod playground --groups 1\` (3 nodes, fsync always) with"
    echo "\`$SYNOD_SERVER_ARGS\` (no snapshot: the whole fill stays in the log),"
    echo "$KEYS keys of $VALUE_SIZE bytes; synod-bench puts with 32 clients x 8 pipelined."
    echo
    echo "| step | result |"
    echo "|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
cat "$OUT"
echo "volume: wrote $OUT" >&2
