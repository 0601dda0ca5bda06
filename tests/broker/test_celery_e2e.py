"""A stock ``celery worker -P prefork`` consuming from a real Coda supervisor.

The supervisor runs with ``--workers 0`` (a pure broker and result backend);
the Celery app changes nothing but ``broker_url``/``result_backend`` (and
imports ``coda.compat.kombu`` to register the scheme).
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group
from celery.exceptions import ChordError, TaskRevokedError
from celery.result import AsyncResult, GroupResult
from celery.utils.dispatch import Signal

from coda.compat.kombu.backend import CodaBackend
from coda.testing import SupervisorProcess, wait_until
from tests.apps import broker_app as tasks
from tests.broker.processes import CeleryWorker, broker_queue

pytestmark = pytest.mark.e2e

TIMEOUT = 30


@pytest.fixture(autouse=True)
def _worker(celery_worker: CeleryWorker) -> None:
    """Every test here needs the session's Celery worker."""


def test_delay_get_state_and_failure(celery_app: Any) -> None:
    result = tasks.add.delay(2, 3)
    assert result.get(timeout=TIMEOUT) == 5
    assert AsyncResult(result.id, app=celery_app).state == "SUCCESS"
    with pytest.raises(KeyError, match="nope"):
        tasks.boom.delay("nope").get(timeout=TIMEOUT)
    assert AsyncResult("never-sent", app=celery_app).state == "PENDING"


def test_send_task_by_name(celery_app: Any) -> None:
    result = celery_app.send_task("tests.apps.broker_app.mul", (6, 7))
    assert result.get(timeout=TIMEOUT) == 42


def test_countdown_is_held_by_the_supervisor_not_the_worker(
    celery_app: Any, broker: SupervisorProcess
) -> None:
    # An hour away: it is observed held however slow the machine, never delivered.
    held = tasks.add.apply_async((1, 1), countdown=3600)
    wait_until(lambda: broker_queue(broker, "celery")["held"] == 1, what="the held ETA message")
    scheduled = celery_app.control.inspect(timeout=5).scheduled()
    # the worker holds no ETA task; the supervisor's node lists the one it holds
    node = f"coda@{socket.gethostname()}"
    assert scheduled and [v for k, v in scheduled.items() if k != node] == [[]]
    assert [entry["request"]["id"] for entry in scheduled[node]] == [held.id]
    assert celery_app.control.purge() == 1
    started = time.monotonic()
    result = tasks.add.apply_async((2, 2), countdown=1.0)
    assert result.get(timeout=TIMEOUT) == 4
    assert time.monotonic() - started >= 0.9  # not before it was due


def test_retry_and_autoretry(tmp_path: Path) -> None:
    assert tasks.flaky.delay(str(tmp_path / "f"), 2).get(timeout=TIMEOUT) == 3
    assert tasks.auto_flaky.delay(str(tmp_path / "a"), 2).get(timeout=TIMEOUT) == 3
    assert tasks.lines(str(tmp_path / "a")).count("attempt") == 3


