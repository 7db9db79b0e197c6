"""redis-py against a Synod RESP gateway: the connection handshake and the
string and key commands Synod supports, with the client's default settings
and with RESP2 and RESP3 forced. Run by tests/redis_py.rs with
SYNOD_RESP_ADDR=host:port; exits non-zero on the first failure."""

import sys
import time
import uuid

import redis

from common import connect, expect_error


def run(label, r):
    k = f"{label}-{uuid.uuid4().hex}"  # fresh keys: runs share the store
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    info = r.info()
    assert "redis_version" in info, info
    assert r.client_setname("py") is True
    assert r.client_getname() in (b"py", "py")
    assert isinstance(r.client_id(), int)
    assert r.client_info()["name"] == "py"
    assert r.execute_command("SELECT", 0) in (True, b"OK", "OK")
    assert r.config_get("save") == {"save": ""} or r.config_get("save") == {b"save": b""}
    assert r.command_count() > 10

    # Strings.
    assert r.get(k) is None
    assert r.set(k, "This is a string") is True
    assert r.get(k) == b"This is a string"
    assert r.strlen(k) == 16
    assert r.strlen(k + "none") == 0
    assert r.getrange(k, 0, 3) == b"This"
    assert r.getrange(k, -3, -1) == b"ing"
    assert r.getrange(k + "none", 0, -1) == b""
    assert r.append(k, "!") == 17
    assert r.type(k) in (b"string", "string")
    assert r.type(k + "none") in (b"none", "none")

    # Atomic single-key writes (one log entry each).
    n = k + "n"
    assert r.incr(n) == 1
    assert r.incrby(n, 10) == 11
    assert r.decr(n) == 10
    assert r.decrby(n, 15) == -5
    assert r.get(n) == b"-5"
    expect_error(lambda: r.incr(k), "value is not an integer or out of range")
    r.set(n, str(2**63 - 1))
    expect_error(lambda: r.incr(n), "increment or decrement would overflow")
    s = k + "s"
    assert r.set(s, "a", nx=True) is True
    assert r.set(s, "b", nx=True) is None
    assert r.set(s + "x", "b", xx=True) is None
    assert r.set(s, "c", xx=True, get=True) == b"a"
    assert r.set(s, "d", keepttl=True) is True
    assert r.setnx(s, "e") is False
    assert r.setnx(s + "new", "e") is True
    assert r.getset(s, "f") == b"d"
    assert r.getdel(s) == b"f"
    assert r.getdel(s) is None
    assert r.exists(s) == 0
    # Expiry, in log time (the leader's clock stamped into the log).
    r.set(s, "v")
    assert r.ttl(s) == -1 and r.pttl(s) == -1
    assert r.ttl(s + "none") == -2 and r.pttl(s + "none") == -2
    assert r.persist(s) is False
    assert r.getex(s) == b"v" and r.getex(s, persist=True) == b"v"
    assert r.expire(s, 100) is True
    assert 99 <= r.ttl(s) <= 100 and 98_000 < r.pttl(s) <= 100_000
    assert r.expire(s, 50, nx=True) is False
    assert r.expire(s, 50, gt=True) is False
    assert r.expire(s, 200, gt=True) is True
    assert r.set(s, "w", keepttl=True) is True and r.ttl(s) > 150
    assert r.persist(s) is True and r.ttl(s) == -1
    assert r.set(s, "x", ex=100) is True and r.ttl(s) > 90
    assert r.set(s, "y") is True and r.ttl(s) == -1, "SET clears the TTL"
    assert r.execute_command("SETEX", s, 100, "z") in (True, b"OK") and r.get(s) == b"z"
    assert r.ttl(s) > 90
    assert r.psetex(s, 100_000, "z") is True and r.pttl(s) > 90_000
    assert r.getex(s, ex=300) == b"z" and r.ttl(s) > 290
    assert r.expire(s, 100) is True and r.incr(n + "i") == 1 and r.ttl(n + "i") == -1
    r.set(n + "i", "1", ex=100)
    assert r.incr(n + "i") == 2 and r.ttl(n + "i") > 90, "INCR keeps the TTL"
    assert r.expireat(s, 2_000_000_000) is True and r.ttl(s) > 1_000_000
    assert r.pexpireat(s, 2_000_000_000_000, lt=True) is False
    # Short expiry: gone, for reads and writes alike.
    e = k + "e"
    assert r.set(e, "v", px=300) is True
    assert r.get(e) == b"v"
    deadline = time.time() + 10
    while r.get(e) is not None:
        assert time.time() < deadline, "key with PX 300 still there after 10 s"
        time.sleep(0.1)
    assert r.ttl(e) == -2 and r.exists(e) == 0
    assert r.set(e, "again", nx=True) is True
    assert r.set(e, "v", exat=1) is True and r.get(e) is None, "a past EXAT deletes"
    r.set(e, "v")
    assert r.expire(e, -1) is True and r.exists(e) == 0
    expect_error(lambda: r.set(s, "v", ex=0), "invalid expire time in 'set' command")
    expect_error(lambda: r.execute_command("SETEX", s, 0, "v"), "invalid expire time in 'setex' command")
    expect_error(lambda: r.execute_command("EXPIRE", s, 10, "NX", "XX"), "NX and XX, GT or LT options")
    expect_error(lambda: r.execute_command("SET", s, "v", "NX", "XX"), "syntax error")

    # Several keys.
    a, b, c = k + "a", k + "b", k + "c"
    assert r.mset({a: "1", b: "2"}) is True
    assert r.mget([a, c, b]) == [b"1", None, b"2"]
    assert r.exists(a, b, c, a) == 3
    assert r.delete(a, c) == 1
    assert r.unlink(b) == 1
    assert r.exists(a, b) == 0

    # A pipeline without a transaction keeps per-key order.
    p = r.pipeline(transaction=False)
    p.set(k, "x").append(k, "y").get(k).strlen(k)
    assert p.execute() == [True, 2, b"xy", 2]

    # Errors with Redis' texts, and clear refusals.
    expect_error(lambda: r.execute_command("GET"), "wrong number of arguments for 'get' command")
    expect_error(lambda: r.getrange(k, "a", 1), "value is not an integer or out of range")
    expect_error(lambda: r.hset(k + "h", "f", "v"), "'hset' is not supported: Synod stores strings only")
    expect_error(lambda: r.lpush(k + "l", "x"), "'lpush' is not supported")
    expect_error(lambda: r.flushdb(), "FLUSHDB is disabled")
    expect_error(lambda: r.execute_command("NOSUCH"), "unknown command 'NOSUCH'")
    print(f"{label}: ok")


def main():
    default = connect()
    run("default", default)
    r3 = connect(protocol=3)
    run("resp3", r3)
    # The handshakes really chose their protocols (redis-py 8's default is
    # RESP3): HELLO answers Redis' map, CLIENT INFO names the protocol.
    hello = r3.execute_command("HELLO", 3)
    assert hello[b"proto"] == 3 and hello[b"server"] == b"synod", hello
    assert set(hello) == {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}
    if int(redis.__version__.split(".")[0]) >= 8:
        assert default.client_info()["resp"] == "3"
    assert default.client_info()["lib-name"] == "redis-py"
    r2 = connect(protocol=2)
    run("resp2", r2)
    assert r2.client_info()["resp"] == "2"
    assert r3.client_info()["resp"] == "3"
    print("redis-py", redis.__version__, "all ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError:
        import traceback

        traceback.print_exc()
        sys.exit(1)
