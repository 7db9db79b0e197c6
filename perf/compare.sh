#!/usr/bin/env bash
# Synod next to etcd and Redis, in one run on one machine.
#
#   Synod: 3 replicas on loopback (synod playground, fsync always),
#          synod-bench put and get, COMPARE_CLIENTS x COMPARE_PIPELINE.
#   etcd:  3 members on loopback (Debian etcd-server), loaded with
#          `etcdctl check perf --load=$COMPARE_ETCD_LOAD` (default l; xl's
#          1000 clients time out on 2 shared cores) (what the Debian
#          package ships; it has no `benchmark` tool). check perf is
#          rate-limited per load (s 150, m 1000, l 8000, xl 15000 writes/s)
#          and runs 60 s; a result at its limit is a lower bound.
#   Redis: one redis-server, persistence off (--save '' --appendonly no),
#          redis-benchmark -c 50 -P 16 -t set,get -q. No replication and no
#          durability: an upper bound on what a KV server can do here, not a
#          like-for-like rival.
#
# CPU cost per write = user+system time of all server processes of that
# system during its write phase (from /proc/PID/stat), divided by the writes
# done. Load generators run on the same cores and are not counted.
#
# Prints a markdown table and writes it to perf/results/compare-<date>.md.
# Installs etcd-server, etcd-client, redis-server, redis-tools if missing.
# Every process started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"

