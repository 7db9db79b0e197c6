#!/usr/bin/env bash
# Memory per key: RSS of each Synod replica and bytes on disk, next to one
# redis-server holding the same keys, in the same run (issue 15).
#
# For each key count: a fresh `synod playground --groups 1` (3 nodes, one KV
# group of all 3, fsync always) is filled with KEYS keys of VALUE_SIZE bytes
# through synod-bench's prefill; then each node's RSS (VmRSS) and data
# directory size are read, before and after a restart (the restart loads the
# newest snapshot and replays the log tail, so the second reading has no
# write-path buffers in it). redis-server (persistence off) gets the same
# keys and values via `redis-cli --pipe` and its RSS is read the same way.
#
# Knobs (environment):
#   MEM_KEYS        key counts, default "1000000" (e.g. "1000000 10000000")
#   MEM_VALUE_SIZE  default 64
#   MEM_PORT        first cluster port, default 18600
#   MEM_OUT         output file (default perf/results/memory-<date>.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

KEYS_LIST=${MEM_KEYS:-1000000}
VALUE_SIZE=${MEM_VALUE_SIZE:-64}
PORT=${MEM_PORT:-18600}
REDIS_PORT=$((PORT + 50))
OUT=${MEM_OUT:-$ROOT/perf/results/memory-$(date +%Y-%m-%d).md}

WORK=$(mktemp -d /tmp/synod-memory.XXXXXX)
REDIS_PID=
cleanup() {
    stop_playground
    [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "memory: installing redis-server redis-tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
(cd "$ROOT" && cargo build --release --bins --quiet)
BENCH="$ROOT/target/release/synod-bench"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# median_rss: the median VmRSS of the three nodes, in KiB.
median_rss() {
    local pid readings=()
    for pid in $(node_pids); do readings+=("$(rss_kib "$pid")"); done
    median "${readings[@]}"
}
# settled_rss: median_rss once the group answers a read of k0 and the median
# has moved less than 1% in a second (at most 60 s). A fixed sleep read the
# restarted nodes in the middle of recovery on a loaded machine (the
# snapshot still on the heap beside the half-built store), and after a fill
# in the middle of a snapshot capture.
settled_rss() {
    local i prev cur
    for i in $(seq 1 120); do
        "${BIN_DIR:-$ROOT/target/release}/synod" --timeout 2 get k0 >/dev/null 2>&1 && break
        sleep 0.5
    done
    prev=$(median_rss)
    for i in $(seq 1 60); do
        sleep 1
        cur=$(median_rss)
        if awk -v a="$prev" -v b="$cur" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d * 100 <= b)}'; then
            break
        fi
        prev=$cur
    done
    echo "$cur"
}
# rss_file_kib: the median file-backed part of VmRSS (RssFile: the binary
# and mapped snapshot files, page cache the kernel can reclaim).
rss_file_kib() {
    local pid readings=()
    for pid in $(node_pids); do
        readings+=("$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)")
    done
    median "${readings[@]}"
}
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
per_key() { awk -v k="$1" -v n="$2" 'BEGIN {printf "%.0f", k * 1024 / n}'; }

ROWS=() CMDS=()
for keys in $KEYS_LIST; do
    # --- Synod -------------------------------------------------------------
    dir=$WORK/synod-$keys
    start_playground "$dir" "$PORT"
    t0=$(date +%s)
    "$BENCH" --masters "$SYNOD_MASTERS" --workload get --prefill yes --ops 1 \
        --keys "$keys" --value-size "$VALUE_SIZE" --quiet >"$dir/prefill.out" 2>&1
    fill_secs=$(($(date +%s) - t0))
    rss_filled=$(settled_rss)
    disk_kib=$(du -sk "$dir/cluster" | awk '{print $1}')
    disk_per_node=$((disk_kib / 3))
    # Restart: the state is rebuilt from the snapshot and the log tail.
    stop_playground
    start_playground "$dir" "$PORT"
    rss_restarted=$(settled_rss)
    file_restarted=$(rss_file_kib)
    stop_playground
    CMDS+=("synod playground --groups 1 --base-port $PORT; synod-bench --workload get --prefill yes --ops 1 --keys $keys --value-size $VALUE_SIZE   # fill took ${fill_secs}s")

    # --- Redis ---------------------------------------------------------------
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    # The same key names and value sizes as synod-bench's prefill.
    awk -v n="$keys" -v size="$VALUE_SIZE" 'BEGIN {
        v = sprintf("%" size "s", ""); gsub(/ /, "x", v);
        for (i = 0; i < n; i++) {
            k = sprintf("k%d", i);
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
        }
    }' | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/redis-pipe.out" 2>&1
    redis_keys=$(redis-cli -p "$REDIS_PORT" dbsize)
    redis_rss=$(rss_kib "$REDIS_PID")
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
    CMDS+=("redis-server --save '' --appendonly no; awk ... | redis-cli --pipe   # $redis_keys keys")

    ratio=$(awk -v a="$rss_restarted" -v b="$redis_rss" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    ROWS+=("| $keys | $(mib "$rss_filled") ($(per_key "$rss_filled" "$keys") B/key) | $(mib "$rss_restarted") ($(per_key "$rss_restarted" "$keys") B/key) | $(mib "$disk_per_node") ($(per_key "$disk_per_node" "$keys") B/key) | $(mib "$redis_rss") ($(per_key "$redis_rss" "$keys") B/key) | $ratio | $(mib "$file_restarted") |")
done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Synod memory per key, $(date +%Y-%m-%d)"
    echo
    echo "Synod: \`synod playground --groups 1\` (3 nodes, one KV group of all 3, fsync always),"
    echo "filled by synod-bench's prefill ($VALUE_SIZE-byte values, keys \`k<i>\`); the median of the"
    echo "three nodes' VmRSS once settled (a read of k0 answered, then the median still within 1%"
    echo "for a second) after the fill and after a restart (state rebuilt from the snapshot and"
    echo "log tail), and each node's data directory (WAL + snapshots). VmRSS counts file-backed"
    echo "pages too (the binary; the snapshot file a replica maps to serve laggards, once touched)."
    echo "Redis: one redis-server, persistence off, the same keys and values through \`redis-cli --pipe\`."
    echo "Issue 15's targets: RSS per replica at most 1.3x redis-server's; disk at most 2x the live data after a snapshot."
    echo
    echo "| keys | Synod RSS per replica after fill, MiB | after restart, MiB | Synod disk per replica, MiB | redis-server RSS, MiB | Synod (restarted) / Redis | of which file-backed after restart, MiB |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    printf '%s\n' "${CMDS[@]}"
    echo '```'
    echo
    echo "Reproduce with \`perf/memory.sh\` (\`MEM_KEYS=\"1000000 10000000\"\` for both sizes)."
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
cat "$OUT"
echo "memory: wrote $OUT" >&2
