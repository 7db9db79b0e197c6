# Shared helpers for perf/*.sh (sourced, not run).
#
# Starting and stopping a local cluster lives here once so every script
# measures the same thing: `synod playground --groups 1` (3 nodes, one KV group
# unless SYNOD_GROUPS says otherwise, replication 3, fsync
# always, one KV group) on loopback ports.

# kv FIELD LINE: the value of FIELD in a synod-bench last line.
kv() {
    local field=$1 line=$2 pair
    for pair in $line; do
        if [[ ${pair%%=*} == "$field" ]]; then
            echo "${pair#*=}"
            return 0
        fi
    done
    echo "NA"
}

# median N...: the median of numbers (the lower middle for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "NA"; else print v[int((NR+1)/2)]}'
}

# start_playground DIR PORT [ARGS...]: starts `synod playground` in the
# background (extra ARGS go to it, e.g. --resp-port), sets PLAYGROUND_PID,
# SYNOD_MASTERS and SYNOD_CLUSTER_KEY_FILE (the playground's generated key,
# which `synod admin` needs), and SYNOD_RESP with --resp-port, and waits until it
# is serving (at most PLAYGROUND_WAIT_SECS, default 60). SYNOD_SERVER_ARGS
# (words) are passed to every node, e.g. "--reads log".
start_playground() {
    local dir=$1 port=$2 i a extra=()
    shift 2
    mkdir -p "$dir"
    for a in ${SYNOD_SERVER_ARGS:-}; do extra+=("--server-arg=$a"); done
    "${BIN_DIR:-$ROOT/target/release}/synod" playground --dir "$dir/cluster" --base-port "$port" \
        --groups "${SYNOD_GROUPS:-1}" "${extra[@]}" "$@" \
        >"$dir/playground.out" 2>"$dir/playground.err" &
    PLAYGROUND_PID=$!
    for i in $(seq 1 $((${PLAYGROUND_WAIT_SECS:-60} * 2))); do
        if grep -q '^SYNOD_MASTERS=' "$dir/playground.out" 2>/dev/null; then
            SYNOD_MASTERS=$(sed -n 's/^SYNOD_MASTERS=//p' "$dir/playground.out" | head -1)
            SYNOD_RESP=$(sed -n 's/^SYNOD_RESP=//p' "$dir/playground.out" | head -1)
            SYNOD_CLUSTER_KEY_FILE=$(sed -n 's/^SYNOD_CLUSTER_KEY_FILE=//p' "$dir/playground.out" | head -1)
            export SYNOD_MASTERS SYNOD_RESP SYNOD_CLUSTER_KEY_FILE
            return 0
        fi
        if ! kill -0 "$PLAYGROUND_PID" 2>/dev/null; then
            echo "playground exited early:" >&2
            cat "$dir/playground.err" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "playground not ready after ${PLAYGROUND_WAIT_SECS:-60} s:" >&2
    cat "$dir/playground.err" >&2
    return 1
}

# stop_playground: SIGTERM (the playground stops its nodes in order), then
# SIGKILL if it is still there after 10 s. The nodes also carry a
# parent-death signal, so they never outlive it.
stop_playground() {
    local i
    if [[ -n ${PLAYGROUND_PID:-} ]] && kill -0 "$PLAYGROUND_PID" 2>/dev/null; then
        kill -TERM "$PLAYGROUND_PID" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$PLAYGROUND_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PLAYGROUND_PID" 2>/dev/null || true
        wait "$PLAYGROUND_PID" 2>/dev/null || true
    fi
    PLAYGROUND_PID=
}

# node_pids: pids of the playground's synod-server children.
node_pids() {
    pgrep -P "$PLAYGROUND_PID" -x synod-server || true
}

# machine_info: markdown lines describing this machine.
machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src wire tools 2>/dev/null || echo ' (dirty)')"
    echo "- kernel: $(uname -srm)"
    echo "- nproc: $(nproc)"
    echo "- rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "- load average when written: $(cut -d' ' -f1-3 /proc/loadavg) (the cores may be shared with other work: see below)"
    echo
    echo '```'
    lscpu | head -20
    echo '```'
    echo
    echo "Busiest processes when written (ps, %CPU over each process's life):"
    echo
    echo '```'
    ps -eo pcpu,etime,comm --sort=-pcpu | head -8
    echo '```'
}

