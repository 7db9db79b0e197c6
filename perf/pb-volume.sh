#!/usr/bin/env bash
# Primary/backup state transfer at volume (issue 12): three synod-server
# processes (the masters), a 2-replica pb group on two of them, KEYS keys
# of 64-byte values written, the backup SIGKILLed, 5 s more writes (the
# primary compacts every 1,024 positions, so the backup cannot catch up
# from the log), the backup restarted: it must get the whole state by a
# chunked transfer. Prints the state's size, the time from restart to the
# install and to serving as backup, then kills the primary and reads every
# key back from the former backup (get_misses must be 0) and a few by name.
#
# Usage: perf/pb-volume.sh      Knobs: KEYS (1000000), PBV_PORT (17800),
#        BIN_DIR (default target/release; build it first).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${BIN_DIR:-$ROOT/target/release}
D=$(mktemp -d /tmp/synod-pb-volume.XXXXXX)
P=${PBV_PORT:-17800}
M=127.0.0.1:$P,127.0.0.1:$((P+1)),127.0.0.1:$((P+2))
start() { i=$1; $B/synod-server --listen 127.0.0.1:$((P+i)) --data-dir $D/n$i --masters $M --snapshot-log-slots 1024 >> $D/n$i.log 2>&1 & echo $! > $D/n$i.pid; }
cleanup() { for i in 0 1 2; do kill -9 $(cat $D/n$i.pid 2>/dev/null) 2>/dev/null; done; }
trap 'cleanup; rm -rf "$D"' EXIT
for i in 0 1 2; do start $i; done
sleep 2
export SYNOD_MASTERS=$M
$B/synod admin join --mode pb 1 127.0.0.1:$((P+1)) 127.0.0.1:$((P+2)) >/dev/null || exit 1
for t in $(seq 1 60); do $B/synod put ready 1 >/dev/null 2>&1 && break; sleep 0.5; done
t0=$(date +%s.%N)
$B/synod-bench --workload put --prefill yes --ops 1 --keys ${KEYS:-1000000} --value-size 64 --quiet | tail -1
t1=$(date +%s.%N); echo "fill: $(echo "$t1 - $t0" | bc) s"
leader=$($B/synod admin status | python3 -c 'import json,sys; s=json.load(sys.stdin); print([g for g in s["groups"] if g["gid"]==1][0]["leader"])')
echo "primary: $leader"
if [ "$leader" = "127.0.0.1:$((P+1))" ]; then b=2; p=1; else b=1; p=2; fi
for i in 0 1 2; do echo "n$i RSS $(ps -o rss= -p $(cat $D/n$i.pid)) KiB"; done
kill -9 $(cat $D/n$b.pid); echo "killed backup n$b"
$B/synod-bench --workload put --duration 5 --keys ${KEYS:-1000000} --value-size 64 --quiet --prefill no | tail -1
t2=$(date +%s.%N)
start $b; echo "restarted n$b"
for t in $(seq 1 600); do grep -q "installing a state transfer" $D/n$b.log && break; sleep 0.2; done
t3=$(date +%s.%N)
grep "installing a state transfer" $D/n$b.log | tail -1
echo "restart to install: $(echo "$t3 - $t2" | bc) s"
# wait until the primary serves with it as backup (status shows backup)
for t in $(seq 1 300); do $B/synod admin status --table | grep -q "^1 .*backup" && break; $B/synod admin status --table | awk '$4=="backup"' | grep -q . && break; sleep 0.2; done
t4=$(date +%s.%N); echo "restart to backup in view: $(echo "$t4 - $t2" | bc) s"
$B/synod admin status --table | sed -n '1,12p'
kill -9 $(cat $D/n$p.pid); echo "killed primary n$p"
t5=$(date +%s.%N)
for t in $(seq 1 100); do $B/synod put after-kill 1 >/dev/null 2>&1 && break; sleep 0.2; done
echo "failover: $(echo "$(date +%s.%N) - $t5" | bc) s"
$B/synod-bench --workload get --duration 3 --keys ${KEYS:-1000000} --value-size 64 --quiet --prefill no | tail -1
for k in 0 1 4242 999999; do echo "k$k: $($B/synod get k$k 2>&1 | head -c 40)"; done
