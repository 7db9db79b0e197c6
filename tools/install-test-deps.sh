#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: redis-py (the most used
# Redis client, version 5 or later, which opens with HELLO 3) for
# tests/redis_py.rs. Run once on a fresh machine before `cargo test`
# (.ci/run does). Idempotent; uses pip from PyPI.
set -euo pipefail
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
    echo "install-test-deps: $PY not found; tests/redis_py.rs will skip" >&2
    exit 0
fi
if "$PY" -c 'import redis, sys; sys.exit(0 if int(redis.__version__.split(".")[0]) >= 5 else 1)' 2>/dev/null; then
    exit 0
fi
# --break-system-packages: a distribution Python marks its site-packages
# as externally managed (PEP 668); this is a test machine's own install.
"$PY" -m pip install --quiet --user 'redis>=5' 2>/dev/null ||
    "$PY" -m pip install --quiet 'redis>=5' 2>/dev/null ||
    "$PY" -m pip install --quiet --break-system-packages 'redis>=5'
"$PY" -c 'import redis; print("redis-py", redis.__version__)'