# fsync_probe DIR: rough cost of one 4 KiB write + fdatasync on DIR's disk,
# because with fsync on it bounds every write's latency.
fsync_probe() {
    local dir=$1 out
    out=$(dd if=/dev/zero of="$dir/fsync-probe" bs=4k count=500 oflag=dsync 2>&1 | tail -1) || true
    rm -f "$dir/fsync-probe"
    echo "${out:-unknown}"
}

# per_op TICKS OPS: CPU microseconds per operation, from clock ticks.
per_op() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "NA"}'; }

# cpu_ticks PID...: user+system clock ticks used so far by these processes
# (fields 14 and 15 of /proc/PID/stat, read after the ")" that ends the
# command name, which may contain spaces). Gone processes count 0.
cpu_ticks() {
    local total=0 pid rest
    for pid in "$@"; do
        rest=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        # After "pid (comm) ", field 3 is the state: utime is field 14 of the
        # full line, so word 12 here; stime word 13.
        total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
    done
    echo "$total"
}

# busiest PID...: the pid that uses the most CPU over the next second.
busiest() {
    local pid best="" best_ticks=-1 before=() i=0 t
    for pid in "$@"; do before+=("$(cpu_ticks "$pid")"); done
    sleep 1
    for pid in "$@"; do
        t=$(($(cpu_ticks "$pid") - before[i]))
        if ((t > best_ticks)); then best=$pid best_ticks=$t; fi
        i=$((i + 1))
    done
    echo "$best"
}

# cluster_ok: the playground and all 3 of its nodes are still running.
cluster_ok() {
    [[ -n ${PLAYGROUND_PID:-} ]] && kill -0 "$PLAYGROUND_PID" 2>/dev/null &&
        (($(node_pids | wc -l) == 3))
}

