#!/usr/bin/env bash
# CI smoke test of the whole stack through synod-bench: a local 3-node
# playground from the debug build, a short mixed load, and a small run whose
# history goes through the linearizability checker.
#
# Fails (non-zero) on any error in either run or linearizable=no, and prints
# both last lines. Needs no network beyond loopback and takes ~15 s after
# the build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/perf/lib.sh"
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/debug
# Random base port below the kernel's ephemeral range (32768+ on Linux), so
# an outgoing connection of some other program cannot hold it; CI machines
# may also run other clusters on the usual ones. A busy port is retried.
pick_port() { echo $((10000 + RANDOM % 20000)); }

WORK=$(mktemp -d /tmp/synod-smoke.XXXXXX)
cleanup() {
    stop_playground
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && cargo build --bins --quiet)
started=0
for attempt in 1 2 3 4 5; do
    PORT=${SMOKE_PORT:-$(pick_port)}
    if start_playground "$WORK/try$attempt" "$PORT" --resp-port $((PORT + 100)); then
        started=1
        break
    fi
    stop_playground
    if [[ -n ${SMOKE_PORT:-} ]] || ! grep -q 'is busy' "$WORK/try$attempt/playground.err"; then
        break
    fi
    echo "smoke: base port $PORT busy, trying another" >&2
done
((started == 1)) || { echo "smoke: FAIL: could not start the playground" >&2; exit 1; }
echo "smoke: cluster up, SYNOD_MASTERS=$SYNOD_MASTERS" >&2

load=$("$BIN_DIR/synod-bench" --duration 3 --clients 4 --pipeline 8 --workload mixed --quiet | tail -1)
echo "smoke: load:  $load"
check=$("$BIN_DIR/synod-bench" --check --ops 2000 --keys 100 --clients 4 --pipeline 8 \
    --workload mixed --quiet | tail -1) || true
echo "smoke: check: $check"
# The bank: transfers (across the playground's groups when it has several)
# and the audit of the total at the end.
bank=$("$BIN_DIR/synod-bench" --workload transfer --check --duration 2 --warmup 0 --keys 200 \
    --clients 4 --pipeline 4 --quiet | tail -1) || true
echo "smoke: bank:  $bank"

status=0
for line in "$load" "$check" "$bank"; do
    errors=$(kv errors "$line")
    if [[ $errors != 0 ]]; then
        echo "smoke: FAIL: errors=$errors" >&2
        status=1
    fi
done
if [[ $(kv ops "$load") == 0 || $(kv ops "$load") == NA ]]; then
    echo "smoke: FAIL: no operations completed" >&2
    status=1
fi
if [[ $(kv linearizable "$check") != yes ]]; then
    echo "smoke: FAIL: linearizable=$(kv linearizable "$check")" >&2
    status=1
fi
if [[ $(kv bank "$bank") != ok ]]; then
    echo "smoke: FAIL: bank=$(kv bank "$bank")" >&2
    status=1
fi
# The RESP port, with redis-cli if this machine has it (tests/resp.rs covers
# the gateway in every CI run either way).
if command -v redis-cli >/dev/null 2>&1; then
    resp_port=$((PORT + 100))
    got=$(redis-cli -p "$resp_port" set smoke-key smoke-value 2>&1; redis-cli -p "$resp_port" get smoke-key 2>&1)
    if [[ $got != $'OK\nsmoke-value' ]]; then
        echo "smoke: FAIL: redis-cli against the RESP port said: $got" >&2
        status=1
    else
        echo "smoke: resp:  redis-cli SET/GET on port $resp_port ok"
    fi
else
    echo "smoke: resp:  redis-cli not installed, RESP smoke skipped"
fi
((status == 0)) && echo "smoke: ok"
exit "$status"
