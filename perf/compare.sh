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
#          like-for-like rival. Then one redis-server with --appendonly yes
#          --appendfsync always (every write fsynced before its reply): the
#          durable single node issue 15 compares the RESP port with. The
#          same redis-benchmark commands also run
#          against Synod's RESP gateway (node 0's --resp-listen port), so one
#          tool measures both.
#
# Every measurement runs COMPARE_RUNS times (default 3) and the median is
# reported; etcd's 60 s check runs COMPARE_ETCD_RUNS times (default 3).
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

RUNS=${COMPARE_RUNS:-3}
ETCD_RUNS=${COMPARE_ETCD_RUNS:-3}
DURATION=${COMPARE_DURATION:-10}
CLIENTS=${COMPARE_CLIENTS:-64}
PIPELINE=${COMPARE_PIPELINE:-16}
ETCD_LOAD=${COMPARE_ETCD_LOAD:-l}
REDIS_REQUESTS=${COMPARE_REDIS_REQUESTS:-2000000}
PORT=${COMPARE_PORT:-7600}
OUT=${COMPARE_OUT:-$ROOT/perf/results/compare-$(date +%Y-%m-%d).md}

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "NA" && b != "NA" && b > 0) printf "%.2f", a / b; else print "NA"}'; }

# --- Synod -----------------------------------------------------------------
start_playground "$WORK/synod" "$PORT" --resp-port $((PORT + 40))
mapfile -t SYNOD_PIDS < <(node_pids)
SYNOD_RESP_PORT=$((PORT + 40))
echo "compare: Synod up (pids ${SYNOD_PIDS[*]}), SYNOD_MASTERS=$SYNOD_MASTERS" >&2
SYNOD_PUT_CMD="synod-bench --workload put --clients $CLIENTS --pipeline $PIPELINE --warmup 1 --duration $DURATION --quiet"
SYNOD_GET_CMD="synod-bench --workload get --clients $CLIENTS --pipeline $PIPELINE --warmup 1 --duration $DURATION --quiet"
put_rates=() put_cpus=() put_lines=() get_rates=() get_lines=()
for run in $(seq 1 "$RUNS"); do
    t0=$(cpu_ticks "${SYNOD_PIDS[@]}")
    # shellcheck disable=SC2086
    line=$("$BENCH" ${SYNOD_PUT_CMD#synod-bench } | tail -1)
    t1=$(cpu_ticks "${SYNOD_PIDS[@]}")
    echo "compare: Synod put $run: $line" >&2
    put_lines+=("$line")
    put_rates+=("$(kv ops_per_sec "$line")")
    # The warmup's writes are not in `ops`: count CPU per measured write
    # over the whole command, slightly pessimistic.
    put_cpus+=("$(per_op $((t1 - t0)) "$(kv ops "$line")")")
    # shellcheck disable=SC2086
    line=$("$BENCH" ${SYNOD_GET_CMD#synod-bench } | tail -1)
    echo "compare: Synod get $run: $line" >&2
    get_lines+=("$line")
    get_rates+=("$(kv ops_per_sec "$line")")
done
synod_put_rate=$(median "${put_rates[@]}")
synod_cpu=$(median "${put_cpus[@]}")
synod_get_rate=$(median "${get_rates[@]}")

# redis_bench PORT TEST: one redis-benchmark run; prints its requests/s.
redis_bench() {
    local out
    out=$(redis-benchmark -p "$1" -c 50 -P 16 -t "$2" -q -n "$REDIS_REQUESTS" -r 100000 2>&1 |
        tr '\r' '\n' | grep -E "^${2^^}: [0-9]" | tail -1)
    echo "compare: redis-benchmark -p $1 -t $2: $out" >&2
    sed -n 's/^[A-Z]*: \([0-9.]*\) requests per second.*/\1/p' <<<"$out"
}
resp_set=() resp_get=()
for run in $(seq 1 "$RUNS"); do
    resp_set+=("$(redis_bench "$SYNOD_RESP_PORT" set)")
    resp_get+=("$(redis_bench "$SYNOD_RESP_PORT" get)")
done
synod_resp_set=$(median "${resp_set[@]}")
synod_resp_get=$(median "${resp_get[@]}")
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
echo "compare: etcd up (pids ${ETCD_PIDS[*]}), running check perf --load=$ETCD_LOAD (60 s) x $ETCD_RUNS" >&2
ETCD_CMD="etcdctl --endpoints $ENDPOINTS check perf --load=$ETCD_LOAD"
etcd_rates=() etcd_cpus=() etcd_outs=() etcd_error="" etcd_slowest=""
for run in $(seq 1 "$ETCD_RUNS"); do
    t0=$(cpu_ticks "${ETCD_PIDS[@]}")
    s0=$(date +%s.%N)
    # check perf exits non-zero when the cluster misses its targets; that
    # is a result, not a failure of this script. Its progress bar redraws
    # with \r: keep only the result lines.
    # shellcheck disable=SC2086
    etcd_out=$($ETCD_CMD 2>&1 | tr '\r' '\n' | grep -v ' / 60 ' || true)
    s1=$(date +%s.%N)
    t1=$(cpu_ticks "${ETCD_PIDS[@]}")
    echo "$etcd_out" | sed "s/^/compare: etcd $run: /" >&2
    etcd_outs+=("$etcd_out")
    # "PASS: Throughput is N writes/s" or "FAIL: Throughput too low: N writes/s"
    rate=$(sed -n 's/.*Throughput[^0-9]*\([0-9.][0-9.]*\) writes\/s.*/\1/p' <<<"$etcd_out" | head -1)
    # A check that aborts (e.g. "etcdserver: request timed out" when the
    # cores are overloaded) prints no throughput: report its error instead.
    err=$(grep -m1 '^Error:' <<<"$etcd_out" || true)
    etcd_error=${etcd_error:-$err}
    slowest=$(sed -n 's/.*Slowest request took[^0-9]*\([0-9.][0-9.]*s\).*/\1/p' <<<"$etcd_out" | head -1)
    etcd_slowest+="${etcd_slowest:+ }${slowest:-NA}"
    if [[ -n $rate ]]; then
        etcd_rates+=("$rate")
        secs=$(secs_between "$s0" "$s1")
        ops=$(awk -v r="$rate" 'BEGIN {printf "%d", r * 60}')
        etcd_cpus+=("$(per_op $((t1 - t0)) "$ops")")
    fi
done
etcd_rate=$(median "${etcd_rates[@]}")
etcd_cpu=$(median "${etcd_cpus[@]}")
etcd_secs=${secs:-NA}
for pid in "${ETCD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
ETCD_PIDS=()

# --- Redis -----------------------------------------------------------------
# redis_phase PORT ARGS...: one redis-server with ARGS, RUNS SET runs (its
# CPU per SET counted) and RUNS GET runs; sets REDIS_SETS, REDIS_GETS and
# REDIS_CPUS. Stops the server before returning.
redis_phase() {
    local port=$1
    shift
    redis-server --port "$port" --bind 127.0.0.1 "$@" \
        --daemonize no --dir "$WORK" >"$WORK/redis-$port.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    REDIS_SETS=() REDIS_GETS=() REDIS_CPUS=()
    local run t0 t1
    for run in $(seq 1 "$RUNS"); do
        t0=$(cpu_ticks "$REDIS_PID")
        REDIS_SETS+=("$(redis_bench "$port" set)")
        t1=$(cpu_ticks "$REDIS_PID")
        REDIS_CPUS+=("$(per_op $((t1 - t0)) "$REDIS_REQUESTS")")
        REDIS_GETS+=("$(redis_bench "$port" get)")
    done
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}
REDIS_PORT=$((PORT + 30))
REDIS_CMD="redis-benchmark -p $REDIS_PORT -c 50 -P 16 -t set,get -q -n $REDIS_REQUESTS -r 100000"
redis_phase "$REDIS_PORT" --save '' --appendonly no
redis_sets=("${REDIS_SETS[@]}") redis_gets=("${REDIS_GETS[@]}")
redis_set_rate=$(median "${redis_sets[@]}")
redis_get_rate=$(median "${redis_gets[@]}")
redis_cpu=$(median "${REDIS_CPUS[@]}")
# A durable Redis: every write appended and fsynced before its reply
# (issue 15's yardstick for the RESP port: Synod syncs every write too,
# on three replicas).
redis_phase "$REDIS_PORT" --save '' --appendonly yes --appendfsync always
aof_sets=("${REDIS_SETS[@]}") aof_gets=("${REDIS_GETS[@]}")
aof_set_rate=$(median "${aof_sets[@]}")
aof_get_rate=$(median "${aof_gets[@]}")
aof_cpu=$(median "${REDIS_CPUS[@]}")

# --- report ----------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    echo "# Synod vs etcd vs Redis, $(date +%Y-%m-%d)"
    echo
    echo "One session, one machine, servers and load generators sharing its cores;"
    echo "every figure is the median of $RUNS runs (etcd: $ETCD_RUNS runs)."
    echo
    echo "| system | setup | writes/s | reads/s | server CPU per write (us) | notes |"
    echo "|---|---|---:|---:|---:|---|"
    echo "| Synod | 3 replicas, fsync always | $synod_put_rate | $synod_get_rate | $synod_cpu | synod-bench ${CLIENTS}x${PIPELINE}, ${DURATION}s; reads by lease (the default; read-index when it lapses); p99 put/get of each run in Raw |"
    echo "| Synod via RESP | same cluster, node 0's gateway | $synod_resp_set | $synod_resp_get | - | redis-benchmark -c 50 -P 16 -r 100000, $REDIS_REQUESTS requests each (SET, GET) |"
    echo "| etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') | 3 members, default fsync | ${etcd_rate} | - | $etcd_cpu | check perf --load=$ETCD_LOAD (rate-limited, 60 s); slowest requests ${etcd_slowest:-NA};${etcd_error:+ aborted once: $etcd_error;} CPU over each whole command, divided by throughput x 60 s |"
    echo "| Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') | 1 node, no persistence, no replication | ${redis_set_rate:-NA} | ${redis_get_rate:-NA} | $redis_cpu | redis-benchmark -c 50 -P 16 -r 100000, $REDIS_REQUESTS requests each |"
    echo "| Redis, durable | 1 node, appendonly yes, appendfsync always, no replication | ${aof_set_rate:-NA} | ${aof_get_rate:-NA} | $aof_cpu | same commands |"
    echo
    echo "| ratio | value | target |"
    echo "|---|---:|---|"
    echo "| Synod / etcd, writes/s | $(ratio "$synod_put_rate" "$etcd_rate") | >= 40 |"
    echo "| Synod / etcd, CPU per write | $(ratio "$synod_cpu" "$etcd_cpu") | < 1 |"
    echo "| Synod RESP / Redis, GET (redis-benchmark) | $(ratio "$synod_resp_get" "${redis_get_rate:-0}") | >= 0.25 |"
    echo "| Synod RESP / Redis, SET (redis-benchmark) | $(ratio "$synod_resp_set" "${redis_set_rate:-0}") | >= 0.10 |"
    echo "| Synod RESP / durable Redis, SET (redis-benchmark) | $(ratio "$synod_resp_set" "${aof_set_rate:-0}") | >= 0.60 (issue 15) |"
    echo "| Synod / Redis, writes/s (synod-bench vs redis-benchmark) | $(ratio "$synod_put_rate" "${redis_set_rate:-0}") | |"
    echo "| Synod / Redis, reads/s (synod-bench vs redis-benchmark) | $(ratio "$synod_get_rate" "${redis_get_rate:-0}") | |"
    echo "| Synod / Redis, CPU per write | $(ratio "$synod_cpu" "$redis_cpu") | |"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "synod playground --base-port $PORT --resp-port $SYNOD_RESP_PORT   # 3 nodes, fsync always"
    echo "$SYNOD_PUT_CMD"
    echo "$SYNOD_GET_CMD   # get runs after a put run, so keys exist"
    echo "redis-benchmark -p $SYNOD_RESP_PORT -c 50 -P 16 -t set|get -q -n $REDIS_REQUESTS -r 100000"
    echo "etcd --name eN --data-dir DIR/eN --listen-client-urls http://127.0.0.1:$((PORT + 10))+N ... --initial-cluster $ETCD_CLUSTER"
    echo "$ETCD_CMD"
    echo "redis-server --port $REDIS_PORT --save '' --appendonly no"
    echo "redis-server --port $REDIS_PORT --save '' --appendonly yes --appendfsync always   # the durable Redis, same commands"
    echo "$REDIS_CMD   # run as -t set, then -t get"
    echo '```'
    echo
    echo "## Raw"
    echo
    echo '```'
    printf 'synod put: %s\n' "${put_lines[@]}"
    printf 'synod get: %s\n' "${get_lines[@]}"
    echo "synod RESP SET runs: ${resp_set[*]}"
    echo "synod RESP GET runs: ${resp_get[*]}"
    printf '%s\n' "${etcd_outs[@]}"
    echo "redis SET runs: ${redis_sets[*]}"
    echo "redis GET runs: ${redis_gets[*]}"
    echo "durable redis SET runs: ${aof_sets[*]}"
    echo "durable redis GET runs: ${aof_gets[*]}"
    echo '```'
    echo
    echo "## Machine"
    echo
    machine_info
} >"$OUT"
cat "$OUT"
echo "compare: wrote $OUT" >&2
