"""The Redis database the suite uses, and the keys it must not leave there.

Database 13 unless ``CODA_TEST_REDIS_URL`` says otherwise: not 0, where
people keep their own data, and not 14, the benchmarks'. Every key a test
run writes starts with ``coda-test-<run>-``: ``<run>`` is set once per
``pytest`` invocation (``CODA_TEST_RUN``, inherited by xdist workers and the
Celery workers the tests start), and each test process adds its own part.
Each process deletes its keys when its session ends, and the end of the run
checks that none are left.
"""

from __future__ import annotations

import os
import uuid

import redis

__all__ = ["DEFAULT_URL", "delete_keys", "keys", "run_pattern", "setup_environment"]

DEFAULT_URL = "redis://127.0.0.1:6379/13"


def setup_environment() -> None:
    """Pick the database and the run's id, unless a parent process already did."""
    os.environ.setdefault("CODA_TEST_REDIS_URL", DEFAULT_URL)
    os.environ.setdefault("CODA_TEST_RUN", uuid.uuid4().hex[:10])


def run_pattern() -> str:
    """Every key of this test run matches it."""
    return f"coda-test-{os.environ['CODA_TEST_RUN']}-*"


def keys(url: str, pattern: str) -> list[str]:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return sorted(key.decode() for key in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def delete_keys(url: str, pattern: str) -> int:
    """Delete the keys matching ``pattern``; return how many there were."""
    found = keys(url, pattern)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        for start in range(0, len(found), 500):
            client.delete(*found[start : start + 500])
    finally:
        client.close()
    return len(found)
