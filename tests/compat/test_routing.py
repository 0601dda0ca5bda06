"""Per-task routing between a Celery worker and a Coda supervisor (issue 3, item 2)."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery.result import AsyncResult
from celery.utils.dispatch import Signal
from kombu.exceptions import OperationalError

from coda.compat.celery import SupervisorUnreachable, install, uninstall
from tests.apps import celery_app as tasks
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

WHERE = tasks.where.name


def test_mixed_rollout_runs_on_both_fleets_with_correct_results(
    route: Route, celery_worker: object
) -> None:
    route({WHERE: 0.5, "tests.apps.celery_app.ad*": 0.5})
    fleets = [tasks.where.delay() for _ in range(30)]
    sums = [(i, tasks.add.delay(i, i)) for i in range(30)]
    seen = [r.get(timeout=30) for r in fleets]
    assert {"coda", "celery"} <= set(seen), seen  # 2**-29 odds of a false failure
    assert all(r.get(timeout=30) == 2 * i for i, r in sums)
    assert tasks.mul.delay(3, 4).get(timeout=30) == 12  # not in the rollout: Celery


def test_fractions_change_at_runtime_from_celery_config(
    route: Route, celery_worker: object
) -> None:
    router = route()  # no table: read app.conf.coda_rollout on every call
    try:
        tasks.app.conf.coda_rollout = {WHERE: 0.0}
        assert {tasks.where.delay().get(timeout=30) for _ in range(5)} == {"celery"}
        tasks.app.conf.coda_rollout = {"tests.apps.*": 1.0}
        assert {tasks.where.delay().get(timeout=30) for _ in range(5)} == {"coda"}
        assert router.sent_to_coda == 5
    finally:
        tasks.app.conf.coda_rollout = {}


def test_countdown_eta_task_id_and_priority(route: Route) -> None:
    route({WHERE: 1.0, tasks.request_info.name: 1.0})
    started = time.time()
    assert tasks.where.apply_async(countdown=1).get(timeout=30) == "coda"
    assert time.time() - started >= 1.0
    eta = datetime.now(UTC) + timedelta(seconds=1)
    assert tasks.where.apply_async(eta=eta).get(timeout=30) == "coda"
    assert datetime.now(UTC) >= eta
    task_id = f"mine-{uuid.uuid4()}"
    result = tasks.request_info.apply_async(task_id=task_id, priority=7)
    request = result.get(timeout=30)
    assert result.id == task_id and request["id"] == task_id
    assert request["priority"] == 7  # carried to the task's delivery_info
    assert request["hostname"].startswith("coda-")  # run by a Coda worker


def test_a_signal_handler_forwarding_its_kwargs_runs_on_coda_and_names_what_was_dropped(
    route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    route({"tests.apps.celery_app.*": 1.0})
    sent: list[AsyncResult] = []

    def forward(sender: object = None, **kwargs: object) -> None:
        sent.append(tasks.request_info.apply_async((1,), **kwargs))

    refunded = Signal(name="order_refunded")
    refunded.connect(forward, weak=False)
    with caplog.at_level(logging.WARNING, logger="coda.compat.kombu"):
        refunded.send(sender="shop", refund_of=object())
        refunded.send(sender="shop", refund_of=object())
    infos = [result.get(timeout=30) for result in sent]
    assert [info["args"] for info in infos] == [[1], [1]]
    assert all(info["hostname"].startswith("coda-") for info in infos)
    dropped = [r.getMessage() for r in caplog.records if "'refund_of'" in r.getMessage()]
    assert len(dropped) == 1 and "dropped" in dropped[0], dropped


def test_queues_follow_celery_routing(route: Route) -> None:
    route({"tests.apps.celery_app.*": 1.0})
    assert tasks.on_other_queue.delay(1).get(timeout=30) == 1001  # queue="coda-test-other"
    assert tasks.add.apply_async((1, 2), queue="coda-test-other").get(timeout=30) == 3


def test_send_task_by_name(route: Route) -> None:
    route({"tests.apps.celery_app.*": 1.0})
    assert tasks.app.send_task(WHERE).get(timeout=30) == "coda"
    assert tasks.app.send_task(tasks.add.name, args=(5, 6)).get(timeout=30) == 11


def test_unreachable_supervisor_raises_by_default() -> None:
    install(tasks.app, supervisor="127.0.0.1:1", rollout={WHERE: 1.0})
    try:
        with pytest.raises(SupervisorUnreachable) as info:
            tasks.where.delay()
        assert isinstance(info.value, OperationalError)  # what a broker outage raises
    finally:
        uninstall(tasks.app)


def test_unreachable_supervisor_can_fall_back_to_celery(celery_worker: object) -> None:
    router = install(
        tasks.app, supervisor="127.0.0.1:1", rollout={WHERE: 1.0}, on_unreachable="celery"
    )
    try:
        assert tasks.where.delay().get(timeout=30) == "celery"
        assert router.fallbacks == 1 and router.sent_to_coda == 0
    finally:
        uninstall(tasks.app)
