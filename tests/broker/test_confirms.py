"""Publish confirms and durable answers: the broker service on the SQLite
store, driven by a manual clock, answers only after the commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coda.broker.divert import Diverter, DivertRules
from coda.broker.messages import (
    BrokerOk,
    Consume,
    Deliver,
    Publish,
    QueueDeclare,
    ResultSave,
)
from coda.broker.service import BrokerService
from coda.broker.storage import SqliteBrokerStore
from coda.broker.storage import sqlite as broker_sqlite
from coda.messages import Accepted, Error, Submit
from coda.supervisor.clock import ManualClock
from coda.supervisor.extension import ClientPeer
from tests.broker.fakes import FakePeer
from tests.broker.test_divert import celery_publish


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def service(tmp_path: Path, clock: ManualClock) -> Iterator[BrokerService]:
    store = SqliteBrokerStore(str(tmp_path / "state.sqlite3"), clock=clock)
    service = BrokerService(result_ttl=100.0, clock=clock, store=store)
    yield service
    service.close()


def committed(clock: ManualClock) -> None:
    clock.settle()
    clock.wait_threadsafe()


def test_a_publish_is_confirmed_after_its_commit_and_delivered_before(
    service: BrokerService, clock: ManualClock
) -> None:
    producer, consumer = FakePeer(), FakePeer()
    service.handle(producer, QueueDeclare(1, "celery", durable=True))
    committed(clock)
    assert producer.take() == [BrokerOk(1)]
    service.handle(consumer, Consume(2, 1, "celery", "c"))
    service.handle(producer, Publish("", "celery", b"m", req_id=7))
    service.handle(producer, Publish("", "celery", b"unconfirmed"))
    assert [type(m) for m in consumer.take()] == [BrokerOk, Deliver, Deliver]
    assert producer.sent == []  # not durable yet
    committed(clock)
    assert producer.take() == [BrokerOk(7)]


def test_a_saved_result_is_answered_after_its_commit(
    service: BrokerService, clock: ManualClock
) -> None:
    worker = FakePeer()
    service.handle(worker, ResultSave(3, "t", b"meta", "SUCCESS"))
    assert worker.sent == []
    committed(clock)
    assert worker.take() == [BrokerOk(3)]


def test_while_the_store_cannot_commit_confirmed_publishes_are_refused(
    service: BrokerService, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(db: sqlite3.Connection, changes: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(broker_sqlite, "_write_changes", failing)
    producer = FakePeer()
    service.handle(producer, QueueDeclare(1, "celery", durable=True))
    committed(clock)  # that commit failed: no answer
    service.handle(producer, Publish("", "celery", b"m", req_id=2))
    (refusal,) = producer.take()
    assert isinstance(refusal, Error) and refusal.req_id == 2
    assert refusal.code == "store_unavailable" and "disk is full" in refusal.message


def test_a_diverted_publish_is_confirmed_when_its_job_is_accepted() -> None:
    accepted: list[Submit] = []

    def submit(peer: ClientPeer, job: Submit) -> None:
        accepted.append(job)
        peer.send(Accepted(req_id=job.req_id, run_id=str(job.run_id)))

    diverter = Diverter(DivertRules(everything=True), submit, lambda name: True)
    service = BrokerService(result_ttl=100.0, divert=diverter)
    producer = FakePeer()
    message = celery_publish("proj.add", routing_key="celery")
    service.handle(producer, msgspec.structs.replace(message, req_id=9))
    assert [job.name for job in accepted] == ["proj.add"]
    assert producer.take() == [BrokerOk(9)]
