#!/usr/bin/env bash
# Power loss at a realistic volume (issue 14): a million keys, with the
# nodes' data directories on synod-lossyfs, the FUSE filesystem that on a
# cut keeps only what was fsynced (file bytes by fsync/fdatasync, names by a
# directory fsync). tests/power_loss.rs proves at small volume that every
# acknowledged write survives a cut; this runs the same cut where snapshots
# of hundreds of MB are being written and segments removed, and records
# what recovery costs.
#
# One `synod playground --groups 1` (3 nodes, fsync always, default
# snapshot settings) whose directory is on the filesystem; filled with
# PL_KEYS keys of PL_VALUE_SIZE bytes by synod-bench's prefill. Then:
#   A. power cut after the fill: freeze the filesystem (every operation
#      fails from then on), SIGKILL every node, revert to the synced
#      images, restart; seconds to the first acknowledged write; every
#      prefilled key must be there (`synod keys`, a SCAN of all of them).
#   B. power cut during writes: synod-bench puts over the same keys for
#      PL_LOAD_SECS; a third of the way in, the same cut; restart; the same
#      checks (no key may be missing; the puts only overwrite).
# Needs root and /dev/fuse; exits 0 with a message otherwise.
#
# Knobs: PL_KEYS (1000000), PL_VALUE_SIZE (200), PL_PORT (19100),
# PL_LOAD_SECS (30), PL_READY_SECS (900), PL_OUT
# (perf/results/powerloss-<date>.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

KEYS=${PL_KEYS:-1000000}
VALUE_SIZE=${PL_VALUE_SIZE:-200}
PORT=${PL_PORT:-19100}
LOAD_SECS=${PL_LOAD_SECS:-30}
OUT=${PL_OUT:-$ROOT/perf/results/powerloss-$(date +%Y-%m-%d).md}
export PLAYGROUND_WAIT_SECS=${PL_READY_SECS:-900}

if [[ ! -e /dev/fuse || $(id -u) != 0 ]]; then
    echo "powerloss: needs root and /dev/fuse; skipping" >&2
    exit 0
fi

(cd "$ROOT" && cargo build --release --bins --quiet)
BIN=$ROOT/target/release
BENCH=$BIN/synod-bench

WORK=$(mktemp -d /tmp/synod-powerloss.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
"$BIN/synod-lossyfs" "$MNT" >/dev/null 2>"$WORK/lossyfs.log" &
FS_PID=$!
cleanup() {
    local rc=$?
    ((rc == 0)) || { echo "powerloss: failed; logs:" >&2; tail -5 "$WORK"/*.log "$MNT"/cluster/*.log 2>/dev/null >&2 || true; }
    stop_playground
    pkill -KILL -f -- "--data-dir $MNT/" 2>/dev/null || true
    kill -TERM "$FS_PID" 2>/dev/null || true
    sleep 1
    umount -l "$MNT" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 100); do
    grep -q mounted "$WORK/lossyfs.log" && break
    sleep 0.1
done
grep -q mounted "$WORK/lossyfs.log" || { cat "$WORK/lossyfs.log" >&2; exit 1; }

# control NAME: a lossyfs control directory (the mkdir "fails" by design).
control() { mkdir "$MNT/$1" 2>/dev/null || true; }

# prefilled_keys: how many of the prefilled keys k0..k(KEYS-1) exist.
prefilled_keys() {
    "$BIN/synod" --timeout 60 keys 'k[0-9]*' | wc -l
}

fs_mib() { ps -o rss= -p "$FS_PID" | awk '{printf "%.0f", $1 / 1024}'; }
data_mib() { du -sm "$MNT/cluster" 2>/dev/null | awk '{printf "%.0f", $1 / 3}'; }

# power_cut: freeze, SIGKILL every node, revert to what was synced.
power_cut() {
    control .freeze
    for p in $(node_pids); do kill -KILL "$p"; done
    stop_playground
    control .power-cut
}

ROWS=()
row() { ROWS+=("| $1 | $2 |"); }

# --- fill --------------------------------------------------------------------
start_playground "$MNT" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
wait_write 60 >/dev/null
t0=$(now)
"$BENCH" --masters "$SYNOD_MASTERS" --workload get --prefill yes --ops 1 \
    --keys "$KEYS" --value-size "$VALUE_SIZE" --quiet >"$WORK/prefill.out" 2>&1
row "fill: $KEYS keys of $VALUE_SIZE B" "$(since "$t0") s; data directory per node $(data_mib) MiB; lossyfs holds $(fs_mib) MiB (written and synced images)"
have=$(prefilled_keys)
row "keys before the cut" "$have of $KEYS"
[[ $have == "$KEYS" ]] || { echo "powerloss: only $have of $KEYS keys after the fill" >&2; exit 1; }

# restart_and_check STEP WHAT: restart after a cut; record the seconds to
# the first acknowledged write and how many prefilled keys are there (all
# must be).
restart_and_check() {
    local t0 secs have
    t0=$(now)
    start_playground "$MNT" "$PORT" --ready-secs "$PLAYGROUND_WAIT_SECS"
    secs=$(wait_write 900 "$t0")
    row "$1. $2, restart: first acknowledged write after" "$secs s (since the restart began); data directory per node $(data_mib) MiB"
    have=$(prefilled_keys)
    row "$1. prefilled keys after the cut" "$have of $KEYS"
    [[ $have == "$KEYS" ]] || { echo "powerloss: $((KEYS - have)) keys lost in cut $1" >&2; exit 1; }
}

# --- A. power cut after the fill --------------------------------------------
power_cut
restart_and_check A "power cut after the fill"

# --- B. power cut during writes ---------------------------------------------
"$BENCH" --masters "$SYNOD_MASTERS" --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --clients 32 --pipeline 8 --duration "$LOAD_SECS" --quiet >"$WORK/load.out" 2>&1 &
bench=$!
sleep $((LOAD_SECS / 3))
power_cut
kill -KILL "$bench" 2>/dev/null || true
wait "$bench" 2>/dev/null || true
restart_and_check B "power cut a third into ${LOAD_SECS} s of puts"
stop_playground

mkdir -p "$(dirname "$OUT")"
{
    echo "# Power loss at volume, $(date +%Y-%m-%d)"
    echo
    echo "\`perf/powerloss.sh\`: \`synod playground --groups 1\` (3 nodes, fsync always,"
    echo "default snapshot settings) with its directory on \`synod-lossyfs\`; $KEYS keys of"
    echo "$VALUE_SIZE bytes; synod-bench puts with 32 clients x 8 pipelined. A cut freezes"
    echo "the filesystem, SIGKILLs every node and reverts every file and directory to"
    echo "its last fsync. (That each acknowledged write survives is checked write by"
    echo "write at small volume by \`tests/power_loss.rs\`; here every prefilled key"
    echo "must exist after each cut, counted with \`synod keys\`.)"
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
echo "powerloss: wrote $OUT" >&2
