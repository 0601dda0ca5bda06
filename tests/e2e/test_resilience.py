"""Worker deaths, timeouts, slots and queues, with real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import coda
from coda.testing import SupervisorProcess, wait_until
from tests.apps import basic
from tests.e2e.conftest import executions

pytestmark = pytest.mark.e2e


def test_worker_killed_mid_task_is_replaced_and_workflow_completes(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    counter = str(tmp_path / "count.log")
    with SupervisorProcess(["tests.apps.basic"], workers=2) as sup:
        client = sup.client()
        handle = client.submit(
            basic.survives_worker_kill, args={"path": str(marker), "count_path": counter}
        )
        doomed = int(wait_until(lambda: marker.exists() and marker.read_text(), what="task start"))
        assert doomed in sup.worker_pids()
        os.kill(doomed, signal.SIGKILL)
        finisher = handle.result(timeout=60)
        assert finisher != doomed
        pids = wait_until(
            lambda: (p := sup.worker_pids()) and len(p) == 2 and doomed not in p and p,
            what="a replacement worker",
        )
        assert doomed not in pids
        assert sup.status()["supervisor"]["worker_restarts"] >= 1
        assert executions(counter, "before") == 1  # the cached first step did not run again


def test_hung_sync_task_times_out_and_worker_is_replaced() -> None:
    with SupervisorProcess(["tests.apps.basic"], workers=1) as sup:
        client = sup.client()
        pid_before = sup.worker_pids()
        with pytest.raises(coda.TaskFailed) as info:
            client.run(basic.sync_too_slow, timeout=60)
        assert info.value.type_name == "coda.TaskTimeout"
        wait_until(lambda: (p := sup.worker_pids()) and p != pid_before, what="new worker")
        assert client.run(basic.add, args={"x": 1, "y": 1}, timeout=30) == 2


def test_a_prefetched_task_times_out_from_its_start_not_from_its_dispatch(
    tmp_path: Path,
) -> None:
    """One slot, one prefetched task: the held task's timeout (1 s, plus the
    supervisor's 2 s grace) must not run while it waits behind a busy task."""
    gate = tmp_path / "gate"
    with SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=["--prefetch", "1"]) as sup:
        client = sup.client()
        (pid,) = wait_until(sup.worker_pids, what="the worker")
        busy = client.submit(basic.busy_until, args={"gate": str(gate)})
        held = client.submit(basic.quick_with_timeout)
        wait_until(lambda: sup.status()["workers"][0]["held"] == 1, what="the second task held")
        # Negative check: a timeout counted from dispatch (before this line) would
        # fire within 3 s and replace the worker; watch 4 s while the gate is shut.
        with pytest.raises(TimeoutError):
            wait_until(
                lambda: sup.status()["supervisor"]["worker_restarts"] > 0,
                timeout=4.0,
                interval=0.1,
                what="a timeout while held",
            )
        gate.touch()
        assert busy.result(timeout=60) == pid
        assert held.result(timeout=60) == pid  # not a TaskTimeout, and no worker replaced
        assert sup.status()["supervisor"]["worker_restarts"] == 0


def test_one_worker_runs_a_workflow_and_its_tasks_without_deadlock() -> None:
    with SupervisorProcess(["tests.apps.basic"], workers=1) as sup:
        client = sup.client()
        assert client.run(basic.fan_out, args={"n": 10}, timeout=30) == [2 * i for i in range(10)]
        assert client.run(basic.parent, args={"x": 1}, timeout=30) == {
            "first": 101,
            "both": [201, 100],
        }


def test_dedicated_queues() -> None:
    with SupervisorProcess(
        ["tests.apps.basic"], workers=1, extra_args=["--queues", "special"]
    ) as sup:
        client = sup.client()
        assert client.run(basic.special_add, args={"x": 2, "y": 2}, timeout=30) == 4
        waiting = client.submit(
            basic.add, args={"x": 1, "y": 1}
        )  # default queue: nobody consumes it
        wait_until(
            lambda: sup.status()["queues"].get("default", {}).get("tasks") == 1, what="queued"
        )
        with pytest.raises(coda.ResultTimeoutError):
            waiting.result(timeout=0.2)
        assert client.run(basic.add, args={"x": 1, "y": 1}, queue="special", timeout=30) == 2


def test_status_counts(supervisor, counter) -> None:  # type: ignore[no-untyped-def]
    client = supervisor.client()
    client.run(basic.retries_a_task, args={"path": counter}, timeout=30)
    status = supervisor.status()
    # This module's supervisor ran nothing else: one workflow, two failed tries, one success.
    flaky = status["names"]["tests.apps.basic.flaky"]
    assert (flaky.get("retried"), flaky.get("succeeded"), flaky.get("failed", 0)) == (2, 1, 0)
    workflow = status["names"]["tests.apps.basic.retries_a_task"]
    assert (workflow.get("succeeded"), workflow.get("failed", 0)) == (1, 0)
    assert len(status["workers"]) == 2
