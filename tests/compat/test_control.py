"""Celery's remote control reaches the tasks ``install()`` routes to Coda
(issue 13, "What must work" 2), with the app's broker elsewhere (Redis).

``app.control.revoke``, ``purge`` and ``inspect`` are called as an
application calls them; the Coda run behind each task says what the
supervisor did (cancelled runs never start), the app's Redis backend what
Celery readers see.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from celery.exceptions import TaskRevokedError

from coda.broker.control import REVOKED_TASK
from coda.errors import Cancelled
from coda.testing import SupervisorProcess, wait_until
from tests.apps import celery_app as tasks
from tests.apps.celery_app import lines
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

ALL = {"tests.apps.celery_app.*": 1.0}
NODE = f"coda@{socket.gethostname()}"
TIMEOUT = 30


def assert_cancelled(supervisor: SupervisorProcess, run_id: str) -> None:
    """The Coda run ended cancelled: it never ran (or was stopped)."""
    with supervisor.client() as client, pytest.raises(Cancelled):
        client.handle(run_id).result(timeout=TIMEOUT)


def test_revoke_of_a_countdown_task_means_it_never_runs(
    route: Route, coda_supervisor: SupervisorProcess
) -> None:
    """Issue 13: the state read REVOKED, then the task ran anyway (SUCCESS)."""
    route(ALL)
    result = tasks.add.apply_async((5, 5), countdown=3)
    tasks.app.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert_cancelled(coda_supervisor, result.id)
    assert result.state == "REVOKED"


def test_revoke_of_a_queued_task_means_it_never_runs(
    route: Route, coda_supervisor: SupervisorProcess
) -> None:
    """Queued, not delayed: on a queue no Coda worker consumes, it waits
    for a worker when the revoke comes. Its run ends cancelled and the node
    lists it revoked. (Its REVOKED report is a job on the same queue, where
    a worker with the app will run it, so, as with Celery, whose workers
    only learn of a revoke in memory, the state stays PENDING while nobody
    consumes that queue.)"""
    route(ALL)
    result = tasks.add.apply_async((2, 2), queue="nobody-consumes")
    queued = lambda: coda_supervisor.status()["queues"].get("nobody-consumes", {})  # noqa: E731
    wait_until(lambda: queued().get("tasks") == 1, what="the task queued")
    tasks.app.control.revoke(result.id)
    assert_cancelled(coda_supervisor, result.id)
    assert result.id in tasks.app.control.inspect(timeout=2).revoked()[NODE]
    with coda_supervisor.client() as client:  # what waits there now is its REVOKED report
        (report,) = client.runs(name=REVOKED_TASK, state="queued")
    assert report.queue == "nobody-consumes" and queued().get("tasks") == 1


def test_revoke_of_a_task_waiting_for_its_retry(
    route: Route, log_path: str, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    result = tasks.retry_until.delay(log_path, fail_times=1, countdown=60)
    wait_until(lambda: result.state == "RETRY", what="the first run to ask for a retry")
    tasks.app.control.revoke(result.id)
    assert_cancelled(coda_supervisor, result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert lines(log_path).count("run") == 1


def test_revoke_terminate_stops_a_running_task(
    route: Route, tmp_path: Path, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    path, release = str(tmp_path / "runs"), tmp_path / "release"
    result = tasks.acks_late_wait.delay(path, str(release))
    line = wait_until(lambda: next(iter(lines(path)), None), what="the task to start")
    pid = int(line.split()[1])
    tasks.app.control.revoke(result.id, terminate=True)
    assert_cancelled(coda_supervisor, result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    wait_until(
        lambda: len(p := coda_supervisor.worker_pids()) == 2 and pid not in p,
        what="a replacement worker",
    )
    release.touch()
    assert len(lines(path)) == 1  # stopped, and not run again


def test_purge_drops_the_coda_held_tasks_of_the_apps_queues(
    route: Route, log_path: str, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    results = [tasks.add.apply_async((i, i), countdown=60) for i in range(3)]
    wait_until(lambda: coda_supervisor.status()["delayed"] >= 3, what="3 held tasks")
    assert tasks.app.control.purge() == 3
    for result in results:
        assert_cancelled(coda_supervisor, result.id)


def test_inspect_includes_the_supervisors_node(
    route: Route, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    result = tasks.add.apply_async((1, 2), countdown=60)
    try:
        assert tasks.app.control.inspect(timeout=2).ping()[NODE] == {"ok": "pong"}
        scheduled = tasks.app.control.inspect(timeout=2).scheduled()[NODE]
        assert [entry["request"]["id"] for entry in scheduled] == [result.id]
        stats = tasks.app.control.inspect(timeout=2).stats()[NODE]
        assert sorted(stats["pool"]["processes"]) == sorted(coda_supervisor.worker_pids())
    finally:
        tasks.app.control.revoke(result.id)
    assert_cancelled(coda_supervisor, result.id)
