"""The ``coda://`` broker across supervisor restarts, with real processes.

A supervisor with ``--workers 0`` on a SQLite store and a fixed port is
stopped (SIGTERM) or killed (SIGKILL of its process group) and started again
on both; stock Celery producers, result readers and ``celery worker``
processes stay up through it and carry on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery, chord
from celery.result import AsyncResult

from coda.testing import wait_until
from tests.apps import acks_late_app
from tests.broker.processes import CeleryWorker, RestartableBroker

pytestmark = pytest.mark.e2e

ADD = "tests.apps.acks_late_app.add"
RECORD = "tests.apps.acks_late_app.record"
TOTAL = "tests.apps.acks_late_app.total"


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartableBroker]:
    broker = RestartableBroker(tmp_path)
    try:
        yield broker
    finally:
        broker.close()


def producer_app(address: str) -> Celery:
    """A Celery app in this (the application's) process, as a web process has."""
    url = f"coda://{address}"
    app = Celery("producer", broker=url, backend=url)
    app.conf.update(result_expires=600, task_acks_late=True)
    return app


def worker(broker: RestartableBroker, tmp_path: Path, name: str) -> CeleryWorker:
    log = tmp_path / f"{name}.log"
    return CeleryWorker(broker.address, log, app="tests.apps.acks_late_app", concurrency=2)


def test_a_sigterm_restart_keeps_ready_and_eta_messages_and_results(
    restartable: RestartableBroker, tmp_path: Path
) -> None:
    app = producer_app(restartable.address)
    ready = [app.send_task(ADD, (i, i)) for i in range(5)]
    held = app.send_task(ADD, (100, 100), countdown=3600)
    app.backend.mark_as_done("stored-before", 42)
    wait_until(lambda: restartable.queue("celery")["ready"] == 5, what="five ready messages")
    assert restartable.queue("celery")["held"] == 1

    assert restartable.terminate() == 0
    restartable.start()

    assert restartable.queue("celery") == {"ready": 5, "held": 1, "unacked": 0, "consumers": 0}
    assert AsyncResult("stored-before", app=app).get(timeout=10) == 42
    consumer = worker(restartable, tmp_path, "worker")
    try:
        assert [r.get(timeout=30) for r in ready] == [0, 2, 4, 6, 8]
    finally:
        consumer.stop()
    assert restartable.queue("celery")["held"] == 1  # still waiting for its ETA
    assert AsyncResult(held.id, app=app).state == "PENDING"


def test_a_kill_9_restart_with_acks_late_loses_no_task_and_the_worker_survives(
    restartable: RestartableBroker, tmp_path: Path
) -> None:
    count = 60
    path = str(tmp_path / "executions.log")
    consumer = worker(restartable, tmp_path, "worker")
    try:
        app = producer_app(restartable.address)
        for n in range(count):
            app.send_task(RECORD, (path, n, 50))
        wait_until(lambda: len(acks_late_app.executions(path)) >= 5, what="five executions")

        restartable.kill()
        restartable.start()

        wait_until(
            lambda: set(acks_late_app.executions(path)) == set(range(count)),
            timeout=90,
            what=f"all {count} tasks executed after the restart",
        )
        assert consumer.alive, consumer.output()
        # the same worker process goes on consuming from the new supervisor
        assert app.send_task(ADD, (20, 22)).get(timeout=30) == 42
        assert consumer.alive
    finally:
        consumer.stop()


def test_a_producer_publishes_and_reads_results_after_a_kill_9_restart(
    restartable: RestartableBroker, tmp_path: Path
) -> None:
    app = producer_app(restartable.address)
    first = worker(restartable, tmp_path, "first")
    try:
        assert app.send_task(ADD, (1, 1)).get(timeout=30) == 2
    finally:
        first.kill()

    restartable.kill()
    restartable.start()

    second = worker(restartable, tmp_path, "second")
    try:
        # the same app, its pooled broker connection and its result backend
        assert app.send_task(ADD, (2, 2)).get(timeout=30) == 4
    finally:
        second.stop()


def test_a_chord_and_a_reader_waiting_on_it_survive_a_kill_9_restart(
    restartable: RestartableBroker, tmp_path: Path
) -> None:
    path = str(tmp_path / "executions.log")
    app = producer_app(restartable.address)
    consumer = worker(restartable, tmp_path, "worker")
    try:
        header = [app.signature(RECORD, (path, n, 300)) for n in range(8)]
        result = chord(header)(app.signature(TOTAL))
        outcome: list[object] = []
        reader = threading.Thread(target=lambda: outcome.append(result.get(timeout=90)))
        reader.start()  # waiting on the supervisor when it dies
        wait_until(lambda: len(acks_late_app.executions(path)) >= 2, what="two header tasks")

        restartable.kill()
        restartable.start()

        reader.join(90)
        assert outcome == [sum(range(8))]
        assert set(acks_late_app.executions(path)) == set(range(8))
        assert restartable.status()["broker"]["results"]["counts"].get("chords_joined") == 1
        assert consumer.alive
    finally:
        consumer.stop()
