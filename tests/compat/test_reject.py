"""``Reject(requeue=True)`` raised by a task Coda runs (issue 17, item 1).

A broker hands a requeued message back marked ``redelivered``; a task that
requeues every delivery must not spin a core: the supervisor backs off
(the first requeue at once, then 0.1 s doubling to 30 s) and counts the
requeues per task name in its status.
"""

from __future__ import annotations

import itertools

import pytest

from coda.testing import SupervisorProcess
from tests.apps import celery_app as tasks
from tests.apps.celery_app import lines
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

ALL = {"tests.apps.celery_app.*": 1.0}


def requeued(supervisor: SupervisorProcess, name: str) -> int:
    return int(supervisor.status()["names"].get(name, {}).get("requeued", 0))


def test_the_requeued_delivery_is_marked_redelivered(route: Route, log_path: str) -> None:
    route(ALL)
    assert tasks.reject_once.delay(log_path).get(timeout=30) == "ran on the redelivery"
    assert lines(log_path) == ["run redelivered=False", "run redelivered=True"]


def test_a_task_that_keeps_rejecting_backs_off_and_is_counted(
    route: Route, log_path: str, coda_supervisor: SupervisorProcess
) -> None:
    route(ALL)
    before = requeued(coda_supervisor, tasks.reject_times.name)
    assert tasks.reject_times.delay(log_path, times=6).get(timeout=30) == 7
    deliveries = [line.split() for line in lines(log_path) if line.startswith("at ")]
    assert [flag for _, _, flag in deliveries] == ["redelivered=False"] + ["redelivered=True"] * 6
    gaps = [float(b[1]) - float(a[1]) for a, b in itertools.pairwise(deliveries)]
    # The first requeue comes back at once; each next one waits 0.1 s, then twice as long.
    for n, gap in enumerate(gaps[1:]):
        assert gap >= 0.1 * 2**n, gaps
    assert requeued(coda_supervisor, tasks.reject_times.name) == before + 6
