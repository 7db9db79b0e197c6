"""redis-py against a Synod RESP gateway: SCAN (MATCH, COUNT, TYPE), KEYS,
DBSIZE, SETRANGE, INCRBYFLOAT, and FLUSHDB refused (the suite's servers run
without --resp-allow-flushdb). Keys across shards move in
keyspace_moves.py. Run by tests/redis_py.rs with SYNOD_RESP_ADDR."""

import uuid

import redis

from common import connect, expect_error


def main():
    r = connect()
    p = f"ks-{uuid.uuid4().hex}"  # fresh prefix: runs share the store

    # SETRANGE: zero-byte padding, the new length, Redis' refusals.
    assert r.setrange(f"{p}:sr", 5, "ab") == 7
    assert r.get(f"{p}:sr") == b"\x00" * 5 + b"ab"
    assert r.setrange(f"{p}:sr", 0, "XY") == 7
    assert r.get(f"{p}:sr") == b"XY\x00\x00\x00ab"
    assert r.setrange(f"{p}:none", 3, "") == 0
    assert r.exists(f"{p}:none") == 0
    expect_error(lambda: r.setrange(f"{p}:sr", -1, "x"), "offset is out of range")
    expect_error(
        lambda: r.setrange(f"{p}:sr", 536870911, "xy"),
        "string exceeds maximum allowed size (proto-max-bulk-len)",
    )

    # INCRBYFLOAT: Redis' formatting (no exponent, trailing zeros trimmed).
    r.set(f"{p}:f", "10.50")
    # (redis-py turns the reply into a float; the stored text shows the
    # formatting.)
    assert r.incrbyfloat(f"{p}:f", 0.1) == 10.6
    assert r.get(f"{p}:f") == b"10.6"
    assert r.execute_command("INCRBYFLOAT", f"{p}:f", "-5") == 5.6
    assert r.get(f"{p}:f") == b"5.6"
    r.set(f"{p}:f", "5.0e3")
    assert r.execute_command("INCRBYFLOAT", f"{p}:f", "2.0e2") == 5200
    assert r.get(f"{p}:f") == b"5200"
    assert r.incrbyfloat(f"{p}:new", 3) == 3
    assert r.get(f"{p}:new") == b"3"
    r.set(f"{p}:s", "abc")
    expect_error(lambda: r.incrbyfloat(f"{p}:s", 1), "value is not a valid float")
    expect_error(
        lambda: r.execute_command("INCRBYFLOAT", f"{p}:f", "abc"), "value is not a valid float"
    )

    # SCAN over every shard: each key once (no writes meanwhile), COUNT
    # bounds a page, MATCH filters, TYPE string is everything.
    keys = {f"{p}:k{i}".encode() for i in range(300)}
    for k in keys:
        r.set(k, "v")
    seen = list(r.scan_iter(match=f"{p}:k*", count=20))
    assert set(seen) == keys, len(seen)
    assert len(seen) == len(keys), "no duplicate without a move"
    cursor, page = r.scan(0, match=f"{p}:k*", count=5)
    assert len(page) <= 5 and isinstance(cursor, int)
    assert set(r.scan_iter(match=f"{p}:k1?", count=1000)) == {
        f"{p}:k{i}".encode() for i in range(10, 20)
    }
    assert set(r.scan_iter(match=f"{p}:k*", _type="string", count=100)) == keys
    assert list(r.scan_iter(match=f"{p}:*", _type="hash")) == []
    expect_error(lambda: r.scan(123456789), "invalid cursor")
    expect_error(lambda: r.execute_command("SCAN", "0", "COUNT", "0"), "syntax error")

    # KEYS with glob classes, and DBSIZE counting the keys just written.
    assert set(r.keys(f"{p}:k[12]")) == {f"{p}:k1".encode(), f"{p}:k2".encode()}
    assert set(r.keys(f"{p}:k2[^0-8]")) == {f"{p}:k29".encode()}
    assert set(r.keys(f"{p}:k*")) == keys
    assert r.dbsize() >= len(keys)

    # FLUSHDB is refused unless the server runs with --resp-allow-flushdb.
    expect_error(lambda: r.flushdb(), "FLUSHDB is disabled")
    expect_error(lambda: r.flushall(), "FLUSHDB is disabled")
    assert r.get(f"{p}:k1") == b"v"
    print("test_keyspace.py: ok")


if __name__ == "__main__":
    main()
