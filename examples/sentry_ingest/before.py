"""Before: the Celery chain, coordinated through Redis keys (Sentry's shape).

``ingest()`` writes the raw event to Redis under ``e:{project_id}:{event_id}``
with a TTL and starts ``preprocess_event → symbolicate_event →
process_event → save_event``; every task loads the event by key, runs its
step and writes it back, passing only the key on. This is what the port
removes: if a step runs late (a retry backoff, a backlog) past the TTL the
event is gone (``EventLost``); a crash between "write back" and "enqueue
next" strands the key until it expires; every chain reinvents this.

Broker, result backend and event keys use ``INGEST_REDIS_URL``; broker and
result keys are prefixed with ``INGEST_KEY_PREFIX`` (tests isolate runs).
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery, chain
from celery.result import AsyncResult

from . import steps

REDIS_URL = os.environ.get("INGEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("INGEST_KEY_PREFIX", "ingest:")
EVENT_TTL = int(os.environ.get("INGEST_EVENT_TTL", "3600"))

app = Celery("examples.sentry_ingest.before", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_redis = redis.Redis.from_url(REDIS_URL)


class EventLost(LookupError):
    """The event's Redis key expired (or was never written) before this step."""


def event_key(project_id: int, event_id: str) -> str:
    return f"e:{project_id}:{event_id}"


def _load(key: str) -> dict[str, Any]:
    raw = _redis.get(key)
    if raw is None:
        raise EventLost(key)
    event: dict[str, Any] = json.loads(raw)
    return event


def _store(key: str, event: dict[str, Any]) -> None:
    _redis.set(key, json.dumps(event), ex=EVENT_TTL)


@app.task
def preprocess_event(cache_key: str, project_id: int) -> str:
    _store(cache_key, steps.preprocess(project_id, _load(cache_key)))
    return cache_key


@app.task(
    autoretry_for=(steps.SymbolicatorUnavailable,),
    max_retries=3,
    default_retry_delay=0.2,
)
def symbolicate_event(cache_key: str, project_id: int) -> str:
    _store(cache_key, steps.symbolicate(project_id, _load(cache_key)))
    return cache_key


@app.task
def process_event(cache_key: str, project_id: int) -> str:
    _store(cache_key, steps.process(project_id, _load(cache_key)))
    return cache_key


@app.task
def save_event(cache_key: str, project_id: int) -> str:
    event_id = steps.save(project_id, _load(cache_key))
    _redis.delete(cache_key)
    return event_id


def ingest(project_id: int, event: dict[str, Any]) -> AsyncResult:
    """Stash the event in Redis and start the chain; the result is save_event's."""
    key = event_key(project_id, event["event_id"])
    _store(key, event)
    return chain(
        preprocess_event.s(key, project_id),
        symbolicate_event.s(project_id),
        process_event.s(project_id),
        save_event.s(project_id),
    ).apply_async()
