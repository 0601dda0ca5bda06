"""Adopted Celery tasks run on Coda workers with Celery's semantics (issue 3, item 1).

Every call here is routed to Coda (rollout 1.0) and read back through the
app's Redis result backend, as a migrated producer would.
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery.exceptions import TaskRevokedError, TimeLimitExceeded
from celery.result import AsyncResult

from coda.errors import TaskFailed
from coda.testing import SupervisorProcess, wait_until
from tests.apps import celery_app as tasks
from tests.apps.celery_app import lines
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

ALL = {"tests.apps.celery_app.*": 1.0}


def coda_outcome(supervisor: SupervisorProcess, run_id: str) -> Any:
    """Wait for the Coda run behind a routed Celery call to end; its result or ``TaskFailed``."""
    with supervisor.client() as client:
        return client.handle(run_id).result(timeout=30)


def run_times(path: str) -> list[float]:
    return [float(line.split()[1]) for line in lines(path) if line.startswith("at ")]


def test_request_fields_and_custom_headers(route: Route) -> None:
    route(ALL)
    result = tasks.request_info.apply_async((1,), {"k": 2}, headers={"x-tenant": "a"})
    info = result.get(timeout=30)
    assert info["hostname"].startswith("coda-")
    assert info["id"] == info["root_id"] == result.id
    assert (info["args"], info["kwargs"]) == ([1], {"k": 2})
    assert info["retries"] == 0 and info["parent_id"] is None
    assert info["is_eager"] is False and info["called_directly"] is False
    assert info["headers"] == {"x-tenant": "a"}
    assert info["redelivered"] is False
    assert result.state == "SUCCESS"


def test_self_retry_goes_through_coda_with_its_countdown(route: Route, log_path: str) -> None:
    router = route(ALL)
    result = tasks.retry_until.delay(log_path, fail_times=2, countdown=0.5)
    assert result.get(timeout=30) == 3
    assert [line.split()[-1] for line in lines(log_path) if line.startswith("at ")] == [
        "retries=0",
        "retries=1",
        "retries=2",
    ]
    times = run_times(log_path)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.5 <= gap < 2.5 for gap in gaps), gaps  # the countdown, plus scheduling
    assert router.sent_to_coda == 1  # the retries never went through the producer again


def test_default_retry_delay_and_max_retries(route: Route, log_path: str) -> None:
    route(ALL)
    result = tasks.retry_until.delay(log_path, fail_times=10)
    with pytest.raises(ConnectionError, match="failure 4"):
        result.get(timeout=30)
    assert lines(log_path).count("run") == 4  # the first run and max_retries=3 retries
    times = run_times(log_path)
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(times))
    assert result.state == "FAILURE" and result.failed()


def test_autoretry_for_with_exponential_backoff(route: Route, log_path: str) -> None:
    route(ALL)
    assert tasks.autoretry_backoff.delay(log_path, fail_times=2).get(timeout=30) == 3
    first, second, third = run_times(log_path)
    assert 1.0 <= second - first < 2.5  # retry_backoff=True: 1 * 2**0 seconds
    assert 2.0 <= third - second < 3.5  # then 1 * 2**1
    assert (third - second) - (second - first) > 0.5  # it grew


def wait_for_lines(path: str, count: int) -> list[str]:
    """Hooks and signals run after the result is stored: wait for them."""
    return wait_until(lambda: len(got := lines(path)) >= count and got, timeout=10, what=path)


def test_base_class_hooks(route: Route, log_path: str) -> None:
    route(ALL)
    assert tasks.hooked.delay(path=log_path, mode="ok").get(timeout=30) == "ok"
    wait_for_lines(log_path, 1)
    with pytest.raises(KeyError):
        tasks.hooked.delay(path=log_path, mode="fail").get(timeout=30)
    wait_for_lines(log_path, 2)
    assert tasks.hooked.delay(path=log_path, mode="retry_once").get(timeout=30) == "retry_once"
    assert wait_for_lines(log_path, 4) == [
        "on_success ok",
        "on_failure KeyError",
        "on_retry ConnectionError",
        "on_success retry_once",
    ]


def test_signals(route: Route, log_path: str) -> None:
    route(ALL)
    assert tasks.signalled.delay(signals_path=log_path).get(timeout=30) == "ok"
    name = tasks.signalled.name
    assert wait_for_lines(log_path, 6) == [
        f"task_prerun {name}",
        f"task_retry {name}",
        f"task_postrun {name}",
        f"task_prerun {name}",
        f"task_success {name}",
        f"task_postrun {name}",
    ]
    Path(log_path).unlink()
    with pytest.raises(ValueError):
        tasks.signalled.delay(signals_path=log_path, fail=True).get(timeout=30)
    assert f"task_failure {name}" in wait_for_lines(log_path, 6)


def test_ignore_result(route: Route, log_path: str, coda_supervisor: SupervisorProcess) -> None:
    route(ALL)
    result = tasks.ignored.delay(log_path)
    assert result.get(timeout=5) is None  # Celery's answer for an ignored result
    # The Coda run ends after the tracer, where a stored result would be written.
    assert coda_outcome(coda_supervisor, result.id) == "not stored"
    assert lines(log_path) == ["ignored ran"]
    assert AsyncResult(result.id, app=tasks.app).state == "PENDING"  # nothing stored


def test_expired_message_is_revoked_not_run(route: Route, log_path: str) -> None:
    route(ALL)
    result = tasks.hooked.apply_async(
        kwargs={"path": log_path, "mode": "x"}, countdown=1, expires=0.3
    )
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert lines(log_path) == []


def test_soft_time_limit_interrupts_a_sleep(route: Route) -> None:
    route(ALL)
    # "slept" if the 10 s sleep ran to its end; the limit (0.5 s) must cut it short
    assert tasks.soft_limited.delay(10).get(timeout=30) == "soft limit caught"


def test_hard_time_limit_fails_the_task_and_replaces_the_worker(
    route: Route, log_path: str, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    result = tasks.hard_limited.delay(path=log_path, seconds=30)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    assert "on_failure TimeLimitExceeded" in wait_for_lines(log_path, 2)
    pid = int(lines(log_path)[0].split()[1])
    wait_until(
        lambda: len(p := coda_supervisor.worker_pids()) == 2 and pid not in p,
        timeout=30,
        what="a replacement worker",
    )
    assert tasks.add.delay(2, 2).get(timeout=30) == 4


def _pid_of_first_run(path: str) -> int:
    line = wait_until(lambda: next(iter(lines(path)), None), timeout=30, what="the task to start")
    return int(line.split()[1])


def test_acks_late_task_is_redelivered_when_its_worker_dies(
    route: Route, tmp_path: Path, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    path, release = str(tmp_path / "runs.log"), tmp_path / "release"
    result = tasks.acks_late_wait.delay(path, str(release))
    doomed = _pid_of_first_run(path)
    os.kill(doomed, signal.SIGKILL)
    wait_until(lambda: len(lines(path)) == 2, timeout=30, what="the redelivery")
    release.touch()
    outcome = result.get(timeout=30)
    assert outcome["pid"] != doomed and outcome["redelivered"] is True


def test_early_ack_task_is_not_rerun_when_its_worker_dies(
    route: Route, tmp_path: Path, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    path, release = str(tmp_path / "runs.log"), tmp_path / "release"
    result = tasks.early_ack_wait.delay(path, str(release))
    os.kill(_pid_of_first_run(path), signal.SIGKILL)
    with pytest.raises(WorkerLostError):
        result.get(timeout=30)
    release.touch()
    # The Coda run has ended (failed, not retried): no rerun can come after this.
    with pytest.raises(TaskFailed, match="WorkerLostError"):
        coda_outcome(coda_supervisor, result.id)
    assert len(lines(path)) == 1