# keep_cluster_logs DIR: copies a lost cluster's logs out of DIR (which the
# scripts delete on exit) to a fresh /tmp directory, prints its path and
# the last lines of each node log to stderr.
keep_cluster_logs() {
    local dir=$1 keep f
    keep=$(mktemp -d /tmp/synod-lost-cluster.XXXXXX)
    cp "$dir"/playground.* "$dir"/cluster/*.log "$keep"/ 2>/dev/null || true
    echo "cluster lost; its logs are kept in $keep" >&2
    for f in "$keep"/*.log "$keep"/playground.err; do
        [[ -f $f ]] || continue
        echo "--- $f (last 5 lines)" >&2
        tail -n 5 "$f" >&2
    done
    echo "$keep"
}

# now: the time in seconds (for `since`).
now() { date +%s.%N; }
# since T: seconds since the `now` reading T, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# wait_write LIMIT_SECS [SINCE]: until a put (of the key __probe) is
# acknowledged; prints the seconds since SINCE (a `now` reading; default:
# the call). Fails after LIMIT_SECS.
wait_write() {
    local t0=${2:-$(now)} i
    for i in $(seq 1 "$(($1 * 4))"); do
        if "${BIN_DIR:-$ROOT/target/release}/synod" --timeout 2 put __probe "$i" >/dev/null 2>&1; then
            since "$t0"
            return 0
        fi
        sleep 0.25
    done
    echo "no write acknowledged within $1 s" >&2
    return 1
}

# measure_puts WORK PORT [PLAYGROUND ARGS...]: one fresh playground (with
# SYNOD_GROUPS and the ARGS), keys 0..KEYS prefilled, then a closed-loop
# put run of synod-bench ($BENCH) with CLIENTS x PIPELINE for DURATION
# seconds; stops the playground. Sets PUT_OPS (puts/s), PUT_US (server CPU
# per put, µs: user+system ticks of the nodes over the run's puts),
# PUT_LOAD (1-min load before) and PUT_LINE (the bench's last line).
# Returns 1 if the playground did not start.
measure_puts() {
    local work=$1 port=$2 before ticks
    shift 2
    rm -rf "$work/cluster" "$work"/playground.*
    start_playground "$work" "$port" "$@" || return 1
    "$BENCH" --workload get --prefill yes --ops 1 --keys "$KEYS" --quiet >/dev/null
    mapfile -t NODES < <(node_pids)
    PUT_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    before=$(cpu_ticks "${NODES[@]}")
    # With PUT_SYSCALLS=1: the servers' socket send and receive calls,
    # counted by the kernel's tracepoints (perf stat) during the run.
    local stat_pid="" stat_out="$work/syscalls.csv"
    if [[ ${PUT_SYSCALLS:-0} == 1 ]]; then
        perf stat -x, -o "$stat_out" -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom \
            -p "$(IFS=,; echo "${NODES[*]}")" &
        stat_pid=$!
    fi
    # shellcheck disable=SC2086 # SYNOD_BENCH_ARGS: words, split on purpose
    PUT_LINE=$("$BENCH" --workload put --clients "$CLIENTS" --pipeline "$PIPELINE" \
        --warmup 0 --duration "$DURATION" --keys "$KEYS" --prefill no --quiet \
        ${SYNOD_BENCH_ARGS:-} | tail -1)
    ticks=$(($(cpu_ticks "${NODES[@]}") - before))
    PUT_SENDS=NA PUT_RECVS=NA
    if [[ -n $stat_pid ]]; then
        kill -INT "$stat_pid" 2>/dev/null || true
        wait "$stat_pid" 2>/dev/null || true
        PUT_SENDS=$(per_put_count "$stat_out" sendto "$(kv ops "$PUT_LINE")")
        PUT_RECVS=$(per_put_count "$stat_out" recvfrom "$(kv ops "$PUT_LINE")")
    fi
    stop_playground
    PUT_OPS=$(kv ops_per_sec "$PUT_LINE")
    PUT_US=$(per_op "$ticks" "$(kv ops "$PUT_LINE")")
}

# per_put_count CSV SYSCALL OPS: perf stat's count of sys_enter_SYSCALL in
# CSV over OPS, two decimals (NA without a count).
per_put_count() {
    awk -F, -v e="syscalls:sys_enter_$2" -v n="$3" \
        '$3 == e && n > 0 {printf "%.2f", $1 / n; found = 1} END {if (!found) print "NA"}' "$1"
}

# put_compare_setup PREFIX NAME PORT: the knobs of a script that compares
# put runs between settings (PREFIX_RUNS (3), PREFIX_DURATION (10),
# PREFIX_SETTING (clients x pipeline, 64x16), PREFIX_KEYS (10000),
# PREFIX_PORT (PORT), PREFIX_OUT (perf/results/NAME-<date>.md)) as RUNS,
# DURATION, CLIENTS, PIPELINE, KEYS, PORT, OUT; a scratch dir WORK removed
# on exit with any playground; BENCH, built first unless BIN_DIR is given;
# and the empty tallies OPS, CPU (per setting) and RAW for measure_puts'
# results.
put_compare_setup() {
    local p=$1 name=$2 v setting
    v=${p}_RUNS; RUNS=${!v:-3}
    v=${p}_DURATION; DURATION=${!v:-10}
    v=${p}_SETTING; setting=${!v:-64x16}
    v=${p}_KEYS; KEYS=${!v:-10000}
    v=${p}_PORT; PORT=${!v:-$3}
    v=${p}_OUT; OUT=${!v:-$ROOT/perf/results/$name-$(date +%Y-%m-%d).md}
    CLIENTS=${setting%x*}
    PIPELINE=${setting#*x}
    WORK=$(mktemp -d "/tmp/synod-$name.XXXXXX")
    trap 'stop_playground; rm -rf "$WORK"' EXIT
    trap 'exit 130' INT TERM
    if [[ -z ${BIN_DIR:-} ]]; then
        (cd "$ROOT" && cargo build --release --bins --quiet)
    fi
    BENCH=${BIN_DIR:-$ROOT/target/release}/synod-bench
    declare -gA OPS=() CPU=() SENDS=() RECVS=()
    RAW=()
}

# put_tally KEY RUN: adds measure_puts' last result to setting KEY's tallies.
put_tally() {
    OPS[$1]+="$PUT_OPS "
    CPU[$1]+="$PUT_US "
    SENDS[$1]+="${PUT_SENDS:-NA} "
    RECVS[$1]+="${PUT_RECVS:-NA} "
    RAW+=("run $2 setting $1 load $PUT_LOAD cpu_us_per_put $PUT_US sends_per_put ${PUT_SENDS:-NA} recvs_per_put ${PUT_RECVS:-NA}: $PUT_LINE")
}

# put_table KEY...: one markdown row per setting: median puts/s, the ratio
# to the first KEY's, median server CPU per put, every run's puts/s.
put_table() {
    local k m c base="" ratio
    for k in "$@"; do
        # shellcheck disable=SC2086
        m=$(median ${OPS[$k]})
        # shellcheck disable=SC2086
        c=$(median ${CPU[$k]})
        [[ -n $base ]] || base=$m
        ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
        echo "| $k | $m | ${ratio}x | $c | ${OPS[$k]}|"
    done
}
