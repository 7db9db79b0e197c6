"""redis-py against a Synod RESP gateway: MULTI/EXEC/DISCARD/WATCH/UNWATCH
and the atomic multi-key commands (MSETNX, RENAME, RENAMENX, MSET, MGET,
DEL), with RESP2 and RESP3. The test cluster has one KV group, so every
transaction here lies in one group. Run by tests/redis_py.rs with
SYNOD_RESP_ADDR=host:port; exits non-zero on the first failure."""

import sys
import threading
import uuid

import redis

from common import connect, expect_error


def ok(v):
    return v in (True, b"OK", "OK")


def run(label, proto):
    r = connect(protocol=proto)
    k = f"{label}-{uuid.uuid4().hex}"  # fresh keys: runs share the store
    a, b, c = k + "a", k + "b", k + "c"

    # MULTI/SET/SET/EXEC through redis-py's transaction pipeline.
    p = r.pipeline()  # transaction=True: MULTI ... EXEC
    p.set(a, "1").set(b, "2").incr(c).get(a).mget(a, b)
    assert p.execute() == [True, True, 1, b"1", [b"1", b"2"]]

    # The raw commands on one connection: +QUEUED, DISCARD, EXECABORT.
    one = connect(protocol=proto, single_connection_client=True)
    assert ok(one.execute_command("MULTI"))
    assert one.execute_command("GET", a) in (b"QUEUED", "QUEUED")
    one.execute_command("SET", a, "x")  # redis-py reads its QUEUED as a SET reply
    assert ok(one.execute_command("DISCARD"))
    assert r.get(a) == b"1", "DISCARD ran nothing"
    expect_error(lambda: one.execute_command("DISCARD"), "DISCARD without MULTI")
    expect_error(lambda: one.execute_command("EXEC"), "EXEC without MULTI")
    assert ok(one.execute_command("MULTI"))
    expect_error(lambda: one.execute_command("SET", a), "wrong number of arguments for 'set'")
    assert one.execute_command("APPEND", b, "never") in (b"QUEUED", "QUEUED")
    expect_error(lambda: one.execute_command("SETNX", a, "x"), "'setnx' cannot be queued in MULTI")
    try:
        one.execute_command("EXEC")
        raise AssertionError("EXEC after a refused command must abort")
    except redis.exceptions.ExecAbortError:
        pass  # redis-py's class for Redis' -EXECABORT
    assert r.get(b) == b"2", "an aborted EXEC ran nothing"
    # A runtime error is in EXEC's array; the rest ran.
    assert ok(one.execute_command("MULTI"))
    one.execute_command("INCR", a + "s")
    one.execute_command("APPEND", a, "y")
    res = one.execute_command("EXEC")
    assert res == [1, 2], res

    # WATCH: EXEC answers None exactly when a watched key changed.
    other = connect(protocol=proto)
    assert ok(one.execute_command("WATCH", a, c))
    assert ok(one.execute_command("MULTI"))
    one.execute_command("SET", a, "mine")
    res = one.execute_command("EXEC")
    assert res in ([b"OK"], [True]), res
    assert r.get(a) == b"mine"
    assert ok(one.execute_command("WATCH", a))
    other.set(a, "theirs")
    assert ok(one.execute_command("MULTI"))
    one.execute_command("SET", a, "mine again")
    assert one.execute_command("EXEC") is None, "a watched key changed: EXEC must answer nil"
    assert r.get(a) == b"theirs"
    assert ok(one.execute_command("WATCH", a))
    assert ok(one.execute_command("UNWATCH"))
    other.set(a, "theirs again")
    assert ok(one.execute_command("MULTI"))
    one.execute_command("GET", a)
    assert one.execute_command("EXEC") == [b"theirs again"]

    # The same race through redis-py's WATCH pipeline: WatchError.
    with r.pipeline() as pw:
        pw.watch(b)
        seen = int(pw.get(b))
        other.set(b, "100")
        pw.multi()
        pw.set(b, seen + 1)
        try:
            pw.execute()
            raise AssertionError("EXEC ran although the watched key changed")
        except redis.WatchError:
            pass
    assert r.get(b) == b"100"

    # Two clients racing optimistic increments: every one lands exactly
    # once (a lost update would make the total short).
    counter = k + "counter"
    r.set(counter, 0)
    per_thread = 15
    failures = []

    def bump():
        try:
            cli = connect(protocol=proto)

            def incr(pipe):
                v = int(pipe.get(counter))
                pipe.multi()
                pipe.set(counter, v + 1)

            for _ in range(per_thread):
                cli.transaction(incr, counter)
        except Exception as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a WATCH retry loop did not finish"
    assert not failures, failures
    assert r.get(counter) == str(2 * per_thread).encode()

    # Atomic multi-key commands.
    d, e = k + "d", k + "e"
    assert r.msetnx({d: "1", e: "2"}) is True
    assert r.msetnx({e: "3", k + "f": "3"}) is False
    assert r.mget(d, e, k + "f") == [b"1", b"2", None]
    assert r.mset({d: "4", e: "5"}) is True
    assert r.rename(d, k + "g") is True
    assert r.mget(d, k + "g") == [None, b"4"]
    expect_error(lambda: r.rename(d, e), "no such key")
    assert r.renamenx(k + "g", e) is False
    assert r.renamenx(k + "g", d) is True
    assert r.get(d) == b"4"
    assert r.delete(d, e, k + "none") == 2
    print(f"{label}: ok")


def main():
    run("resp2", 2)
    run("resp3", 3)
    print("transactions: all ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError:
        import traceback

        traceback.print_exc()
        sys.exit(1)
