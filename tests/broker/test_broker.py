"""The supervisor-side broker with fake peers and a hand-driven clock."""

from __future__ import annotations

import pytest

from coda.broker.broker import Broker
from coda.broker.exchanges import topic_pattern
from coda.broker.messages import (
    Ack,
    BasicGet,
    Cancel,
    Consume,
    Deliver,
    ExchangeDeclare,
    Publish,
    Qos,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    Reject,
)
from coda.errors import BrokerError
from tests.broker.fakes import FakeClock, FakePeer


def make() -> tuple[Broker, FakeClock, list[str]]:
    clock = FakeClock()
    expired: list[str] = []
    return Broker(clock, on_expired=expired.append), clock, expired


def queue(broker: Broker, peer: FakePeer, name: str, **kw: object) -> None:
    broker.declare_queue(peer, QueueDeclare(req_id=1, queue=name, **kw))  # type: ignore[arg-type]


def direct(broker: Broker, peer: FakePeer, exchange: str, *queues: str) -> None:
    broker.declare_exchange(ExchangeDeclare(req_id=1, exchange=exchange, type="direct"))
    for name in queues:
        queue(broker, peer, name)
        broker.bind(QueueBind(req_id=1, queue=name, exchange=exchange, routing_key=name))


def pub(broker: Broker, exchange: str, key: str, body: bytes, **kw: object) -> int:
    return broker.publish(Publish(exchange=exchange, routing_key=key, body=body, **kw))  # type: ignore[arg-type]


def consume(
    broker: Broker, peer: FakePeer, q: str, channel: int = 1, tag: str = "c", no_ack: bool = False
) -> None:
    broker.consume(
        peer, Consume(req_id=1, channel=channel, queue=q, consumer_tag=tag, no_ack=no_ack)
    )


def bodies(deliveries: list[Deliver]) -> list[bytes]:
    return [d.body for d in deliveries]


def test_direct_topic_fanout_and_default_exchange_routing() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "tasks", "a", "b")
    b.declare_exchange(ExchangeDeclare(req_id=1, exchange="events", type="topic"))
    b.bind(QueueBind(req_id=1, queue="a", exchange="events", routing_key="user.*"))
    b.bind(QueueBind(req_id=1, queue="b", exchange="events", routing_key="#.deleted"))
    b.declare_exchange(ExchangeDeclare(req_id=1, exchange="bcast", type="fanout"))
    for name in ("a", "b"):
        b.bind(QueueBind(req_id=1, queue=name, exchange="bcast", routing_key="ignored"))
    assert pub(b, "tasks", "a", b"1") == 1
    assert pub(b, "events", "user.created", b"2") == 1
    assert pub(b, "events", "user.x.deleted", b"3") == 1
    assert pub(b, "events", "user.deleted", b"4") == 2
    assert pub(b, "bcast", "whatever", b"5") == 2
    assert pub(b, "", "b", b"6") == 1
    assert pub(b, "tasks", "nowhere", b"7") == 0
    assert (b.size("a"), b.size("b")) == (4, 4)
    consume(b, p, "a")
    assert bodies(p.deliveries()) == [b"1", b"2", b"4", b"5"]


def test_topic_patterns_follow_amqp_words() -> None:
    def match(pattern: str, key: str) -> bool:
        return topic_pattern(pattern).fullmatch("." + key) is not None

    assert match("a.*", "a.b") and not match("a.*", "a.b.c") and not match("a.*", "a")
    assert match("a.#", "a") and match("a.#", "a.b.c") and match("#", "x.y")
    assert match("#.c", "c") and match("*.b.#", "a.b") and not match("a.b", "a.bx")


def test_push_respects_prefetch_credit_and_ack_multiple() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    b.qos(p, Qos(channel=1, prefetch_count=2))
    consume(b, p, "q")
    for i in range(5):
        pub(b, "x", "q", str(i).encode())
    first = p.deliveries()
    assert bodies(first) == [b"0", b"1"]
    b.ack(p, Ack(channel=1, delivery_tag=first[0].delivery_tag))
    (third,) = p.deliveries()
    assert third.body == b"2"
    b.ack(p, Ack(channel=1, delivery_tag=third.delivery_tag, multiple=True))
    assert bodies(p.deliveries()) == [b"3", b"4"]
    b.qos(p, Qos(channel=1, prefetch_count=0))
    pub(b, "x", "q", b"5")
    assert bodies(p.deliveries()) == [b"5"]


