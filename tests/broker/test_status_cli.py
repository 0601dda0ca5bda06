"""``coda status`` of a supervisor serving ``coda://``: the Celery queues with
their ready, unacked and held counts and their consumers, through the real
command, with a stock Celery producer and a kombu consumer."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.testing import SupervisorProcess, wait_until
from tests.broker.processes import broker_queue
from tests.e2e.test_cli import coda_cli

pytestmark = pytest.mark.e2e


def test_status_shows_celery_queues_and_consumers_of_a_broker_only_supervisor(
    broker: SupervisorProcess,
) -> None:
    name = f"coda-test-status-{uuid.uuid4().hex[:8]}"
    url = f"coda://{broker.address}"
    producer = Celery("producer", broker=url)
    for _ in range(2):
        producer.send_task("tests.apps.broker_app.add", args=(1, 2), queue=name)
    producer.send_task("tests.apps.broker_app.add", args=(3, 4), queue=name, countdown=600)
    received: list[Any] = []
    with Connection(url) as connection:
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        consumer = connection.Consumer(
            queue, callbacks=[lambda body, message: received.append(message)], prefetch_count=1
        )
        with consumer:
            while not received:  # the test's timeout bounds this loop
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=0.2)
            counts = {"ready": 1, "unacked": 1, "held": 1, "consumers": 1}
            wait_until(lambda: broker_queue(broker, name) == counts, what=f"counts {counts}")
            done = coda_cli("status", "--supervisor", broker.address)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "workers: none (started with --workers 0)" in lines
    (header,) = [line.split() for line in lines if line.split()[:2] == ["queue", "ready"]]
    assert header == ["queue", "ready", "unacked", "held", "consumers"]
    (row,) = [line.split() for line in lines if line.split()[:1] == [name]]
    assert row == [name, "1", "1", "1", "1"]


def test_status_counts_messages_no_queue_is_bound_to(broker: SupervisorProcess) -> None:
    exchange = Exchange(f"coda-test-nobody-{uuid.uuid4().hex[:8]}", type="topic")
    with Connection(f"coda://{broker.address}") as connection:
        producer = connection.Producer(exchange=exchange)
        for _ in range(3):  # as a worker's heartbeats are, with no event consumer
            producer.publish({"hostname": "w"}, routing_key="worker.heartbeat", declare=[exchange])
    done = coda_cli("status", "--supervisor", broker.address)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "unroutable:" in line]
    assert f"{exchange.name} 3" in line
