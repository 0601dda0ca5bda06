"""The broker's persistence contract (coda/broker/storage/base.py), run against
every broker store: what a restarted broker loads is what was recorded.

``reopen()`` is the next supervisor on the same medium: the memory store
loads from the same object, the SQLite store from the file, after a close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from coda.broker.storage import (
    BrokerSnapshot,
    BrokerStore,
    MemoryBrokerStore,
    SqliteBrokerStore,
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)
from coda.broker.storage.postgres import PostgresBrokerStore
from coda.supervisor.clock import ManualClock
from coda.supervisor.stores.postgres.schema import PostgresUrl
from tests.postgres import fresh_schema
from tests.stores.committed import wait_committed


@dataclass
class Subject:
    store: BrokerStore
    clock: ManualClock
    reopen: Callable[[], BrokerStore]

    def committed(self) -> None:
        """Wait until what was recorded is durable, as the event loop would."""
        wait_committed(self.store, self.clock)

    def restarted(self) -> BrokerSnapshot:
        """Commit, then load as the next supervisor on the same medium."""
        self.committed()
        self.store = self.reopen()
        return self.store.load()


def _memory(tmp_path: Path) -> Iterator[Subject]:
    store = MemoryBrokerStore()
    yield Subject(store, ManualClock(), lambda: store)


def _postgres(tmp_path: Path) -> Iterator[Subject]:
    with fresh_schema() as url:
        clock = ManualClock()
        where = PostgresUrl(url)
        opened = [PostgresBrokerStore(psycopg.connect(where.dsn), where.schema, clock=clock)]

        def reopen() -> BrokerStore:
            opened[-1].close()
            store = PostgresBrokerStore(psycopg.connect(where.dsn), where.schema, clock=clock)
            opened.append(store)
            return opened[-1]

        try:
            yield Subject(opened[0], clock, reopen)
        finally:
            for store in opened:
                store.close()


def _sqlite(tmp_path: Path) -> Iterator[Subject]:
    path = str(tmp_path / "state.sqlite3")
    clock = ManualClock()
    opened: list[SqliteBrokerStore] = [SqliteBrokerStore(path, clock=clock)]

    def reopen() -> BrokerStore:
        opened[-1].close()
        opened.append(SqliteBrokerStore(path, clock=clock))
        return opened[-1]

    try:
        yield Subject(opened[0], clock, reopen)
    finally:
        for store in opened:
            store.close()


STORES = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORES))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    yield from STORES[request.param](tmp_path)


def message(store: BrokerStore, queue: str = "q", **fields: object) -> StoredMessage:
    """A new message with a fresh id, put to ``queue``."""
    stored = StoredMessage(store.new_message_id(), queue, b"body", **fields)  # type: ignore[arg-type]
    store.put(stored)
    return stored


def ids(snapshot: BrokerSnapshot) -> list[int]:
    return [m.id for m in snapshot.messages]


# -- messages -------------------------------------------------------------------------


def test_messages_come_back_in_id_order_with_every_field(subject: Subject) -> None:
    store = subject.store
    held = message(store, priority=7, expires_at=2000.5, task_id="t1", eta=1500.25)
    ready = message(store, "other")
    snapshot = subject.restarted()
    assert snapshot.messages == [held, ready]
    assert ready.id > held.id


def test_unacked_messages_come_back_ready_and_redelivered(subject: Subject) -> None:
    store = subject.store
    delivered, requeued, acked, untouched = (message(store) for _ in range(4))
    subject.committed()  # written first, then their deliveries
    for m in (delivered, requeued, acked):
        store.claim(m.id)
    store.release(requeued.id)
    store.remove(acked.id)
    snapshot = subject.restarted()
    by_id = {m.id: m.redelivered for m in snapshot.messages}
    assert by_id == {delivered.id: True, requeued.id: True, untouched.id: False}


def test_a_claim_in_the_same_commit_as_the_put_comes_back_redelivered(subject: Subject) -> None:
    m = message(subject.store)
    subject.store.claim(m.id)
    assert [x.redelivered for x in subject.restarted().messages] == [True]


def test_a_message_acked_before_its_commit_is_gone(subject: Subject) -> None:
    store = subject.store
    gone = message(store)
    store.claim(gone.id)
    store.remove(gone.id)
    kept = message(store)
    assert ids(subject.restarted()) == [kept.id]


def test_a_second_restart_keeps_redelivered_messages_ready(subject: Subject) -> None:
    m = message(subject.store)
    subject.store.claim(m.id)
    assert ids(subject.restarted()) == [m.id]
    assert [x.redelivered for x in subject.restarted().messages] == [True]


def test_new_ids_stay_above_every_id_given_before_a_restart(subject: Subject) -> None:
    first = message(subject.store)
    subject.restarted()
    assert subject.store.new_message_id() > first.id


# -- topology -------------------------------------------------------------------------


def test_exchanges_queues_and_bindings_come_back(subject: Subject) -> None:
    store = subject.store
    store.save_exchange(StoredExchange("celery", "direct"))
    store.save_exchange(StoredExchange("events", "topic", auto_delete=True))
    store.save_queue(StoredQueue("celery", 9))
    store.save_queue(StoredQueue("slow", 3, message_ttl=60.0, expires=600.0))
    bindings = [StoredBinding("celery", "celery", "celery"), StoredBinding("events", "slow", "#")]
    for binding in bindings:
        store.bind(binding)
    store.bind(StoredBinding("events", "celery", "x"))
    store.unbind(StoredBinding("events", "celery", "x"))
    snapshot = subject.restarted()
    assert sorted(e.name for e in snapshot.exchanges) == ["celery", "events"]
    assert StoredExchange("events", "topic", auto_delete=True) in snapshot.exchanges
    assert StoredQueue("slow", 3, message_ttl=60.0, expires=600.0) in snapshot.queues
    assert snapshot.bindings == bindings


def test_deleting_an_exchange_deletes_its_bindings(subject: Subject) -> None:
    store = subject.store
    store.save_exchange(StoredExchange("ex", "fanout"))
    store.save_queue(StoredQueue("q", 9))
    store.bind(StoredBinding("ex", "q", ""))
    subject.committed()
    store.delete_exchange("ex")
    snapshot = subject.restarted()
    assert snapshot.exchanges == [] and snapshot.bindings == []
    assert snapshot.queues == [StoredQueue("q", 9)]


@pytest.mark.parametrize("written_first", [True, False])
def test_deleting_a_queue_deletes_its_messages_but_not_those_after(
    subject: Subject, written_first: bool
) -> None:
    store = subject.store
    store.save_queue(StoredQueue("q", 9))
    store.save_exchange(StoredExchange("ex", "direct"))
    store.bind(StoredBinding("ex", "q", "k"))
    message(store, "q")
    kept_elsewhere = message(store, "other")
    if written_first:
        subject.committed()
    store.delete_queue("q")
    store.save_queue(StoredQueue("q", 5))  # declared again: a new queue
    again = message(store, "q")
    snapshot = subject.restarted()
    assert ids(snapshot) == [kept_elsewhere.id, again.id]
    assert snapshot.queues == [StoredQueue("q", 5)]
    assert snapshot.bindings == []


# -- results and chords -------------------------------------------------------------------


def result(task_id: str, state: str = "SUCCESS", expires_at: float = 5000.0) -> StoredResult:
    return StoredResult("task", task_id, state, b"meta-" + task_id.encode(), expires_at)


def test_results_come_back_replaced_forgotten_and_expired(subject: Subject) -> None:
    store = subject.store
    store.save_result(result("a", "STARTED"))
    store.save_result(result("b"))
    store.save_result(result("short", expires_at=100.0))
    store.save_result(StoredResult("group", "a", "SUCCESS", b"group", 5000.0))
    store.save_result(StoredResult("task", "revoked", "REVOKED", None, 5000.0, note="expired"))
    subject.committed()
    store.save_result(result("a"))
    store.forget_result("task", "b")
    store.expire(100.0)
    snapshot = subject.restarted()
    assert sorted(snapshot.results, key=lambda r: (r.kind, r.id)) == [
        StoredResult("group", "a", "SUCCESS", b"group", 5000.0),
        result("a"),
        StoredResult("task", "revoked", "REVOKED", None, 5000.0, note="expired"),
    ]


def test_chord_parts_come_back_until_the_chord_fires(subject: Subject) -> None:
    store = subject.store
    store.save_chord(StoredChord("g1", ["t1", "t2", "t3"], 5000.0))
    store.add_chord_part("g1", "t1", b"one")
    subject.committed()
    store.add_chord_part("g1", "t2", b"two")
    store.save_chord(StoredChord("g2", ["u1", "u2"], 5000.0))
    store.add_chord_part("g2", "u1", b"x")
    store.add_chord_part("g2", "u2", b"y")
    store.chord_fired("g2")
    snapshot = subject.restarted()
    assert sorted(snapshot.chords, key=lambda c: c.group_id) == [
        StoredChord("g1", ["t1", "t2", "t3"], 5000.0, parts={"t1": b"one", "t2": b"two"}),
        StoredChord("g2", ["u1", "u2"], 5000.0, fired=True),
    ]


def test_a_restarted_chord_drops_its_parts_and_forgotten_ones_go(subject: Subject) -> None:
    store = subject.store
    store.save_chord(StoredChord("again", ["t1", "t2"], 5000.0))
    store.add_chord_part("again", "t1", b"old")
    store.save_chord(StoredChord("gone", ["t9"], 5000.0))
    store.save_chord(StoredChord("old", ["t8"], 100.0))
    store.add_chord_part("old", "t8", b"late")
    subject.committed()
    store.save_chord(StoredChord("again", ["t1", "t2"], 6000.0))
    store.forget_chord("gone")
    store.expire(100.0)
    assert subject.restarted().chords == [StoredChord("again", ["t1", "t2"], 6000.0)]


# -- durability ----------------------------------------------------------------------------


def test_after_commit_runs_once_the_changes_are_durable(subject: Subject) -> None:
    store = subject.store
    m = message(store)
    confirmed: list[int] = []
    store.after_commit(lambda: confirmed.append(m.id))
    subject.committed()
    assert confirmed == [m.id]
    assert ids(subject.reopen().load()) == [m.id]