def test_a_connection_receives_messages_in_arrival_order_across_queues() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q1", "q2")
    b.qos(p, Qos(channel=1, prefetch_count=1))
    consume(b, p, "q1", tag="t1")
    consume(b, p, "q2", tag="t2")
    for i, q in enumerate(["q2", "q1", "q2", "q1"]):
        pub(b, "x", q, str(i).encode())
    seen = []
    for _ in range(4):
        (d,) = p.deliveries()
        seen.append(d.body)
        b.ack(p, Ack(channel=1, delivery_tag=d.delivery_tag))
    assert seen == [b"0", b"1", b"2", b"3"]


def test_a_broadcast_published_before_a_task_is_delivered_first() -> None:
    """Revoke, then the task: the worker must see the revoke first."""
    b, _, _ = make()
    worker = FakePeer()
    direct(b, worker, "celery", "celery")
    b.declare_exchange(ExchangeDeclare(req_id=1, exchange="celery.pidbox", type="fanout"))
    queue(b, worker, "w1.celery.pidbox", auto_delete=True)
    b.bind(QueueBind(req_id=1, queue="w1.celery.pidbox", exchange="celery.pidbox"))
    consume(b, worker, "w1.celery.pidbox", channel=2, tag="ctl", no_ack=True)
    consume(b, worker, "celery", channel=1, tag="tasks")
    pub(b, "celery.pidbox", "", b"revoke")
    pub(b, "celery", "celery", b"task")
    assert bodies(worker.deliveries()) == [b"revoke", b"task"]


def test_dropped_connection_requeues_leases_at_the_head_marked_redelivered() -> None:
    b, _, _ = make()
    doomed, other = FakePeer(), FakePeer()
    direct(b, doomed, "x", "q")
    b.qos(doomed, Qos(channel=1, prefetch_count=2))
    consume(b, doomed, "q")
    for i in range(4):
        pub(b, "x", "q", str(i).encode())
    assert bodies(doomed.deliveries()) == [b"0", b"1"]
    b.disconnected(doomed)
    assert b.size("q") == 4
    consume(b, other, "q")
    got = other.deliveries()
    assert bodies(got) == [b"0", b"1", b"2", b"3"]
    assert [d.redelivered for d in got] == [True, True, False, False]
    assert b.statistics()["queues"]["q"]["unacked"] == 4


def test_a_lease_is_never_delivered_twice_while_it_lives() -> None:
    b, clock, _ = make()
    p1, p2 = FakePeer(), FakePeer()
    direct(b, p1, "x", "q")
    consume(b, p1, "q")
    consume(b, p2, "q")
    pub(b, "x", "q", b"long task")
    clock.advance(10 * 3600)  # no visibility timeout
    assert len(p1.deliveries()) + len(p2.deliveries()) == 1
    assert b.size("q") == 0


def test_reject_requeues_to_the_head_or_drops() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    b.qos(p, Qos(channel=1, prefetch_count=1))
    consume(b, p, "q")
    pub(b, "x", "q", b"a")
    pub(b, "x", "q", b"b")
    (d,) = p.deliveries()
    b.reject(p, Reject(channel=1, delivery_tag=d.delivery_tag, requeue=True))
    (again,) = p.deliveries()
    assert again.body == b"a" and again.redelivered and again.delivery_tag != d.delivery_tag
    b.reject(p, Reject(channel=1, delivery_tag=again.delivery_tag))
    assert bodies(p.deliveries()) == [b"b"]


def test_round_robin_between_consumers() -> None:
    b, _, _ = make()
    p1, p2 = FakePeer(), FakePeer()
    direct(b, p1, "x", "q")
    consume(b, p1, "q")
    consume(b, p2, "q")
    for i in range(4):
        pub(b, "x", "q", str(i).encode())
    assert bodies(p1.deliveries()) == [b"0", b"2"]
    assert bodies(p2.deliveries()) == [b"1", b"3"]


def test_priorities_zero_to_nine_higher_first_fifo_within() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    for body, priority in [(b"low", 0), (b"hi1", 9), (b"mid", 5), (b"hi2", 9), (b"over", 42)]:
        pub(b, "x", "q", body, priority=priority)
    consume(b, p, "q")
    assert bodies(p.deliveries()) == [b"hi1", b"hi2", b"over", b"mid", b"low"]


