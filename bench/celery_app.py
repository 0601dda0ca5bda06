"""The Celery side of the benchmarks (``celery -A bench.celery_app worker``).

One ``Celery`` app per configuration under test: a broker (Redis or
RabbitMQ), a message serializer (json or msgpack), Redis as result backend.
The harness makes its apps with ``make_app``; the worker subprocess it starts
makes the same one from the environment when it imports this module::

    CODA_BENCH_BROKER_URL  redis://127.0.0.1:6379/14 or amqp://guest:guest@127.0.0.1:5672//
    CODA_BENCH_REDIS_URL   the result backend, and where the chain keeps its events
    CODA_BENCH_PREFIX      coda-bench-<hex>:     (Redis keys: broker, results, events)
    CODA_BENCH_QUEUE       the queue this run's worker consumes
    CODA_BENCH_SERIALIZER  json or msgpack (task messages and results)

The chain passes events the way Sentry's ingest does: the producer writes the
event to Redis under ``e:{event_id}``, and each task reads it back, works on
it and writes it again, handing only the key to the next task. The event is
encoded with msgspec's MessagePack, the library and format the Coda workflow
uses for the same event (its default serializer), so both sides pay the same
price for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgspec
import redis
from celery import Celery  # type: ignore[import-untyped]

__all__ = ["CeleryConfig", "app", "dump_event", "event_key", "load_event", "make_app"]

ENV_BROKER = "CODA_BENCH_BROKER_URL"
ENV_URL = "CODA_BENCH_REDIS_URL"
ENV_PREFIX = "CODA_BENCH_PREFIX"
ENV_QUEUE = "CODA_BENCH_QUEUE"
ENV_SERIALIZER = "CODA_BENCH_SERIALIZER"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_redis: redis.Redis | None = None


@dataclass(frozen=True)
class CeleryConfig:
    """One way to run Celery: its broker and its message serializer."""

    broker: str  # "redis" or "rabbitmq"
    serializer: str  # "json" or "msgpack"

    @property
    def label(self) -> str:
        return f"Celery {self.broker}/{self.serializer}"


def dump_event(event: dict[str, Any]) -> bytes:
    return _encoder.encode(event)


def load_event(raw: bytes) -> dict[str, Any]:
    event: dict[str, Any] = _decoder.decode(raw)
    return event


def event_key(prefix: str, event_id: str) -> str:
    return f"{prefix}e:{event_id}"


def _client() -> redis.Redis:
    """One Redis client per process, made after the prefork fork."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ[ENV_URL])
    return _redis


def _load(key: str) -> dict[str, Any]:
    raw = _client().get(key)
    if not isinstance(raw, bytes):
        raise KeyError(f"event {key} is not in Redis")
    return load_event(raw)


def noop() -> None:
    """Does nothing: what is left is Celery's and its broker's cost."""


def preprocess(key: str) -> str:
    event = _load(key)
    event["preprocessed"] = True
    _client().set(key, dump_event(event))
    return key


def process(key: str) -> str:
    event = _load(key)
    event["processed"] = len(event["frames"])
    _client().set(key, dump_event(event))
    return key


def save(key: str) -> str:
    event = _load(key)
    _client().delete(key)
    return str(event["event_id"])


TASKS = {"noop": noop, "preprocess": preprocess, "process": process, "save": save}


def make_app(broker_url: str, redis_url: str, prefix: str, queue: str, serializer: str) -> Celery:
    """An app on ``broker_url``, results in Redis, everything under ``prefix``.

    Everything else stays at Celery's defaults (prefetch multiplier 4, early
    acks): the comparison is with Celery as teams run it.
    """
    celery = Celery("bench", set_as_current=False)
    redis_options = {"global_keyprefix": prefix}
    celery.conf.update(
        broker_url=broker_url,
        result_backend=redis_url,
        broker_transport_options=redis_options if broker_url.startswith("redis") else {},
        result_backend_transport_options=redis_options,
        task_default_queue=queue,
        task_serializer=serializer,
        result_serializer=serializer,
        accept_content=[serializer],
        broker_connection_retry_on_startup=True,
    )
    for name, fn in TASKS.items():
        celery.task(name=f"bench.{name}")(fn)
    return celery


app = (
    make_app(
        os.environ[ENV_BROKER],
        os.environ[ENV_URL],
        os.environ.get(ENV_PREFIX, ""),
        os.environ[ENV_QUEUE],
        os.environ.get(ENV_SERIALIZER, "json"),
    )
    if os.environ.get(ENV_BROKER)
    else None
)
