#!/usr/bin/env bash
# One large shard moved between groups: how long it takes and what it costs
# the servers in memory. A measurement, not a test: it fails only if the
# cluster dies or a value is wrong after the move.
#
# For each value size, on a fresh local playground with two KV groups (each
# replicated on all 3 nodes, so every node hosts a replica of the sender and
# of the receiver): fill one shard with MIGRATE_BYTES of values
# (tools/src/bin/synod-shard-fill.rs), move it with `synod admin move`, wait until a replica
# of the new owner logs the install, check every value from the new owner,
# and record each server's VmRSS and VmHWM (peak) along the way. Writes
# perf/results/migrate-<date>.md.
#
# Knobs (environment):
#   MIGRATE_BYTES        value bytes in the shard (default 100000000)
#   MIGRATE_VALUE_SIZES  bytes per value, one run each (default "1000 100":
#                        100 000 and 1 000 000 keys for 100 MB)
#   MIGRATE_SHARD        the shard to move (default 0)
#   MIGRATE_PORT         first cluster port (default 17400)
#   MIGRATE_OUT          output file (default perf/results/migrate-<date>.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

BYTES=${MIGRATE_BYTES:-100000000}
VALUE_SIZES=${MIGRATE_VALUE_SIZES:-1000 100}
SHARD=${MIGRATE_SHARD:-0}
PORT=${MIGRATE_PORT:-17400}
OUT=${MIGRATE_OUT:-$ROOT/perf/results/migrate-$(date +%Y-%m-%d).md}
SYNOD=$ROOT/target/release/synod
FILL=$ROOT/target/release/synod-shard-fill

WORK=$(mktemp -d /tmp/synod-migrate.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "migrate: building release binaries" >&2
(cd "$ROOT" && cargo build --release --bins --quiet)

# Per-chunk lines (debug) so the chunks can be counted from the logs.
export RUST_LOG=${RUST_LOG:-info,synod::shardkv=debug}

# shard_owner: the gid that owns $SHARD in the latest configuration.
shard_owner() {
    "$SYNOD" admin query | sed -n 's/.*"shards":\[\([^]]*\)\].*/\1/p' | cut -d, -f$((SHARD + 1))
}

# lost: keep the logs of a cluster that died or stalled, and give up.
lost() {
    echo "migrate: $1" >&2
    keep_cluster_logs "$DIR" >/dev/null
    exit 1
}

SECTIONS=()
# run_case VALUE_SIZE: one fill, move and check on a fresh cluster; appends
# its markdown section to SECTIONS.
run_case() {
    local value_size=$1 pids pid label fill move num installed i secs chunks records sent check
    local memory=()
    DIR=$WORK/v$value_size
    SYNOD_GROUPS=2 start_playground "$DIR" "$PORT"
    echo "migrate: cluster up, SYNOD_MASTERS=$SYNOD_MASTERS" >&2
    mapfile -t pids < <(node_pids)
    # snap_memory LABEL: one table row per server, MiB.
    snap_memory() {
        for pid in "${pids[@]}"; do
            memory+=("| $1 | $pid | $(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") | $(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") |")
        done
    }
    snap_memory "after start"
    local from to
    from=$(shard_owner)
    to=$((from == 1 ? 2 : 1))
    echo "migrate: filling shard $SHARD (group $from) with $BYTES bytes of $value_size-byte values" >&2
    fill=$("$FILL" --shard "$SHARD" --bytes "$BYTES" --value-size "$value_size" | tail -1)
    echo "migrate: $fill" >&2
    [[ $(kv errors "$fill") == 0 ]] || lost "fill failed: $fill"
    snap_memory "after fill, before the move"

    echo "migrate: moving shard $SHARD to group $to" >&2
    local started
    started=$(date +%s.%N)
    move=$("$SYNOD" admin move "$SHARD" "$to")
    num=$(sed -n 's/^{"num":\([0-9]*\).*/\1/p' <<<"$move")
    installed="group $to installed shard $SHARD of configuration $num ("
    for i in $(seq 1 3000); do
        grep -qF "$installed" "$DIR"/cluster/node-*.log && break
        cluster_ok || lost "cluster lost during the move"
        sleep 0.1
    done
    grep -qF "$installed" "$DIR"/cluster/node-*.log || lost "not installed after 300 s"
    secs=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    # Node 0 hosts a replica of the new owner, which logs each chunk but the
    # last at debug level, and the last one as the install.
    chunks=$(($(grep -c "group $to: shard $SHARD of configuration $num: chunk at record" "$DIR"/cluster/node-0.log) + 1))
    records=$(grep -hF "$installed" "$DIR"/cluster/node-0.log | sed -n 's/.*(\([0-9]*\) records).*/\1/p' | head -1)
    sent=$(grep -h "sending shard $SHARD of configuration $num:" "$DIR"/cluster/node-*.log | head -1 | sed 's/^.*\] //')
    echo "migrate: installed after $secs s ($chunks chunks, $records records)" >&2
    snap_memory "just after the install"

    check=$("$FILL" --shard "$SHARD" --bytes "$BYTES" --value-size "$value_size" --check | tail -1)
    echo "migrate: $check" >&2
    [[ $(kv errors "$check") == 0 && $(kv wrong "$check") == 0 ]] || lost "FAIL: $check"
    # The old owner has had time to drop its copy (ShardDelete).
    snap_memory "after the check"
    stop_playground

    SECTIONS+=("## $value_size-byte values

| step | result |
|---|---|
| fill (tools/src/bin/synod-shard-fill.rs) | \`$fill\` |
| \`synod admin move $SHARD $to\` until a replica of group $to logs the install | **$secs s** |
| sender (group $from) | $sent |
| chunks applied by each receiving replica (one log entry each) | $chunks |
| records installed | $records |
| check every value at the new owner | \`$check\` |

Memory of each synod-server in MiB (VmHWM: the peak since the process started):

| when | pid | VmRSS | VmHWM |
|---|---|---:|---:|
$(printf '%s\n' "${memory[@]}")
")
}

for size in $VALUE_SIZES; do
    run_case "$size"
done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Moving one ${BYTES}-byte shard between groups"
    echo
    echo "Command: \`perf/migrate.sh\` (MIGRATE_BYTES=$BYTES MIGRATE_VALUE_SIZES=\"$VALUE_SIZES\"" \
        "MIGRATE_SHARD=$SHARD): release build, a fresh \`synod playground --groups 2\` per run" \
        "(3 nodes, both KV groups replicated on all 3, so every node hosts a replica of the" \
        "sender and of the receiver; fsync always; default \`--migrate-chunk-bytes\` 1 MiB)."
    echo
    printf '%s\n' "${SECTIONS[@]}"
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
cat "$OUT"
