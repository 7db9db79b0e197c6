#!/usr/bin/env bash
# Long nemesis runs on real processes (issue 14): runs tests/nemesis.rs for
# SECS seconds per run (default 1800) over seeds START.. (RUNS runs), each a
# different random fault schedule after one pass over every nemesis. Prints
# the per-run summary lines (operations, faults injected by kind, histories
# checked, writes lost) and a total. Needs root and iproute2
# (tools/install-nemesis-deps.sh). Usage: perf/nemesis.sh [SECS] [RUNS] [START]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1800}
runs=${2:-1}
start=${3:-1}
bash tools/install-nemesis-deps.sh
cargo build --release --tests -q
log=$(mktemp -t synod-nemesis.XXXXXX)
for ((seed = start; seed < start + runs; seed++)); do
    echo "nemesis run: seed $seed, $secs s" >&2
    SYNOD_NEMESIS_SECS=$secs SYNOD_NEMESIS_SEED=$seed \
        cargo test --release -q --test nemesis -- --nocapture 2>&1 | tee -a "$log" | grep -E "^nemesis|SKIPPED|panicked|FAILED" || true
done
passed=$(grep -c '^nemesis: seed' "$log" || true)
echo "nemesis: $passed of $runs runs passed (log: $log)"
[ "$passed" -eq "$runs" ]
