"""What every redis-py test script shares: the gateway address from
SYNOD_RESP_ADDR (set by tests/redis_py.rs), a connection with the test
timeout, and an assertion on Redis error replies."""

import os

import redis

HOST, PORT = os.environ["SYNOD_RESP_ADDR"].rsplit(":", 1)


def connect(**kw):
    return redis.Redis(host=HOST, port=int(PORT), socket_timeout=20, **kw)


def expect_error(fn, prefix):
    try:
        fn()
    except redis.ResponseError as e:
        assert str(e).startswith(prefix), f"error {e!r} does not start with {prefix!r}"
        return
    raise AssertionError(f"expected an error starting with {prefix!r}")
