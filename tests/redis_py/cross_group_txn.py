"""redis-py MULTI/EXEC, WATCH, MSET and MGET over keys of two groups (a
cluster of two KV groups: tests/redis_py.rs,
redis_py_transactions_across_groups_are_atomic). The keys' shards are
computed with Synod's hash (FNV-1a 64 of the key, modulo the shard count)
and checked against the configuration (SYNOD_BIN admin query) to lie in
both groups, so every multi-key command here is a cross-group
transaction: two-phase commit underneath."""

import json
import os
import subprocess
import threading
import time

import redis

from common import connect

KEYS = [f"xg:{i}" for i in range(16)]


def shard_of(key, shards):
    """synod_wire::shard_of: FNV-1a 64 of the key's bytes, modulo shards."""
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def groups_of_keys():
    """The groups serving KEYS, by the latest configuration."""
    out = subprocess.run(
        [os.environ["SYNOD_BIN"], "admin", "query"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    shards = json.loads(out.stdout)["shards"]
    return {shards[shard_of(k, len(shards))] for k in KEYS}


def shards_apart(a, b):
    """Do keys a and b lie in different groups?"""
    out = subprocess.run(
        [os.environ["SYNOD_BIN"], "admin", "query"], capture_output=True, text=True, timeout=60
    )
    shards = json.loads(out.stdout)["shards"]
    return shards[shard_of(a, len(shards))] != shards[shard_of(b, len(shards))]


def main():
    assert len(groups_of_keys()) == 2, "the keys must lie in both groups"
    r = connect()

    # MULTI/EXEC over every key: all or nothing, the replies in order.
    p = r.pipeline()
    for k in KEYS:
        p.set(k, "0")
    p.mget(KEYS)
    res = p.execute()
    assert res[:-1] == [True] * len(KEYS), res
    assert res[-1] == [b"0"] * len(KEYS), res

    # MSET of every key against MGET of every key from other clients:
    # no reader may see a mix of two MSETs.
    stop = threading.Event()
    mixed = []
    reads = [0]

    def reader():
        c = connect()
        while not stop.is_set():
            vals = c.mget(KEYS)
            reads[0] += 1
            if len(set(vals)) != 1:
                mixed.append(vals)
                return
            # Locks are no-wait: a reader that never pauses starves the
            # writer (each MSET meets an MGET's locks, aborts and retries).
            time.sleep(0.02)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    w = connect()
    # 40 MSETs with a pause between them, so the readers' MGETs (each a
    # transaction over the same keys: one that meets the other's locks is
    # answered Busy and retried) run between them.
    started = time.monotonic()
    for i in range(40):
        w.mset({k: f"round{i}" for k in KEYS})
        time.sleep(0.02)
    i = 40
    stop.set()
    for t in threads:
        t.join(30)
    took = time.monotonic() - started
    assert not mixed, f"an MGET saw two MSETs at once: {mixed[0]}"
    assert reads[0] >= 5, f"only {reads[0]} MGETs ran between {i} MSETs in {took:.1f} s"
    assert r.mget(KEYS) == [f"round{i - 1}".encode()] * len(KEYS)

    # Transfers between keys of different groups inside MULTI, with
    # auditors: the total never changes.
    r.mset({k: "100" for k in KEYS})
    total = 100 * len(KEYS)
    audits_bad = []

    audits = [0]

    def auditor():
        c = connect()
        while not stop.is_set():
            s = sum(int(v) for v in c.mget(KEYS))
            audits[0] += 1
            if s != total:
                audits_bad.append(s)
                return
            time.sleep(0.02)

    stop.clear()
    threads = [threading.Thread(target=auditor) for _ in range(2)]
    for t in threads:
        t.start()
    w = connect()
    # At least 80 transfers, and on until the auditors have run a few
    # times (bounded): on a busy machine the transfers alone can be over
    # before the auditors' transactions get between them (no-wait locks:
    # an audit meeting a transfer's locks is retried). A short pause
    # between transfers leaves them room, as the MSET loop above does.
    deadline = time.monotonic() + 30
    i = 0
    while (i < 80 or audits[0] < 3) and time.monotonic() < deadline:
        a, b = KEYS[i % len(KEYS)], KEYS[(i * 7 + 3) % len(KEYS)]
        i += 1
        if a == b:
            continue
        p = w.pipeline()
        p.decrby(a, 5).incrby(b, 5)
        p.execute()
        time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join(30)
    assert not audits_bad, f"an audit saw a total of {audits_bad[0]}, not {total}"
    assert audits[0] >= 3, f"only {audits[0]} audits ran during {i} transfers"
    assert sum(int(v) for v in r.mget(KEYS)) == total

    # WATCH across groups: a change to any watched key aborts EXEC.
    one = connect(single_connection_client=True)
    other = connect()
    first = KEYS[0]
    last = next(k for k in KEYS if shards_apart(first, k))
    before = r.get(first)
    one.execute_command("WATCH", first, last)
    other.set(last, "changed")
    one.execute_command("MULTI")
    one.execute_command("SET", first, "mine")
    assert one.execute_command("EXEC") is None, "a watched key changed: EXEC must abort"
    assert r.get(first) == before, "the aborted EXEC ran nothing"
    one.execute_command("WATCH", first, last)
    one.execute_command("MULTI")
    one.execute_command("SET", first, "mine")
    one.execute_command("SET", last, "mine too")
    res = one.execute_command("EXEC")
    assert res is not None and len(res) == 2, res
    assert r.mget(first, last) == [b"mine", b"mine too"]
    print(
        f"cross_group_txn.py: {reads[0]} MGETs never saw a torn MSET of 40; "
        f"{audits[0]} audits saw the total through 80 transfers"
    )


if __name__ == "__main__":
    try:
        main()
    except redis.RedisError as e:
        raise SystemExit(f"cross_group_txn.py: {e!r}")
