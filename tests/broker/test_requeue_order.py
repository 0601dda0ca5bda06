"""Requeued messages go back where they were (issue 17, item 5).

RabbitMQ puts a rejected message back at its original position in its queue,
so messages of one priority rejected one by one with ``requeue=True`` come
back in the order they were published. The same test runs on RabbitMQ (the
reference, at 127.0.0.1:5672) and on a Coda supervisor process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Producer, Queue

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.testing import SupervisorProcess
from tests.services import RABBITMQ_URL

pytestmark = pytest.mark.e2e

RABBITMQ = RABBITMQ_URL


@pytest.fixture(scope="module")
def coda_url() -> Iterator[str]:
    with SupervisorProcess([], workers=0, extra_args=["--store", "memory://"]) as supervisor:
        yield f"coda://{supervisor.address}"


@pytest.fixture(params=["rabbitmq", "coda"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        return RABBITMQ
    return str(request.getfixturevalue("coda_url"))


def test_messages_rejected_one_by_one_come_back_in_publish_order(url: str) -> None:
    queue = Queue(f"requeue-order-{uuid.uuid4().hex[:8]}", auto_delete=True)
    with Connection(url) as connection:
        channel = connection.channel()
        bound = queue(channel)
        producer = Producer(channel)
        for body in ("a", "b", "c", "d", "e"):
            producer.publish(body, routing_key=queue.name, declare=[queue], serializer="json")
        taken = [bound.get(accept=["json"]) for _ in range(4)]
        assert [m.payload for m in taken if m is not None] == ["a", "b", "c", "d"]
        for message in (taken[1], taken[0], taken[3], taken[2]):  # not in order, on purpose
            assert message is not None
            message.reject(requeue=True)
        again = [bound.get(accept=["json"], no_ack=True) for _ in range(5)]
        assert [m.payload for m in again if m is not None] == ["a", "b", "c", "d", "e"]
        assert [m.delivery_info["redelivered"] for m in again if m is not None] == [True] * 4 + [
            False
        ]
        bound.delete()
