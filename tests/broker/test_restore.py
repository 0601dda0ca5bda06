"""A broker restarted on the store its predecessor wrote (the memory store,
loaded again, stands for the file): what comes back, and what does not."""

from __future__ import annotations

import logging

import pytest

from coda.broker.broker import Broker
from coda.broker.messages import (
    Ack,
    ChordPart,
    ChordStart,
    ExchangeDeclare,
    Publish,
    QueueBind,
    QueueDeclare,
    QueuePurge,
    Reject,
    ResultFetch,
    ResultSave,
)
from coda.broker.results import ResultStore
from coda.broker.storage import MemoryBrokerStore
from tests.broker.fakes import FakeClock, FakePeer
from tests.broker.test_broker import bodies, consume, pub


def restarted(store: MemoryBrokerStore, clock: FakeClock) -> Broker:
    """The next supervisor's broker: a new one, loaded from the same store."""
    broker = Broker(clock, store=store)
    broker.restore(store.load())
    return broker


def celery_queue(broker: Broker, peer: FakePeer, name: str = "celery", **kw: object) -> None:
    """Celery's setup: a durable direct exchange and a durable queue bound to it."""
    broker.declare_exchange(ExchangeDeclare(1, name, "direct", durable=True))
    declare = QueueDeclare(1, name, durable=True, **kw)  # type: ignore[arg-type]
    broker.declare_queue(peer, declare)
    broker.bind(QueueBind(1, name, name, name))


def test_ready_held_and_unacked_messages_come_back() -> None:
    clock, store, peer = FakeClock(), MemoryBrokerStore(), FakePeer()
    first = Broker(clock, store=store)
    celery_queue(first, peer)
    for body in (b"acked", b"unacked", b"rejected", b"waiting"):
        pub(first, "celery", "celery", body)
    pub(first, "celery", "celery", b"later", eta=clock.now + 60)
    consume(first, peer, "celery")
    tags = {d.body: d.delivery_tag for d in peer.deliveries()}
    first.ack(peer, Ack(1, tags[b"acked"]))
    first.reject(peer, Reject(1, tags[b"rejected"], requeue=False))
    # the supervisor dies here, with "unacked" and "waiting" delivered, not acked

    second = restarted(store, clock)
    assert second.statistics()["queues"]["celery"] == {
        "ready": 2,
        "held": 1,
        "unacked": 0,
        "consumers": 0,
    }
    consumer = FakePeer()
    consume(second, consumer, "celery")
    again = consumer.deliveries()
    assert [(d.body, d.redelivered) for d in again] == [(b"unacked", True), (b"waiting", True)]
    clock.advance(60)
    (late,) = consumer.deliveries()
    assert (late.body, late.redelivered) == (b"later", False)
    # routing came back too: a new publish reaches the queue through its binding
    assert pub(second, "celery", "celery", b"new") == 1


def test_transient_queues_and_messages_are_not_kept() -> None:
    clock, store, peer = FakeClock(), MemoryBrokerStore(), FakePeer()
    first = Broker(clock, store=store)
    celery_queue(first, peer)
    first.declare_queue(peer, QueueDeclare(1, "plain"))  # not durable
    first.declare_queue(peer, QueueDeclare(1, "reply", durable=True, auto_delete=True))
    first.declare_queue(peer, QueueDeclare(1, "mine", durable=True, exclusive=True))
    for name in ("plain", "reply", "mine"):
        pub(first, "", name, b"x")
    pub(first, "celery", "celery", b"event", persistent=False)
    pub(first, "celery", "celery", b"task")
    second = restarted(store, clock)
    assert sorted(second.queues) == ["celery"]
    consume(second, peer, "celery")
    assert bodies(peer.deliveries()) == [b"task"]


def test_purged_deleted_and_expired_messages_do_not_come_back() -> None:
    clock, store, peer = FakeClock(), MemoryBrokerStore(), FakePeer()
    first = Broker(clock, store=store)
    celery_queue(first, peer, "purged")
    celery_queue(first, peer, "deleted")
    celery_queue(first, peer, "kept")
    pub(first, "purged", "purged", b"ready")
    pub(first, "purged", "purged", b"held", eta=clock.now + 60)
    pub(first, "deleted", "deleted", b"gone")
    pub(first, "kept", "kept", b"short", ttl=1.0)
    pub(first, "kept", "kept", b"kept")
    assert first.purge(peer, QueuePurge(1, "purged")) == 2
    first.topology.delete(first.queues["deleted"])
    clock.advance(2)
    consume(first, FakePeer(), "kept", no_ack=True)  # "short" expires at the head
    assert store.load().messages == []
    second = restarted(store, clock)
    assert sorted(second.queues) == ["kept", "purged"]
    assert second.size("purged") == 0 and second.size("kept") == 0


def test_results_and_a_half_joined_chord_come_back() -> None:
    clock, store = FakeClock(), MemoryBrokerStore()
    first = ResultStore(clock, default_ttl=100.0, store=store)
    first.save(ResultSave(1, "t1", b"meta", "SUCCESS"))
    first.save(ResultSave(1, "short", b"meta", "SUCCESS", ttl=5.0))
    first.chord_start(ChordStart(1, "g", ["a", "b"]))
    first.chord_part(ChordPart(1, "g", "a", b"A"))

    # the supervisor dies; the next one starts 10 s later: "short" expired meanwhile
    later = FakeClock(clock.now + 10)
    second = ResultStore(later, default_ttl=100.0, store=store)
    second.restore(store.load())
    assert [e.state for e in second.fetch(ResultFetch(1, ["t1", "short"]))] == ["SUCCESS", None]
    later.advance(0)  # its expiry timer fires at once
    assert [r.id for r in store.load().results] == ["t1"]
    joined = second.chord_part(ChordPart(1, "g", "b", b"B"))
    assert joined.complete and joined.values == [b"A", b"B"]
    later.advance(100)
    assert store.load().results == [] and store.load().chords == []


def test_unroutable_messages_are_counted_per_exchange_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker(FakeClock())
    broker.declare_exchange(ExchangeDeclare(1, "celeryev", "topic"))
    with caplog.at_level(logging.DEBUG, logger="coda.broker"):
        for _ in range(3):
            broker.publish(Publish("celeryev", "worker.heartbeat", b"{}"))
        broker.publish(Publish("nowhere", "x", b"{}"))
    assert caplog.records == []
    stats = broker.statistics()
    assert stats["unroutable"] == {"celeryev": 3, "nowhere": 1}
    assert stats["counts"]["unroutable"] == 4
