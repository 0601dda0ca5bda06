"""The Celery side of the benchmarks (``celery -A bench.celery_app worker``).

Configured from the environment, so the harness and the worker subprocess it
starts agree on the Redis URL, the per-run key prefix and the queue::

    CODA_BENCH_REDIS_URL   redis://127.0.0.1:6379/14
    CODA_BENCH_PREFIX      coda-bench-<hex>:     (broker and result keys)
    CODA_BENCH_QUEUE       the queue this run's worker consumes

The chain passes events the way Sentry's ingest does: the producer writes the
event to Redis under ``e:{event_id}``, and each task reads it back, works on
it and writes it again, handing only the key to the next task.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]

__all__ = ["app", "configure", "event_key", "noop", "preprocess", "process", "save"]

ENV_URL = "CODA_BENCH_REDIS_URL"
ENV_PREFIX = "CODA_BENCH_PREFIX"
ENV_QUEUE = "CODA_BENCH_QUEUE"

app = Celery("bench")
_redis: redis.Redis | None = None


def configure(url: str, prefix: str, queue: str) -> None:
    """Point the app at ``url``, every key under ``prefix``, tasks to ``queue``.

    Everything else stays at Celery's defaults (prefetch multiplier 4, early
    acks, json): the comparison is with Celery as teams run it.
    """
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
    )


def event_key(event_id: str) -> str:
    return f"{os.environ.get(ENV_PREFIX, '')}e:{event_id}"


def _client() -> redis.Redis:
    """One Redis client per process, made after the prefork fork."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ[ENV_URL])
    return _redis


def _load(key: str) -> dict[str, Any]:
    raw = _client().get(key)
    if raw is None:
        raise KeyError(f"event {key} is not in Redis")
    event: dict[str, Any] = json.loads(raw)
    return event


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Does nothing: what is left is Celery's and Redis's cost."""


@app.task(name="bench.preprocess")  # type: ignore[untyped-decorator]
def preprocess(key: str) -> str:
    event = _load(key)
    event["preprocessed"] = True
    _client().set(key, json.dumps(event))
    return key


@app.task(name="bench.process")  # type: ignore[untyped-decorator]
def process(key: str) -> str:
    event = _load(key)
    event["processed"] = len(event["frames"])
    _client().set(key, json.dumps(event))
    return key


@app.task(name="bench.save")  # type: ignore[untyped-decorator]
def save(key: str) -> str:
    event = _load(key)
    _client().delete(key)
    return str(event["event_id"])


if os.environ.get(ENV_URL):
    configure(os.environ[ENV_URL], os.environ.get(ENV_PREFIX, ""), os.environ[ENV_QUEUE])
