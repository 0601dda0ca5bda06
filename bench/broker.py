"""Benchmark 6: the ``coda://`` broker, durable against in-memory, in one run.

Two broker-only supervisors (``--workers 0``) run side by side: one on the
default SQLite store, where durable queues, messages and confirms go through
group commits, and one on ``--store memory://``. Against each, with kombu:

- *publish*: ``Producer.publish`` of persistent ~250-byte json messages to a
  durable queue, publisher confirms on (the transport's default), by one
  producer (each publish waits for its confirm: latency-bound) and by
  ``PRODUCERS`` producer processes at once (what a fleet of web processes
  does; group commits batch them); and by one producer with
  ``confirm_publish=False`` (sent and forgotten: what confirms cost);
- *consume*: one consumer, prefetch 100 (a Celery worker's default of 4 x
  its concurrency, give or take), acking each message, draining a backlog.

Rounds alternate (in-memory, durable, in-memory, durable) so a burst of
load from elsewhere lands on both. The ratio is durable ÷ in-memory; the
target is the durable broker within 1.5x of the in-memory one (≥ 0.67x).
Server CPU is the supervisor's (utime + stime) per message, both phases.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kombu import Connection, Consumer, Exchange, Producer, Queue

import coda.compat.kombu  # noqa: F401  (registers coda:// with kombu)
from coda.testing import SupervisorProcess

from .report import Row
from .sizes import Sizes
from .stats import cpu_seconds, rate
from .systems import progress

__all__ = ["PRODUCERS", "broker_rows"]

PRODUCERS = 4
ROUNDS = 2
PREFETCH = 100
GOAL = 1 / 1.5  # durable ÷ in-memory, for rates
EXCHANGE = Exchange("bench-broker", "direct", durable=True)
BODY = {"task": "bench", "args": [1, 2, 3], "pad": "x" * 200}


@dataclass
class _Side:
    """One broker: its supervisor and what was measured against it."""

    label: str
    supervisor: SupervisorProcess
    seconds: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0
    messages: int = 0

    @property
    def url(self) -> str:
        return f"coda://{self.supervisor.address}"

    def measure(self, name: str, count: int, run: Callable[[str, int], float]) -> None:
        before = cpu_seconds(self.supervisor.pid)
        seconds = run(self.url, count)
        self.cpu += cpu_seconds(self.supervisor.pid) - before
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.items[name] = self.items.get(name, 0) + count

    def rate(self, name: str) -> float:
        return rate(self.items[name], self.seconds[name])


def broker_rows(sizes: Sizes) -> list[Row]:
    one, many = sizes.broker_messages // 4, sizes.broker_messages // PRODUCERS * PRODUCERS
    progress(f"coda:// broker: {2 * one + many} messages a round, durable and in-memory")
    sides = [_start("in-memory", "memory://"), _start("durable", None)]
    try:
        for _ in range(ROUNDS):
            for side in sides:
                queue = _queue()
                side.measure("one", one, _publisher(queue, 1))
                side.measure("many", many, _publisher(queue, PRODUCERS))
                side.measure("unconfirmed", one, _publisher(queue, 1, confirm=False))
                side.measure("consume", 2 * one + many, _consumer(queue))
                side.messages += 2 * (2 * one + many)  # each published, then consumed
    finally:
        for side in sides:
            side.supervisor.close()
    memory, durable = sides
    names = {
        "one": "coda:// publish, 1 producer, confirmed",
        "many": f"coda:// publish, {PRODUCERS} producer processes, confirmed",
        "unconfirmed": "coda:// publish, 1 producer, confirm_publish=False",
        "consume": f"coda:// consume, prefetch {PREFETCH}, acked",
    }
    rows = [
        Row(
            f"{title} (durable vs in-memory)",
            "throughput",
            durable.rate(name),
            "/s",
            memory.rate(name),
            baseline_label="in-memory",
            goal=GOAL,
            target="≥ 0.67x (1.5x)",
        )
        for name, title in names.items()
    ]
    rows.append(
        Row(
            "coda:// server CPU per message published or consumed",
            "cost",
            durable.cpu / durable.messages * 1e6,
            "µs",
            memory.cpu / memory.messages * 1e6,
            baseline_label="in-memory",
        )
    )
    return rows


def _start(label: str, store: str | None) -> _Side:
    quiet = ["--log-level", "WARNING"]
    return _Side(label, SupervisorProcess([], workers=0, store=store, extra_args=quiet))


def _queue() -> Queue:
    name = f"bench-broker-{uuid.uuid4().hex[:8]}"
    return Queue(name, EXCHANGE, routing_key="bench", durable=True)


def _publisher(
    queue: Queue, producers: int, *, confirm: bool = True
) -> Callable[[str, int], float]:
    def run(url: str, count: int) -> float:
        with Connection(url) as connection:
            channel = connection.channel()
            queue(channel).declare()
            before = _size(channel, queue)
        if producers == 1:
            started = time.perf_counter()
            _publish(url, count, confirm=confirm)
            if not confirm:  # done once the supervisor has them all
                with Connection(url) as connection:
                    channel = connection.channel()
                    while _size(channel, queue) < before + count:
                        pass
            return time.perf_counter() - started
        context = multiprocessing.get_context("fork")
        start = context.Event()
        children = [
            context.Process(target=_publish, args=(url, count // producers, start))
            for _ in range(producers)
        ]
        for child in children:
            child.start()
        time.sleep(0.5)  # every child connected and waiting (their start-up is not measured)
        started = time.perf_counter()
        start.set()
        for child in children:
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"a producer process failed (exit {child.exitcode})")
        return time.perf_counter() - started

    return run


def _size(channel: object, queue: Queue) -> int:
    declared = channel.queue_declare(queue.name, passive=True)  # type: ignore[attr-defined]
    return int(declared.message_count)


def _publish(url: str, count: int, start: object = None, *, confirm: bool = True) -> None:
    with Connection(url, transport_options={"confirm_publish": confirm}) as connection:
        producer = Producer(
            connection.channel(), exchange=EXCHANGE, routing_key="bench", serializer="json"
        )
        producer.publish(BODY, declare=[EXCHANGE])  # connected, warm
        wait = getattr(start, "wait", None)
        if wait is not None:
            wait()
        for _ in range(count - 1):
            producer.publish(BODY)
    if start is not None:
        os._exit(0)  # a forked child: skip the parent's atexit handlers


def _consumer(queue: Queue) -> Callable[[str, int], float]:
    def run(url: str, count: int) -> float:
        received = 0

        def on_message(body: object, message: object) -> None:
            nonlocal received
            received += 1
            message.ack()  # type: ignore[attr-defined]

        with Connection(url) as connection:
            channel = connection.channel()
            with Consumer(channel, [queue], callbacks=[on_message], prefetch_count=PREFETCH):
                started = time.perf_counter()
                while received < count:
                    connection.drain_events(timeout=30)
                return time.perf_counter() - started

    return run
