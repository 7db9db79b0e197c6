"""redis-py SCAN over a cluster of two groups while shards move between
them (`synod admin move`, run through SYNOD_BIN with SYNOD_MASTERS and
SYNOD_CLUSTER_KEY_FILE), then KEYS, DBSIZE and FLUSHDB enabled. Run by
tests/redis_py.rs (redis_py_scan_across_groups_survives_shard_moves) on
servers started with --resp-allow-flushdb."""

import os
import subprocess

from common import connect

SHARDS = 64


def admin(*args):
    out = subprocess.run(
        [os.environ["SYNOD_BIN"], "admin", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def admin_out(*args):
    out = subprocess.run(
        [os.environ["SYNOD_BIN"], *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def main():
    r = connect()
    keys = {f"mv:{i}".encode() for i in range(2000)}
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, "v")
    pipe.execute()
    assert r.dbsize() >= len(keys)

    # Scan in small pages; after a few pages move shards both ways, among
    # them the one being scanned and ones not reached yet.
    seen = []
    cursor = 0
    pages = 0
    moved = False
    while True:
        cursor, page = r.scan(cursor, match="mv:*", count=25)
        seen.extend(page)
        pages += 1
        if pages == 5 and not moved:
            for shard in range(0, SHARDS, 3):
                admin("move", str(shard), "2" if shard % 2 == 0 else "1")
            moved = True
        if cursor == 0:
            break
    assert moved, "the scan ended before the moves"
    missing = keys - set(seen)
    assert not missing, f"{len(missing)} keys missed, e.g. {sorted(missing)[:5]}"
    print(f"keyspace_moves.py: {len(seen)} keys in {pages} pages across moves, none missed")

    # Keys written during the scan need not show up, but later scans see them.
    r.set("mv:late", "v")
    assert b"mv:late" in set(r.scan_iter(match="mv:l*"))
    assert set(r.keys("mv:*")) == keys | {b"mv:late"}
    # The blocking client's walk (`synod keys`, the session core's Scan).
    listed = set(admin_out("keys", "mv:*").encode().split())
    assert listed == keys | {b"mv:late"}, len(listed)

    # FLUSHDB enabled: every key of every group goes.
    assert r.flushdb() is True
    assert r.dbsize() == 0
    assert list(r.scan_iter(count=100)) == []
    assert r.get("mv:1") is None
    print("keyspace_moves.py: flushdb ok")


if __name__ == "__main__":
    main()