def test_a_signal_handler_forwarding_its_kwargs_publishes_and_names_what_was_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``signal=<Signal>`` (and any other keyword) is not an AMQP property: dropped,
    as AMQP clients do, and each name logged once per process (RabbitMQ drops them
    too; kombu's Redis transport raises ``TypeError``)."""
    sent: list[AsyncResult] = []

    def forward(sender: object = None, **kwargs: Any) -> None:
        sent.append(tasks.add.apply_async((2, 3), **kwargs))

    order_paid = Signal(name="order_paid")
    order_paid.connect(forward, weak=False)
    with caplog.at_level(logging.WARNING, logger="coda.compat.kombu"):
        order_paid.send(sender="shop", paid_with=object())
        order_paid.send(sender="shop", paid_with=object())
    assert [result.get(timeout=TIMEOUT) for result in sent] == [5, 5]
    dropped = [r.getMessage() for r in caplog.records if "'paid_with'" in r.getMessage()]
    assert len(dropped) == 1 and "dropped" in dropped[0], dropped


def test_chain_group_and_saved_group(celery_app: Any) -> None:
    assert (tasks.add.s(1, 2) | tasks.mul.s(10) | tasks.add.s(5)).delay().get(timeout=TIMEOUT) == 35
    result = group(tasks.add.s(i, i) for i in range(10)).delay()
    result.save()
    assert result.get(timeout=TIMEOUT) == [2 * i for i in range(10)]
    restored = GroupResult.restore(result.id, app=celery_app)
    assert restored is not None and restored.get(timeout=TIMEOUT) == [2 * i for i in range(10)]


def test_chord_is_joined_in_the_supervisor(broker: SupervisorProcess) -> None:
    before = broker.status()["broker"]["results"]["counts"].get("chords_joined", 0)
    header = [tasks.add.s(i, i) for i in range(10)]
    assert chord(header)(tasks.tsum.s()).get(timeout=TIMEOUT) == 90
    counts = broker.status()["broker"]["results"]["counts"]
    assert counts["chords_joined"] == before + 1
    failed = chord([tasks.add.s(1, 1), tasks.boom.s()])(tasks.tsum.s())
    failed.get(timeout=TIMEOUT, propagate=False)  # (get() re-raises the header's KeyError)
    assert failed.state == "FAILURE" and isinstance(failed.result, ChordError)


def test_large_canvas_chain_group_1000_chord() -> None:
    canvas = chain(tasks.add.s(1, 1), group(tasks.add.s(i) for i in range(1000)), tasks.tsum.s())
    assert canvas.delay().get(timeout=60) == sum(2 + i for i in range(1000))


def test_inspect_ping(celery_app: Any, celery_worker: CeleryWorker) -> None:
    worker = celery_worker.name.replace("%h", socket.gethostname())
    replies = celery_app.control.inspect(timeout=10, limit=2).ping()
    node = f"coda@{socket.gethostname()}"  # the supervisor answers too
    assert replies == {worker: {"ok": "pong"}, node: {"ok": "pong"}}


def test_revoke_reaches_the_worker_before_the_task(
    celery_app: Any, celery_worker: CeleryWorker, tmp_path: Path
) -> None:
    path = str(tmp_path / "revoked")
    result = tasks.echo.apply_async((1,), {"path": path}, countdown=0.5)
    celery_app.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    discarded = f"Discarding revoked task: tests.apps.broker_app.echo[{result.id}]"
    wait_until(lambda: discarded in celery_worker.output(), what="the worker to discard it")
    assert tasks.lines(path) == []


def test_expired_message_is_not_delivered_and_reads_revoked() -> None:
    result = tasks.add.apply_async((1, 1), countdown=0.6, expires=0.3)
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=TIMEOUT)


def test_control_purge_drops_ready_and_held_messages(
    celery_app: Any, broker: SupervisorProcess
) -> None:
    for i in range(3):
        tasks.add.apply_async((i, i), countdown=60)
    wait_until(lambda: broker_queue(broker, "celery")["held"] == 3, what="three held messages")
    assert celery_app.control.purge() == 3
    assert broker_queue(broker, "celery")["held"] == 0


def test_results_expire_after_result_expires(celery_app: Any, broker: SupervisorProcess) -> None:
    backend = CodaBackend(celery_app, url=f"coda://{broker.address}", expires=0.5)
    backend.store_result("short-lived", 1, "SUCCESS")
    assert backend.get_task_meta("short-lived", cache=False)["status"] == "SUCCESS"
    wait_until(
        lambda: backend.get_task_meta("short-lived", cache=False)["status"] == "PENDING",
        what="the result to expire",
    )


def test_kill_9_mid_task_with_acks_late_redelivers_and_completes_once(
    broker: SupervisorProcess, tmp_path: Path
) -> None:
    path = str(tmp_path / "victim")
    doomed = CeleryWorker(broker.address, tmp_path / "doomed.log", queues="kill", concurrency=1)
    try:
        result = tasks.slow_once.apply_async((path, 1.0), queue="kill")
        wait_until(lambda: tasks.lines(path), what="the task to start")
        doomed.kill()
    finally:
        doomed.stop()
    wait_until(lambda: broker_queue(broker, "kill")["ready"] == 1, what="the lease requeued")
    rescuer = CeleryWorker(broker.address, tmp_path / "rescuer.log", queues="kill", concurrency=1)
    try:
        finisher = result.get(timeout=TIMEOUT)
    finally:
        rescuer.stop()
    first, second, done = tasks.lines(path)
    assert first.endswith("redelivered=False") and second.endswith("redelivered=True")
    assert second.startswith(f"start {finisher} ") and done == "done"