DURATION=${COMPARE_DURATION:-10}
CLIENTS=${COMPARE_CLIENTS:-64}
PIPELINE=${COMPARE_PIPELINE:-16}
ETCD_LOAD=${COMPARE_ETCD_LOAD:-l}
REDIS_REQUESTS=${COMPARE_REDIS_REQUESTS:-2000000}
PORT=${COMPARE_PORT:-7600}
OUT=${COMPARE_OUT:-$ROOT/perf/results/compare-$(date +%Y-%m-%d).md}
HZ=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/synod-compare.XXXXXX)
ETCD_PIDS=()
REDIS_PID=""
cleanup() {
    local pid
    for pid in "${ETCD_PIDS[@]}" $REDIS_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${ETCD_PIDS[@]}" $REDIS_PID; do
        wait "$pid" 2>/dev/null || true
    done
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- installs --------------------------------------------------------------
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
if ((${#missing[@]} > 0)); then
    echo "compare: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "compare: etcd binaries shipped: $(ls /usr/bin | grep -i etcd | tr '\n' ' ')" >&2

(cd "$ROOT" && cargo build --release --bins --quiet)
BENCH="$ROOT/target/release/synod-bench"

# secs_between T0 T1 (date +%s.%N): elapsed seconds.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
# per_op TICKS OPS: CPU microseconds per operation.
per_op() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "NA"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "NA" && b != "NA" && b > 0) printf "%.2f", a / b; else print "NA"}'; }

# --- Synod -----------------------------------------------------------------
start_playground "$WORK/synod" "$PORT"
mapfile -t SYNOD_PIDS < <(node_pids)
echo "compare: Synod up (pids ${SYNOD_PIDS[*]}), SYNOD_MASTERS=$SYNOD_MASTERS" >&2
SYNOD_PUT_CMD="synod-bench --workload put --clients $CLIENTS --pipeline $PIPELINE --warmup 0 --duration $DURATION --quiet"
t0=$(cpu_ticks "${SYNOD_PIDS[@]}")
# shellcheck disable=SC2086
synod_put=$("$BENCH" ${SYNOD_PUT_CMD#synod-bench } | tail -1)
t1=$(cpu_ticks "${SYNOD_PIDS[@]}")
synod_put_ops=$(kv ops "$synod_put")
synod_put_rate=$(kv ops_per_sec "$synod_put")
synod_cpu=$(per_op $((t1 - t0)) "$synod_put_ops")
echo "compare: Synod put: $synod_put" >&2
SYNOD_GET_CMD="synod-bench --workload get --clients $CLIENTS --pipeline $PIPELINE --warmup 0 --duration $DURATION --quiet"
# shellcheck disable=SC2086
synod_get=$("$BENCH" ${SYNOD_GET_CMD#synod-bench } | tail -1)
synod_get_rate=$(kv ops_per_sec "$synod_get")
echo "compare: Synod get: $synod_get" >&2
help=$("$ROOT/target/release/synod-server" --help 2>&1 || true)
if grep -q resp-listen <<<"$help"; then
    RESP_NOTE="RESP port: built (--resp-listen); perf/resp.sh runs redis-benchmark against it and redis-server in one run"
else
    RESP_NOTE="RESP port: not built yet"
fi
echo "compare: $RESP_NOTE" >&2
stop_playground

# --- etcd ------------------------------------------------------------------
ETCD_CLUSTER=""
for i in 0 1 2; do
    ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=http://127.0.0.1:$((PORT + 20 + i))"
done
for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:$((PORT + 10 + i))" \
        --advertise-client-urls "http://127.0.0.1:$((PORT + 10 + i))" \
        --listen-peer-urls "http://127.0.0.1:$((PORT + 20 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 20 + i))" \
        --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new \
        --initial-cluster-token synod-compare >"$WORK/etcd-e$i.log" 2>&1 &
    ETCD_PIDS+=($!)
done
ENDPOINTS="127.0.0.1:$((PORT + 10)),127.0.0.1:$((PORT + 11)),127.0.0.1:$((PORT + 12))"
for _ in $(seq 1 60); do
    etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 && break
    sleep 0.5
done
etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 || {
    tail -5 "$WORK"/etcd-e0.log >&2
    echo "compare: etcd did not become healthy" >&2
    exit 1
}
echo "compare: etcd up (pids ${ETCD_PIDS[*]}), running check perf --load=$ETCD_LOAD (60 s)" >&2
ETCD_CMD="etcdctl --endpoints $ENDPOINTS check perf --load=$ETCD_LOAD"
t0=$(cpu_ticks "${ETCD_PIDS[@]}")
s0=$(date +%s.%N)
# check perf exits non-zero when the cluster misses its targets; that is a
# result, not a failure of this script.
# shellcheck disable=SC2086
# Its progress bar redraws with \r: keep only the result lines.
etcd_out=$($ETCD_CMD 2>&1 | tr '\r' '\n' | grep -v ' / 60 ' || true)
s1=$(date +%s.%N)
t1=$(cpu_ticks "${ETCD_PIDS[@]}")
echo "$etcd_out" | sed 's/^/compare: etcd: /' >&2
# "PASS: Throughput is N writes/s" or "FAIL: Throughput too low: N writes/s"
etcd_rate=$(sed -n 's/.*Throughput[^0-9]*\([0-9.][0-9.]*\) writes\/s.*/\1/p' <<<"$etcd_out" | head -1)
etcd_rate=${etcd_rate:-NA}
# A check that aborts (e.g. "etcdserver: request timed out" when the cores
# are overloaded) prints no throughput: report its error instead.
etcd_error=$(grep -m1 '^Error:' <<<"$etcd_out" || true)
etcd_secs=$(secs_between "$s0" "$s1")
etcd_ops=$(awk -v r="$etcd_rate" -v s="$etcd_secs" 'BEGIN {if (r == "NA") print 0; else printf "%d", r * 60}')
etcd_cpu=$(per_op $((t1 - t0)) "$etcd_ops")
etcd_slowest=$(sed -n 's/.*Slowest request took[^0-9]*\([0-9.][0-9.]*s\).*/\1/p' <<<"$etcd_out" | head -1)
for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
ETCD_PIDS=()

# --- Redis -----------------------------------------------------------------
REDIS_PORT=$((PORT + 30))
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
REDIS_CMD="redis-benchmark -p $REDIS_PORT -c 50 -P 16 -t set,get -q -n $REDIS_REQUESTS"
t0=$(cpu_ticks "$REDIS_PID")
# shellcheck disable=SC2086
redis_set_out=$(redis-benchmark -p "$REDIS_PORT" -c 50 -P 16 -t set -q -n "$REDIS_REQUESTS" 2>&1 | tr '\r' '\n' | grep -E '^SET: [0-9]' | tail -1)
t1=$(cpu_ticks "$REDIS_PID")
redis_get_out=$(redis-benchmark -p "$REDIS_PORT" -c 50 -P 16 -t get -q -n "$REDIS_REQUESTS" 2>&1 | tr '\r' '\n' | grep -E '^GET: [0-9]' | tail -1)
echo "compare: redis: $redis_set_out / $redis_get_out" >&2
redis_set_rate=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' <<<"$redis_set_out")
redis_get_rate=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$redis_get_out")
redis_cpu=$(per_op $((t1 - t0)) "$REDIS_REQUESTS")
kill -TERM "$REDIS_PID" 2>/dev/null || true
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""

# --- report ----------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    echo "# Synod vs etcd vs Redis, $(date +%Y-%m-%d)"
    echo
    echo "One run, one machine, servers and load generators sharing its cores."
    echo
    echo "| system | setup | writes/s | reads/s | server CPU per write (us) | notes |"
    echo "|---|---|---:|---:|---:|---|"
    echo "| Synod | 3 replicas, fsync always | $synod_put_rate | $synod_get_rate | $synod_cpu | synod-bench ${CLIENTS}x${PIPELINE}, ${DURATION}s; put p99 $(kv p99_us "$synod_put") us, get p99 $(kv p99_us "$synod_get") us; errors $(kv errors "$synod_put")/$(kv errors "$synod_get") |"
    echo "| etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') | 3 members, default fsync | ${etcd_rate} | - | $etcd_cpu | check perf --load=$ETCD_LOAD (rate-limited, 60 s); slowest request ${etcd_slowest:-NA};${etcd_error:+ aborted: $etcd_error;} CPU over the whole ${etcd_secs}s command, divided by throughput x 60 s |"
    echo "| Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') | 1 node, no persistence, no replication | ${redis_set_rate:-NA} | ${redis_get_rate:-NA} | $redis_cpu | redis-benchmark -c 50 -P 16, $REDIS_REQUESTS requests each |"
    echo
    echo "| ratio | value |"
    echo "|---|---:|"
    echo "| Synod / etcd, writes/s | $(ratio "$synod_put_rate" "$etcd_rate") |"
    echo "| Synod / Redis, writes/s | $(ratio "$synod_put_rate" "${redis_set_rate:-0}") |"
    echo "| Synod / Redis, reads/s | $(ratio "$synod_get_rate" "${redis_get_rate:-0}") |"
    echo "| Synod / etcd, CPU per write | $(ratio "$synod_cpu" "$etcd_cpu") |"
    echo "| Synod / Redis, CPU per write | $(ratio "$synod_cpu" "$redis_cpu") |"
    echo
    echo "$RESP_NOTE."
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "synod playground --base-port $PORT   # 3 nodes, fsync always"
    echo "$SYNOD_PUT_CMD"
    echo "$SYNOD_GET_CMD   # get runs after the put run, so keys exist"
    echo "etcd --name eN --data-dir DIR/eN --listen-client-urls http://127.0.0.1:$((PORT + 10))+N ... --initial-cluster $ETCD_CLUSTER"
    echo "$ETCD_CMD"
    echo "redis-server --port $REDIS_PORT --save '' --appendonly no"
    echo "$REDIS_CMD   # run as -t set, then -t get"
    echo '```'
    echo
    echo "## Raw"
    echo
    echo '```'
    echo "synod put: $synod_put"
    echo "synod get: $synod_get"
    echo "$etcd_out"
    echo "$redis_set_out"
    echo "$redis_get_out"
    echo '```'
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
cat "$OUT"
echo "compare: wrote $OUT" >&2
