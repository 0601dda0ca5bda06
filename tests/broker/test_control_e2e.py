"""Celery's remote control on ``coda://`` reaches the tasks Coda runs (issue 13,
"What must work" 2; issue 17, item 7).

One supervisor is the broker, adopts ``tests.apps.broker_app`` and diverts
``echo`` and ``slow_once`` to its Coda worker; a stock ``celery worker``
consumes the rest. The supervisor answers the pidbox as the Celery node
``coda@<hostname>``: ``celery status``, ``celery inspect`` and
``celery purge -f`` are the real commands, run as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import TaskRevokedError

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.testing import SupervisorProcess, wait_until
from tests.apps.journal import lines
from tests.broker.processes import ROOT, CeleryWorker, free_port

pytestmark = pytest.mark.e2e

APP = "tests.apps.broker_app"
NODE = f"coda@{socket.gethostname()}"
TIMEOUT = 30


class Fleet:
    def __init__(self, supervisor: SupervisorProcess, worker: CeleryWorker, app: Any) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.app = app

    def celery(self, *args: str) -> str:
        """``celery -A tests.apps.broker_app ARGS``: its output."""
        env = {**os.environ, "CODA_BROKER_URL": f"coda://{self.supervisor.address}"}
        argv = [sys.executable, "-m", "celery", "-A", APP, *args]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def node(self, method: str, **arguments: Any) -> Any:
        """The Coda node's own answer to ``inspect().<method>()``."""
        replies = getattr(self.app.control.inspect(timeout=5, destination=[NODE]), method)()
        assert replies is not None and NODE in replies, replies
        return replies[NODE]

    def counts(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = self.supervisor.status()["names"].get(f"{APP}.{name}", {})
        return counts


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    address = f"127.0.0.1:{free_port()}"
    url = f"coda://{address}"
    rules = f"{APP}.echo,{APP}.slow_once"
    supervisor = SupervisorProcess(
        [],
        workers=1,
        listen=address,
        extra_args=["--celery-app", f"{APP}:app", "--celery-divert", rules],
        env={"CODA_BROKER_URL": url},
    )
    worker = None
    try:
        worker = CeleryWorker(address, tmp_path_factory.mktemp("control") / "celery.log")
        app = Celery("control-test", broker=url, backend=url)
        wait_until(lambda: len(supervisor.worker_pids()) == 1, what="the Coda worker")
        yield Fleet(supervisor, worker, app)
    finally:
        if worker is not None:
            worker.stop()
        supervisor.close()


def send(fleet: Fleet, task: str, *args: Any, **options: Any) -> Any:
    return fleet.app.send_task(f"{APP}.{task}", args, **options)


def test_celery_status_and_inspect_ping_show_the_coda_node(fleet: Fleet) -> None:
    status = fleet.celery("status", "--timeout", "5")
    assert f"{NODE}: OK" in status, status
    assert "@" in fleet.worker.name and fleet.worker.name.split("@")[0] in status
    ping = fleet.celery("inspect", "ping", "--timeout", "5")
    assert f"{NODE}: OK" in ping and "pong" in ping, ping


def test_inspect_scheduled_lists_the_eta_tasks_the_supervisor_holds(fleet: Fleet) -> None:
    """Issue 17 item 7: for the stock worker's ``add`` (held in the broker)
    and the diverted ``echo`` (a delayed Coda job) alike."""
    held = send(fleet, "add", 1, 1, countdown=3600)
    delayed = send(fleet, "echo", "later", countdown=3600)
    try:
        wait_until(lambda: len(fleet.node("scheduled")) >= 2, what="2 scheduled tasks")
        scheduled = {entry["request"]["id"]: entry for entry in fleet.node("scheduled")}
        assert {held.id, delayed.id} <= set(scheduled)
        assert scheduled[held.id]["request"]["name"] == f"{APP}.add"
        assert scheduled[delayed.id]["request"]["args"] == "('later',)"
        assert scheduled[delayed.id]["eta"].startswith(time.strftime("%Y"))
        assert held.id in fleet.celery("inspect", "scheduled", "--timeout", "5")
    finally:
        fleet.app.control.revoke([held.id, delayed.id])
        fleet.app.control.purge()


def test_inspect_active_registered_stats_and_queues(fleet: Fleet, tmp_path: Path) -> None:
    path = str(tmp_path / "runs")
    running = send(fleet, "slow_once", path, 3.0)
    wait_until(lambda: lines(path), what="the diverted task to start")
    (active,) = fleet.node("active")
    pids = fleet.supervisor.worker_pids()
    assert active["id"] == running.id and active["worker_pid"] in pids
    assert active["hostname"].startswith("coda-") and active["time_start"] > 0
    assert f"{APP}.echo" in fleet.node("registered")
    stats = fleet.node("stats")
    assert stats["pool"]["processes"] == pids and stats["pid"] == fleet.supervisor.pid
    assert [queue["name"] for queue in fleet.node("active_queues")] == ["default"]
    assert fleet.node("reserved") == []
    assert running.get(timeout=TIMEOUT) in pids


def test_revoke_of_an_eta_held_diverted_task_means_it_never_runs(
    fleet: Fleet, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs")
    cancelled = fleet.counts("echo").get("cancelled", 0)
    result = send(fleet, "echo", 1, path, countdown=1.5)
    wait_until(lambda: fleet.supervisor.status()["delayed"] == 1, what="the held Coda job")
    fleet.app.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    # the Coda job has ended cancelled (a job that ended never runs)
    wait_until(
        lambda: fleet.counts("echo").get("cancelled", 0) == cancelled + 1,
        what="the held job to end cancelled",
    )
    assert fleet.supervisor.status()["delayed"] == 0
    assert lines(path) == [] and result.state == "REVOKED"
    assert result.id in fleet.node("revoked")


def test_revoke_terminate_stops_a_running_diverted_task(fleet: Fleet, tmp_path: Path) -> None:
    path = str(tmp_path / "runs")
    cancelled = fleet.counts("slow_once").get("cancelled", 0)
    result = send(fleet, "slow_once", path, 30.0)
    line = wait_until(lambda: next(iter(lines(path)), None), what="the task to start")
    pid = int(line.split()[1])
    fleet.app.control.revoke(result.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"
    wait_until(
        lambda: (p := fleet.supervisor.worker_pids()) and pid not in p,
        what="a replacement worker",
    )
    assert fleet.counts("slow_once").get("cancelled", 0) == cancelled + 1
    assert len(lines(path)) == 1  # started once, stopped, not run again


def test_a_revoke_sent_before_its_task_cancels_it_on_arrival(fleet: Fleet, tmp_path: Path) -> None:
    path = str(tmp_path / "runs")
    cancelled = fleet.counts("echo").get("cancelled", 0)
    task_id = f"revoked-first-{time.time()}"
    fleet.app.control.revoke(task_id)
    result = send(fleet, "echo", 1, path, task_id=task_id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    wait_until(
        lambda: fleet.counts("echo").get("cancelled", 0) == cancelled + 1,
        what="the job to end cancelled on arrival",
    )
    assert lines(path) == []


def test_celery_purge_removes_the_diverted_tasks_and_counts_them(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Issue 13: ``celery purge -f`` said "No messages purged" and the three ran."""
    path = str(tmp_path / "runs")
    cancelled = fleet.counts("echo").get("cancelled", 0)
    for i in range(3):
        send(fleet, "echo", i, path, countdown=60)  # (the command takes seconds to start)
    wait_until(lambda: fleet.supervisor.status()["delayed"] == 3, what="3 held Coda jobs")
    out = fleet.celery("purge", "-f")
    assert "Purged 3 messages" in out, out
    # cancelled jobs never run: no need to wait for their ETA to know it
    assert fleet.counts("echo")["cancelled"] == cancelled + 3
    assert fleet.supervisor.status()["delayed"] == 0 and lines(path) == []
