"""The ``coda://`` kombu transport against a real supervisor (on a thread here)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import amqp.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.transport import TRANSPORT_ALIASES, resolve_transport

import coda.compat.kombu
from coda.broker.messages import Deliver, QueueDeclare, QueuePurge
from coda.compat.kombu.envelope import decode_delivery, encode_publish, parse_time
from coda.compat.kombu.link import Link
from coda.errors import ConnectionLostError
from coda.messages import Error
from coda.supervisor import SupervisorConfig
from coda.testing import InProcessSupervisor


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    config = SupervisorConfig(workers=0, listen="127.0.0.1:0", store="memory://")
    with InProcessSupervisor(config) as supervisor:
        yield supervisor.address


@pytest.fixture
def conn(address: str) -> Iterator[Connection]:
    with Connection(f"coda://{address}") as connection:
        yield connection


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def drain(connection: Connection, received: list[Any], count: int) -> None:
    while len(received) < count:
        connection.drain_events(timeout=5)


def test_the_scheme_is_registered_on_import() -> None:
    assert TRANSPORT_ALIASES["coda"] == coda.compat.kombu.TRANSPORT
    transport = resolve_transport("coda")
    assert transport is coda.compat.kombu.Transport
    assert transport.driver_type == "coda" and transport.implements.asynchronous
    assert "fanout" in transport.implements.exchange_type


def test_publish_consume_ack_in_priority_order(conn: Connection) -> None:
    exchange = Exchange(unique("ex"), "direct")
    queue = Queue(unique("q"), exchange, routing_key="k")
    producer = Producer(conn.channel(), exchange=exchange, routing_key="k")
    producer.publish({"n": 1}, declare=[queue], serializer="json")
    producer.publish({"n": 2}, serializer="json", priority=9)
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((body, message.delivery_info["redelivered"]))
        message.ack()

    with Consumer(conn.channel(), [queue], callbacks=[on_message], accept=["json"]):
        drain(conn, received, 2)
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.05)
    assert received == [({"n": 2}, False), ({"n": 1}, False)]


def test_unacked_messages_come_back_redelivered_when_the_connection_drops(address: str) -> None:
    queue = Queue(unique("q"))
    received: list[Any] = []
    with Connection(f"coda://{address}") as first:
        Producer(first.channel()).publish("work", routing_key=queue.name, declare=[queue])
        consumer = Consumer(first.channel(), [queue], callbacks=[lambda b, m: received.append(m)])
        consumer.consume()
        drain(first, received, 1)  # received, never acked
    with Connection(f"coda://{address}") as second:
        simple = second.SimpleQueue(queue)
        message = simple.get(timeout=5)
        assert message.payload == "work" and message.delivery_info["redelivered"] is True
        message.ack()
        assert len(simple) == 0
        simple.close()


def test_reject_requeue_and_basic_get(conn: Connection) -> None:
    queue = Queue(unique("q"))
    channel = conn.channel()
    Producer(channel).publish("a", routing_key=queue.name, declare=[queue])
    bound = queue(channel)
    first = bound.get()
    assert first is not None and first.delivery_info["redelivered"] is False
    first.reject(requeue=True)
    again = bound.get(no_ack=True)
    assert again is not None and again.payload == "a" and again.delivery_info["redelivered"]
    assert bound.get() is None


def test_fanout_reaches_every_bound_queue_across_connections(address: str) -> None:
    exchange = Exchange(unique("bcast"), "fanout")
    queues = [Queue(unique("q"), exchange) for _ in range(2)]
    with Connection(f"coda://{address}") as a, Connection(f"coda://{address}") as b:
        for queue in queues:
            queue(a.channel()).declare()
        Producer(b.channel(), exchange=exchange).publish("hello", routing_key="any")
        for queue in queues:
            message = queue(a.channel()).get(no_ack=True)
            assert message is not None and message.payload == "hello"


def test_purge_delete_size_and_channel_errors(conn: Connection) -> None:
    channel = conn.channel()
    queue = Queue(unique("q"))(channel)
    queue.declare()
    producer = Producer(channel)
    for _ in range(3):
        producer.publish("m", routing_key=queue.name)
    assert channel.queue_declare(queue.name, passive=True).message_count == 3
    assert queue.purge() == 3
    producer.publish("m", routing_key=queue.name)
    assert channel.queue_delete(queue.name) == 1
    with pytest.raises(amqp.exceptions.NotFound):
        channel.queue_declare(queue.name, passive=True)
    with pytest.raises(amqp.exceptions.NotFound):
        channel.basic_consume(queue.name, False, lambda m: None, "tag")
    assert conn.default_channel.queue_declare("still-usable").queue == "still-usable"


def test_broker_transport_setting_works_without_the_alias(address: str) -> None:
    target = "coda.compat.kombu.transport:Transport"
    with Connection(f"coda://{address}", transport=target) as connection:
        simple = connection.SimpleQueue(unique("q"))
        simple.put({"x": 1})
        assert simple.get(timeout=5).payload == {"x": 1}
        simple.close()


def test_a_transport_whose_connection_was_closed_says_so() -> None:
    connection = Connection("coda://127.0.0.1:1")
    transport = connection.transport  # created without connecting
    connection.close()  # kombu sets transport.client to None
    with pytest.raises(ConnectionLostError, match="kombu Connection was closed"):
        transport.establish_connection()


def test_a_forked_child_opens_its_own_connection(address: str) -> None:
    link = Link(address)
    link.connect()
    pid = os.fork()
    if pid == 0:  # the child: must not write on the parent's socket
        try:
            link.call(QueueDeclare(link.next_id(), unique("child")))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert link.call(QueuePurge(link.next_id(), "still-usable")) is not None
    link.close()


def test_envelope_reads_celery_headers_and_properties() -> None:
    eta = datetime.now(UTC) + timedelta(seconds=30)
    message = {
        "body": b"[]",
        "headers": {"task": "t", "id": "abc", "eta": eta.isoformat(), "expires": None},
        "properties": {"priority": 12, "expiration": "1500", "delivery_info": {}},
    }
    frame = encode_publish(message, "celery", "celery")
    assert frame.task_id == "abc" and frame.priority == 9 and frame.ttl == 1.5
    assert frame.eta == pytest.approx(eta.timestamp()) and frame.expires is None
    delivered = decode_delivery(Deliver(1, "tag", 7, "celery", frame.body, redelivered=True))
    assert delivered["properties"]["delivery_tag"] == 7
    assert delivered["properties"]["delivery_info"]["redelivered"] is True
    assert parse_time("2020-01-01T00:00:00") == parse_time("2020-01-01T00:00:00+00:00")
    assert parse_time("not a date") is None
    assert frame.persistent and frame.req_id is None
    transient = encode_publish({**message, "properties": {"delivery_mode": 1}}, "ev", "k", req_id=4)
    assert not transient.persistent and transient.req_id == 4


def test_acks_of_a_lost_connection_are_dropped_and_the_message_comes_back(address: str) -> None:
    queue = Queue(unique("q"))
    with Connection(f"coda://{address}") as connection:
        Producer(connection.channel()).publish("work", routing_key=queue.name, declare=[queue])
        message = queue(connection.channel()).get()
        assert message is not None and not message.delivery_info["redelivered"]
        transport = connection.transport
        transport.close_connection(None)  # what kombu does on a connection error...
        transport.establish_connection()  # ...before it connects again
        message.ack()  # a tag of the old connection: dropped, not sent on the new one
        message_again = queue(connection.channel()).get()
        assert message_again is not None and message_again.delivery_info["redelivered"]
        message_again.reject(requeue=False)
        assert queue(connection.channel()).get() is None


def test_a_closed_channel_drops_acks_instead_of_raising(address: str) -> None:
    queue = Queue(unique("q"))
    with Connection(f"coda://{address}") as connection:
        Producer(connection.channel()).publish("work", routing_key=queue.name, declare=[queue])
        channel = connection.channel()
        message = queue(channel).get()
        assert message is not None
        channel.close()  # kombu sets channel.connection to None
        message.ack()


def test_a_lost_link_is_not_reopened_behind_kombus_back(address: str) -> None:
    with Connection(f"coda://{address}") as connection:
        channel = connection.channel()
        link = connection.transport.link
        link.close()
        with pytest.raises(ConnectionLostError, match="was lost"):
            channel.queue_declare(unique("q"))
        assert connection.transport.verify_connection(None) is False


def test_publishes_are_confirmed_unless_confirm_publish_is_off(address: str) -> None:
    queue = Queue(unique("q"))
    for confirm in (True, False):
        options = {"confirm_publish": confirm}
        with Connection(f"coda://{address}", transport_options=options) as connection:
            assert connection.transport.confirm_publish is confirm
            producer = Producer(connection.channel())
            producer.publish(confirm, routing_key=queue.name, declare=[queue])
    with Connection(f"coda://{address}") as connection:
        simple = connection.SimpleQueue(queue)
        assert [simple.get(timeout=5).payload for _ in range(2)] == [True, False]
        simple.close()


def test_a_refusal_because_the_supervisor_stops_is_a_connection_error(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu's ensure() then publishes again on the next supervisor (a
    diverted publish is refused this way while the supervisor drains)."""
    with Connection(f"coda://{address}") as connection:
        channel = connection.channel()
        link = connection.transport.link
        refusal = Error(code="shutting_down", message="the supervisor is shutting down", req_id=1)
        monkeypatch.setattr(link, "call", lambda message, timeout=None: refusal)
        with pytest.raises(ConnectionLostError, match="shutting down"):
            channel.basic_publish({"body": b"x", "properties": {}}, "", "q")
        assert not link.connected
        assert ConnectionLostError in connection.recoverable_connection_errors


def test_envelope_keeps_amqp_properties_and_drops_the_rest_naming_each_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    properties = {"correlation_id": "abc", "reply_to": "r", "priority": 3, "delivery_mode": 2}
    odd = {"envelope_test_signal": object(), "envelope_test_extra": "x"}
    with caplog.at_level(logging.WARNING, logger="coda.compat.kombu"):
        for _ in range(2):
            message = {"body": b"[]", "headers": {}, "properties": {**properties, **odd}}
            frame = encode_publish(message, "", "q")
    kept = decode_delivery(Deliver(1, "tag", 7, "q", frame.body))["properties"]
    assert {name: kept[name] for name in properties} == properties
    assert not kept.keys() & odd.keys() and kept["delivery_info"]["routing_key"] == "q"
    named = [r.getMessage() for r in caplog.records if "envelope_test_" in r.getMessage()]
    assert len(named) == 2  # one line per property name, not per message
    assert "'envelope_test_extra' (str)" in named[0] and "'envelope_test_signal'" in named[1]