def test_purge_delete_size_and_errors() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    for _ in range(3):
        pub(b, "x", "q", b"m")
    assert b.declare_queue(p, QueueDeclare(req_id=1, queue="q", passive=True)) == (3, 0)
    assert b.purge(p, QueuePurge(req_id=1, queue="q")) == 3
    pub(b, "x", "q", b"m")
    with pytest.raises(BrokerError) as info:
        b.delete_queue(p, QueueDelete(req_id=1, queue="q", if_empty=True))
    assert info.value.code == "in_use"
    assert b.delete_queue(p, QueueDelete(req_id=1, queue="q")) == 1
    assert pub(b, "x", "q", b"m") == 0  # its bindings went with it
    with pytest.raises(BrokerError, match="no queue"):
        b.declare_queue(p, QueueDeclare(req_id=1, queue="q", passive=True))
    with pytest.raises(BrokerError) as info:
        b.declare_exchange(ExchangeDeclare(req_id=1, exchange="x", type="fanout"))
    assert info.value.code == "not_equivalent"
    with pytest.raises(BrokerError):
        consume(b, p, "missing")


def test_message_ttl_and_expires_drop_and_report_the_task() -> None:
    b, clock, expired = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    queue(b, p, "short", message_ttl=5.0)
    b.bind(QueueBind(req_id=1, queue="short", exchange="x", routing_key="short"))
    pub(b, "x", "q", b"ttl", ttl=1.0, task_id="t1")
    pub(b, "x", "q", b"expires", expires=clock.now + 2.0, task_id="t2")
    pub(b, "x", "q", b"fresh", ttl=60.0)
    pub(b, "x", "short", b"queue ttl", task_id="t3")
    clock.advance(10)
    consume(b, p, "q")
    consume(b, p, "short", tag="s")
    assert bodies(p.deliveries()) == [b"fresh"]
    assert sorted(expired) == ["t1", "t2", "t3"]


def test_eta_messages_are_held_in_the_broker_until_due() -> None:
    b, clock, expired = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    consume(b, p, "q")
    pub(b, "x", "q", b"later", eta=clock.now + 30)
    pub(b, "x", "q", b"sooner", eta=clock.now + 10)
    pub(b, "x", "q", b"void", eta=clock.now + 20, expires=clock.now + 15, task_id="t")
    pub(b, "x", "q", b"now")
    assert bodies(p.deliveries()) == [b"now"]
    assert b.size("q") == 3
    clock.advance(9.9)
    assert p.deliveries() == []
    clock.advance(0.2)
    assert bodies(p.deliveries()) == [b"sooner"]
    clock.advance(25)
    assert bodies(p.deliveries()) == [b"later"]
    assert expired == ["t"]


def test_purge_also_drops_held_messages() -> None:
    b, clock, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    pub(b, "x", "q", b"held", eta=clock.now + 5)
    assert b.purge(p, QueuePurge(req_id=1, queue="q")) == 1
    consume(b, p, "q")
    clock.advance(10)
    assert p.deliveries() == []


def test_basic_get_leases_unless_no_ack() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    assert b.basic_get(p, BasicGet(req_id=7, channel=1, queue="q")) is None
    pub(b, "x", "q", b"a")
    pub(b, "x", "q", b"b")
    got = b.basic_get(p, BasicGet(req_id=8, channel=1, queue="q"))
    assert got is not None and got.body == b"a" and got.req_id == 8
    assert b.basic_get(p, BasicGet(req_id=9, channel=1, queue="q", no_ack=True)) is not None
    b.disconnected(p)  # the first was leased: it comes back, the no_ack one does not
    assert b.size("q") == 1


def test_auto_delete_exclusive_and_expiring_queues() -> None:
    b, clock, _ = make()
    p, other = FakePeer(), FakePeer()
    queue(b, p, "auto", auto_delete=True)
    consume(b, p, "auto")
    b.cancel(p, Cancel(channel=1, consumer_tag="c"))
    assert "auto" not in b.queues
    queue(b, p, "mine", exclusive=True)
    with pytest.raises(BrokerError) as info:
        consume(b, other, "mine")
    assert info.value.code == "locked"
    b.disconnected(p)
    assert "mine" not in b.queues
    queue(b, other, "reply", expires=10.0)
    clock.advance(5)
    queue(b, other, "reply", expires=10.0)  # redeclaring counts as use
    clock.advance(6)
    assert "reply" in b.queues
    clock.advance(5)
    assert "reply" not in b.queues


def test_closing_a_channel_requeues_its_leases_only() -> None:
    b, _, _ = make()
    p = FakePeer()
    direct(b, p, "x", "q")
    consume(b, p, "q", channel=1, tag="a")
    pub(b, "x", "q", b"m")
    assert len(p.deliveries()) == 1
    b.close_channel(p, 1)
    consume(b, p, "q", channel=2, tag="a")
    (d,) = p.deliveries()
    assert d.redelivered and d.channel == 2
